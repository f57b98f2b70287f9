"""One picture per keyframe: six cameras in nuScenes' 2 x 3 layout with projected boxes, and the BEV panel beside.

    FRONT_LEFT  FRONT  FRONT_RIGHT | BEV
    BACK_LEFT   BACK   BACK_RIGHT  |

Image size: ``(2 * tile_h, 3 * tile_w + bev_w)`` with ``tile_h = round(tile_w * H / W)`` from the camera aspect and
a square BEV panel ``2 * tile_h`` on a side (:func:`figure_size`). cv2 throughout, so the same frames can be
written to MP4 later.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import cv2
import numpy as np

from dima_core.data.drivelm import CTag
from dima_core.data.sample import DrivingSample
from dima_core.viz import colors as C
from dima_core.viz.bev import bev_panel, default_view
from dima_core.viz.camera import camera_panel
from dima_core.viz.layers import PredictionLayer

CAMERA_GRID: tuple[tuple[str, ...], ...] = (
    ("CAM_FRONT_LEFT", "CAM_FRONT", "CAM_FRONT_RIGHT"),
    ("CAM_BACK_LEFT", "CAM_BACK", "CAM_BACK_RIGHT"),
)


@dataclass
class RenderOptions:
    tile_width: int = 480  # pixels per camera tile; height follows the camera aspect ratio
    show_agent_futures: bool = True
    min_box_visibility: int = 0  # nuScenes visibility level below which GT boxes are not drawn on the cameras


def figure_size(sample: DrivingSample, options: Optional[RenderOptions] = None) -> tuple[int, int]:
    """(width, height) in pixels of :func:`render_sample`'s output."""
    options = options or RenderOptions()
    cam = sample.cameras[0]
    tile_h = int(round(options.tile_width * cam.height / cam.width))
    return 3 * options.tile_width + 2 * tile_h, 2 * tile_h


def render_sample(
    sample: DrivingSample,
    prediction: Optional[PredictionLayer] = None,
    tags: Sequence[CTag] = (),
    options: Optional[RenderOptions] = None,
) -> np.ndarray:
    """(H, W, 3) uint8 BGR picture of one keyframe (size from :func:`figure_size`)."""
    options = options or RenderOptions()
    width, height = figure_size(sample, options)
    tile_w, tile_h = options.tile_width, height // 2
    agents = sample.agents
    keep = np.asarray(agents.visibility, np.int64) >= options.min_box_visibility
    boxes = np.asarray(agents.boxes, np.float64)[keep]
    box_colors = [C.class_color(int(label)) for label in np.asarray(agents.labels)[keep]]
    extra_boxes = prediction.boxes if prediction is not None else None
    extra_colors = [C.PRED_BOX_COLOR] * (0 if extra_boxes is None else len(extra_boxes))

    canvas = np.zeros((height, width, 3), np.uint8)
    names = {cam.name for cam in sample.cameras}
    for row, cam_names in enumerate(CAMERA_GRID):
        for col, name in enumerate(cam_names):
            if name not in names:  # a rig without this camera: leave the tile black
                continue
            panel = camera_panel(
                sample.camera(name), (tile_w, tile_h), boxes, box_colors, extra_boxes, extra_colors, tags
            )
            canvas[row * tile_h : (row + 1) * tile_h, col * tile_w : (col + 1) * tile_w] = panel
    bev = bev_panel(sample, default_view(height), prediction, options.show_agent_futures)
    canvas[:, 3 * tile_w :] = cv2.resize(bev, (width - 3 * tile_w, height)) if bev.shape[:2] != (height, width - 3 * tile_w) else bev
    return canvas


def save_png(image: np.ndarray, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write image {path}")


__all__ = ["CAMERA_GRID", "RenderOptions", "figure_size", "render_sample", "save_png"]
