"""Bird's-eye-view panel in the ego frame: vector map, agent boxes with heading, ego box, past and future.

Image layout: ego x (forward) points up, ego y (left) points left, so the panel reads like a map with the car
driving up the page. ``BevView`` maps ego metres to panel pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from dima_core.constants import PERCEPTION_X_RANGE, PERCEPTION_Y_RANGE
from dima_core.data.geometry import box_corners_2d
from dima_core.data.qa.actions import ego_footprint
from dima_core.data.sample import DrivingSample
from dima_core.viz import colors as C
from dima_core.viz.layers import PredictionLayer

_SHIFT = 4
_SCALE = 1 << _SHIFT


@dataclass(frozen=True)
class BevView:
    """Metric window ``x_range`` (forward) x ``y_range`` (left) drawn at ``pixels_per_m``."""

    x_range: tuple[float, float]
    y_range: tuple[float, float]
    pixels_per_m: float

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) in pixels."""
        w = int(round((self.y_range[1] - self.y_range[0]) * self.pixels_per_m))
        h = int(round((self.x_range[1] - self.x_range[0]) * self.pixels_per_m))
        return w, h

    def to_px(self, xy: np.ndarray) -> np.ndarray:
        """(N, 2) ego x, y -> (N, 2) float pixels u (right), v (down)."""
        xy = np.asarray(xy, np.float64).reshape(-1, 2)
        u = (self.y_range[1] - xy[:, 1]) * self.pixels_per_m
        v = (self.x_range[1] - xy[:, 0]) * self.pixels_per_m
        return np.stack([u, v], axis=1)

    def fixed(self, xy: np.ndarray) -> np.ndarray:
        """(N, 1, 2) int32 sub-pixel points for cv2 drawing with ``shift=_SHIFT``."""
        return np.round(self.to_px(xy) * _SCALE).astype(np.int32).reshape(-1, 1, 2)


def _polyline(img: np.ndarray, view: BevView, xy: np.ndarray, color: C.Color, thickness: int = 1) -> None:
    if len(xy) >= 2:
        cv2.polylines(img, [view.fixed(xy)], False, color, thickness, cv2.LINE_AA, _SHIFT)


def _dots(img: np.ndarray, view: BevView, xy: np.ndarray, color: C.Color, radius: int = 2) -> None:
    for p in view.fixed(xy).reshape(-1, 2):
        cv2.circle(img, (int(p[0]), int(p[1])), radius * _SCALE, color, -1, cv2.LINE_AA, _SHIFT)


def _box(img: np.ndarray, view: BevView, box: np.ndarray, color: C.Color, fill: bool, thickness: int = 1) -> None:
    """A (7,) box footprint (length along its heading) with a heading tick from the centre to the front."""
    corners = box_corners_2d(float(box[0]), float(box[1]), float(box[6]), float(box[4]), float(box[3]))
    pts = view.fixed(corners)
    if fill:
        overlay = img.copy()
        cv2.fillPoly(overlay, [pts], color, cv2.LINE_AA, _SHIFT)
        cv2.addWeighted(overlay, 0.35, img, 0.65, 0.0, dst=img)
    cv2.polylines(img, [pts], True, color, thickness, cv2.LINE_AA, _SHIFT)
    front = np.array([box[0], box[1]]) + 0.5 * float(box[4]) * np.array([np.cos(box[6]), np.sin(box[6])])
    _polyline(img, view, np.array([box[:2], front]), color, thickness)


def default_view(height_px: int) -> BevView:
    """Square window covering the perception range with the same margin on both axes, ``height_px`` tall."""
    half = max(abs(v) for v in PERCEPTION_X_RANGE + PERCEPTION_Y_RANGE)
    return BevView((-half, half), (-half, half), height_px / (2 * half))


def bev_panel(
    sample: DrivingSample,
    view: BevView,
    prediction: PredictionLayer | None = None,
    show_agent_futures: bool = True,
) -> np.ndarray:
    """(h, w, 3) uint8 BEV of ``sample`` with optional predicted layers on top."""
    w, h = view.size
    img = np.full((h, w, 3), 250, np.uint8)
    # 10 m grid and the perception range, so distances read off the picture.
    grid = 10.0
    for x in np.arange(np.ceil(view.x_range[0] / grid) * grid, view.x_range[1] + 1e-6, grid):
        _polyline(img, view, np.array([[x, view.y_range[0]], [x, view.y_range[1]]]), (232, 232, 232))
    for y in np.arange(np.ceil(view.y_range[0] / grid) * grid, view.y_range[1] + 1e-6, grid):
        _polyline(img, view, np.array([[view.x_range[0], y], [view.x_range[1], y]]), (232, 232, 232))
    (x0, x1), (y0, y1) = PERCEPTION_X_RANGE, PERCEPTION_Y_RANGE
    _polyline(img, view, np.array([[x0, y0], [x0, y1], [x1, y1], [x1, y0], [x0, y0]]), (205, 205, 205))

    vm = sample.vector_map
    for line, label in zip(vm.polylines, vm.labels, strict=True):
        _polyline(img, view, line, C.map_color(int(label)), 2)

    agents = sample.agents
    for i in range(len(agents)):
        color = C.class_color(int(agents.labels[i]))
        if show_agent_futures and agents.future_mask[i].any():
            fut = np.vstack([agents.boxes[i][:2], agents.future[i][agents.future_mask[i]]])
            _polyline(img, view, fut, tuple(int(0.5 * c + 127) for c in color), 1)
        _box(img, view, agents.boxes[i], color, fill=True)

    past = np.vstack([sample.ego_past[sample.ego_past_mask], np.zeros((1, 2))])
    _polyline(img, view, past, C.EGO_PAST_COLOR, 2)
    _dots(img, view, past[:-1], C.EGO_PAST_COLOR)
    future = np.vstack([np.zeros((1, 2)), sample.ego_future[sample.ego_future_mask]])
    _polyline(img, view, future, C.EGO_FUTURE_COLOR, 2)
    _dots(img, view, future[1:], C.EGO_FUTURE_COLOR)

    if prediction is not None:
        prediction.validate()
        if prediction.map_polylines is not None:
            labels = (
                prediction.map_labels
                if prediction.map_labels is not None
                else np.zeros(len(prediction.map_polylines), int)
            )
            for line, label in zip(prediction.map_polylines, labels, strict=True):
                _polyline(img, view, line, C.map_color(int(label)), 1)
        if prediction.boxes is not None:
            for box in prediction.boxes:
                _box(img, view, box, C.PRED_BOX_COLOR, fill=False)
        if prediction.modes is not None:
            for mode in prediction.modes:
                _polyline(img, view, np.vstack([np.zeros((1, 2)), mode]), C.PRED_MODE_COLOR, 1)
        if prediction.trajectory is not None:
            traj = np.vstack([np.zeros((1, 2)), prediction.trajectory])
            _polyline(img, view, traj, C.PRED_TRAJ_COLOR, 2)
            _dots(img, view, traj[1:], C.PRED_TRAJ_COLOR)

    ego = ego_footprint(0.0, 0.0, 0.0)
    cv2.fillPoly(img, [view.fixed(ego)], C.EGO_COLOR, cv2.LINE_AA, _SHIFT)
    _polyline(img, view, np.array([[0.5, 0.0], [2.5, 0.0]]), (255, 255, 255), 1)  # heading tick
    cv2.putText(img, "BEV", (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (60, 60, 60), 1, cv2.LINE_AA)
    return img


__all__ = ["BevView", "bev_panel", "default_view"]
