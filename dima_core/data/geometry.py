"""Rigid-transform helpers shared by the data layer: poses as 4x4 matrices, frame changes, yaw.

All matrices are ``A_to_B`` homogeneous transforms mapping points from frame A to frame B (``p_B = T @ p_A``).
nuScenes records store ``translation`` + ``rotation`` (w, x, y, z) of a child frame in its parent; the devkit's
``transform_matrix`` turns them into ``child_to_parent``.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from nuscenes.utils.geometry_utils import transform_matrix
from pyquaternion import Quaternion


def record_to_matrix(record: Mapping[str, Sequence[float]]) -> np.ndarray:
    """(4, 4) ``child_to_parent`` from a nuScenes record with ``translation`` and ``rotation`` (e.g. ego_pose)."""
    return transform_matrix(np.asarray(record["translation"], dtype=np.float64), Quaternion(record["rotation"]))


def invert(transform: np.ndarray) -> np.ndarray:
    """Inverse of a rigid (4, 4) transform, exact for rotation + translation."""
    rot = transform[:3, :3]
    out = np.eye(4)
    out[:3, :3] = rot.T
    out[:3, 3] = -rot.T @ transform[:3, 3]
    return out


def transform_points(transform: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) transform to (N, 3) points; returns (N, 3)."""
    points = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    return points @ transform[:3, :3].T + transform[:3, 3]


def transform_points_xy(transform: np.ndarray, points_xy: np.ndarray, z: float = 0.0) -> np.ndarray:
    """Apply a (4, 4) transform to (N, 2) ground points at height ``z``; returns the (N, 2) x, y of the result."""
    points_xy = np.asarray(points_xy, dtype=np.float64).reshape(-1, 2)
    points = np.concatenate([points_xy, np.full((len(points_xy), 1), z)], axis=1)
    return transform_points(transform, points)[:, :2]


def yaw_of(rotation: np.ndarray) -> float:
    """Heading (rad, about +z from +x) of the x axis of a (3, 3) rotation, projected onto the x-y plane.

    Same value as the devkit's ``quaternion_yaw`` for the corresponding quaternion, without the quaternion.
    """
    return float(np.arctan2(rotation[1, 0], rotation[0, 0]))


def wrap_angle(angle: np.ndarray | float) -> np.ndarray | float:
    """Wrap angles to [-pi, pi)."""
    return (np.asarray(angle) + np.pi) % (2.0 * np.pi) - np.pi


__all__ = ["invert", "record_to_matrix", "transform_points", "transform_points_xy", "wrap_angle", "yaw_of"]
