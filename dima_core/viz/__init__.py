"""Pictures of keyframes: cameras with projected 3D boxes and a BEV panel, composed into one image (cv2).

from dima_core.viz import render_sample, save_png
save_png(render_sample(sample), "x.png")
save_png(render_sample(sample, PredictionLayer(trajectory=plan)), "pred.png")
"""

from dima_core.viz.bev import BevView, bev_panel, default_view
from dima_core.viz.camera import camera_panel, draw_boxes, draw_tags, draw_trajectory
from dima_core.viz.compose import (
    CAMERA_GRID,
    RenderOptions,
    VideoWriter,
    count_video_frames,
    figure_size,
    render_sample,
    save_png,
)
from dima_core.viz.layers import PredictionLayer

__all__ = [
    "BevView",
    "CAMERA_GRID",
    "PredictionLayer",
    "RenderOptions",
    "VideoWriter",
    "bev_panel",
    "camera_panel",
    "count_video_frames",
    "default_view",
    "draw_boxes",
    "draw_tags",
    "draw_trajectory",
    "figure_size",
    "render_sample",
    "save_png",
]
