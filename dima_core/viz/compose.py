"""One picture per keyframe: six cameras in nuScenes' 2 x 3 layout with projected boxes, and the BEV panel beside.

    FRONT_LEFT  FRONT  FRONT_RIGHT | BEV
    BACK_LEFT   BACK   BACK_RIGHT  |

Image size: ``(2 * tile_h, 3 * tile_w + bev_w)`` with ``tile_h = round(tile_w * H / W)`` from the camera aspect and
a square BEV panel ``2 * tile_h`` on a side (:func:`figure_size`). cv2 throughout, so the same frames can be
written to MP4 later.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dima_core.data.drivelm import CTag
from dima_core.data.sample import DrivingSample
from dima_core.viz import colors as C
from dima_core.viz.bev import bev_panel, default_view
from dima_core.viz.camera import camera_panel, draw_trajectory
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


def figure_size(sample: DrivingSample, options: RenderOptions | None = None) -> tuple[int, int]:
    """(width, height) in pixels of :func:`render_sample`'s output."""
    options = options or RenderOptions()
    cam = sample.cameras[0]
    tile_h = int(round(options.tile_width * cam.height / cam.width))
    return 3 * options.tile_width + 2 * tile_h, 2 * tile_h


def render_sample(
    sample: DrivingSample,
    prediction: PredictionLayer | None = None,
    tags: Sequence[CTag] = (),
    options: RenderOptions | None = None,
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
            if (
                name == "CAM_FRONT"
                and prediction is not None
                and prediction.trajectory is not None
                and prediction.front_camera_trajectory
            ):
                # GT future under the plan, so the two read against each other in the image as in the BEV.
                gt_future = sample.ego_future[sample.ego_future_mask]
                draw_trajectory(panel, sample.camera(name), gt_future, C.EGO_FUTURE_COLOR)
                draw_trajectory(panel, sample.camera(name), prediction.trajectory, C.PRED_TRAJ_COLOR)
            canvas[row * tile_h : (row + 1) * tile_h, col * tile_w : (col + 1) * tile_w] = panel
    bev = bev_panel(sample, default_view(height), prediction, options.show_agent_futures)
    canvas[:, 3 * tile_w :] = (
        cv2.resize(bev, (width - 3 * tile_w, height)) if bev.shape[:2] != (height, width - 3 * tile_w) else bev
    )
    if prediction is not None and prediction.caption:
        org = (3 * tile_w + 6, height - 8)
        cv2.putText(canvas, prediction.caption, org, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 3, cv2.LINE_AA)
        cv2.putText(canvas, prediction.caption, org, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (40, 40, 40), 1, cv2.LINE_AA)
    return canvas


def save_png(image: np.ndarray, path: str | os.PathLike) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise OSError(f"could not write image {path}")


class VideoWriter:
    """MP4 of rendered frames (cv2 ``mp4v``), opened on the first frame (its size fixes the video's).

    Frames of another size are resized to the first one's, so a scene renders into one file whatever its cameras.
    Use as a context manager; :meth:`close` finalises the file.
    """

    def __init__(self, path: str | os.PathLike, fps: float = 2.0) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self._writer: cv2.VideoWriter | None = None
        self._size: tuple[int, int] | None = None
        self.num_frames = 0

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 BGR frame."""
        if self._writer is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # Even sizes: many decoders refuse odd-sized mp4v streams.
            self._size = (frame.shape[1] // 2 * 2, frame.shape[0] // 2 * 2)
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), self.fps, self._size)
            if not self._writer.isOpened():
                raise OSError(f"cv2 cannot open an mp4v video writer for {self.path}")
        assert self._size is not None
        if (frame.shape[1], frame.shape[0]) != self._size:
            frame = cv2.resize(frame, self._size, interpolation=cv2.INTER_AREA)
        self._writer.write(np.ascontiguousarray(frame))
        self.num_frames += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def count_video_frames(path: str | os.PathLike) -> int:
    """Frames cv2 can decode from a video file (0 when it cannot open it): a read-back check of a written MP4."""
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            return 0
        count = 0
        while True:
            ok, _ = capture.read()
            if not ok:
                return count
            count += 1
    finally:
        capture.release()


__all__ = [
    "CAMERA_GRID",
    "RenderOptions",
    "VideoWriter",
    "count_video_frames",
    "figure_size",
    "render_sample",
    "save_png",
]
