"""Geometry shared by the library: poses as 4x4 matrices, frame changes, yaw, yaw quaternions, box footprints.

All matrices are ``A_to_B`` homogeneous transforms mapping points from frame A to frame B (``p_B = T @ p_A``).
nuScenes records store ``translation`` + ``rotation`` (w, x, y, z) of a child frame in its parent; the devkit's
``transform_matrix`` turns them into ``child_to_parent``. Headings (yaw) are radians counter-clockwise from +x.

Box footprints (:func:`box_corners_2d`) are the one definition of an oriented rectangle's corners used by the QA
rules, the synthetic world, the occupancy metric, scene editing and the viewers; :func:`boxes_overlap` tests two of
them. The yaw quaternion is written once (:func:`yaw_quaternion`, nuScenes order) and reordered for ROS
(:func:`yaw_to_quaternion`).

Only :func:`record_to_matrix` needs the nuScenes devkit; it imports it when called, so the runtime and the metrics
can use this module without loading the devkit.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np


def record_to_matrix(record: Mapping[str, Sequence[float]]) -> np.ndarray:
    """(4, 4) ``child_to_parent`` from a nuScenes record with ``translation`` and ``rotation`` (e.g. ego_pose)."""
    from nuscenes.utils.geometry_utils import transform_matrix
    from pyquaternion import Quaternion

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
    """Angle(s) wrapped into [-pi, pi): an array for an array, a scalar for a scalar."""
    if isinstance(angle, np.ndarray):
        return (angle + np.pi) % (2.0 * np.pi) - np.pi
    return (angle + math.pi) % (2.0 * math.pi) - math.pi


def yaw_quaternion(yaw: float) -> list[float]:
    """nuScenes rotation [w, x, y, z] of a pure rotation about +z by ``yaw``."""
    return [math.cos(yaw / 2.0), 0.0, 0.0, math.sin(yaw / 2.0)]


def yaw_to_quaternion(yaw: float) -> tuple[float, float, float, float]:
    """The rotation of :func:`yaw_quaternion` in ROS order (x, y, z, w), as ``geometry_msgs/Quaternion`` holds it."""
    w, x, y, z = yaw_quaternion(yaw)
    return x, y, z, w


def box_corners_2d(x: float, y: float, yaw: float, length: float, width: float) -> np.ndarray:
    """(4, 2) footprint corners of a box centred at (x, y): front-left, rear-left, rear-right, front-right.

    ``length`` runs along the heading ``yaw``, ``width`` across it; the corners go round counter-clockwise.
    """
    c, s = math.cos(yaw), math.sin(yaw)
    hl, hw = length / 2.0, width / 2.0
    local = np.array([[hl, hw], [-hl, hw], [-hl, -hw], [hl, -hw]])
    return local @ np.array([[c, s], [-s, c]]) + np.array([x, y])


def boxes_overlap(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two convex quads (4, 2) (corners in order round the quad) overlap: a separating-axis test."""
    for poly in (a, b):
        for i in range(4):
            edge = poly[(i + 1) % 4] - poly[i]
            axis = np.array([-edge[1], edge[0]])
            pa, pb = a @ axis, b @ axis
            if pa.max() < pb.min() or pb.max() < pa.min():
                return False
    return True


__all__ = [
    "box_corners_2d",
    "boxes_overlap",
    "invert",
    "record_to_matrix",
    "transform_points",
    "transform_points_xy",
    "wrap_angle",
    "yaw_of",
    "yaw_quaternion",
    "yaw_to_quaternion",
]
