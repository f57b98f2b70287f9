"""Optional prediction layers drawn over the ground truth (used by ``dima viz`` for model outputs).

Everything in the current ego frame (x forward, y left, metres), the same conventions as DrivingSample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PredictionLayer:
    """What a planner predicted for one keyframe; any field may be None."""

    trajectory: np.ndarray | None = None  # (T, 2) the selected plan
    modes: np.ndarray | None = None  # (M, T, 2) all command-conditioned modes (drawn faintly)
    boxes: np.ndarray | None = None  # (N, 7) x, y, z, w, l, h, yaw
    box_labels: np.ndarray | None = None  # (N,) DETECTION_CLASSES indices
    map_polylines: np.ndarray | None = None  # (K, P, 2)
    map_labels: np.ndarray | None = None  # (K,) MAP_CLASSES indices
    caption: str | None = None  # one line drawn on the BEV panel (method, metrics, command ...)
    front_camera_trajectory: bool = True  # also project ``trajectory`` (and the GT future) onto CAM_FRONT

    def validate(self) -> None:
        """Raise ValueError naming the field whose shape does not match the conventions above."""
        checks = {
            "trajectory": (self.trajectory, 2, (None, 2)),
            "modes": (self.modes, 3, (None, None, 2)),
            "boxes": (self.boxes, 2, (None, 7)),
            "map_polylines": (self.map_polylines, 3, (None, None, 2)),
        }
        for name, (value, ndim, shape) in checks.items():
            if value is None:
                continue
            arr = np.asarray(value)
            if arr.ndim != ndim or any(s is not None and s != d for s, d in zip(shape, arr.shape, strict=True)):
                raise ValueError(f"PredictionLayer.{name}: expected shape {shape}, got {arr.shape}")
        for name, labels, items in (
            ("box_labels", self.box_labels, self.boxes),
            ("map_labels", self.map_labels, self.map_polylines),
        ):
            if labels is not None and items is not None and len(labels) != len(items):
                raise ValueError(f"PredictionLayer.{name}: {len(labels)} labels for {len(items)} items")


__all__ = ["PredictionLayer"]
