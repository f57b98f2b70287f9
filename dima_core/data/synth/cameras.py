"""The six-camera rig (nuScenes-like extrinsics and fields of view) and the LIDAR_TOP mounting.

Camera frame = nuScenes optical frame: x right, y down, z forward. ``cam_to_ego`` maps camera points into the ego
frame (x forward, y left, z up). Intrinsics are nuScenes' at 1600 x 900 scaled to the configured image size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pyquaternion import Quaternion

from dima_core.constants import CAMERA_NAMES

# name: (x, y, z) mount in the ego frame (m), yaw (deg, CCW from forward), fx at 1600 px width.
_RIG = {
    "CAM_FRONT": ((1.70, 0.00, 1.51), 0.0, 1266.0),
    "CAM_FRONT_RIGHT": ((1.55, -0.49, 1.49), -55.0, 1260.0),
    "CAM_FRONT_LEFT": ((1.52, 0.49, 1.51), 55.0, 1257.0),
    "CAM_BACK": ((0.03, 0.00, 1.57), 180.0, 809.0),
    "CAM_BACK_LEFT": ((1.04, 0.48, 1.56), 110.0, 1256.0),
    "CAM_BACK_RIGHT": ((1.04, -0.48, 1.56), -110.0, 1259.0),
}
FULL_WIDTH, FULL_HEIGHT = 1600, 900

# LIDAR_TOP as in nuScenes: 1.84 m up, its x axis pointing to the ego's right (yaw -90 deg).
LIDAR_TRANSLATION = (0.943713, 0.0, 1.84023)
LIDAR_YAW = -math.pi / 2


@dataclass
class Camera:
    name: str
    K: np.ndarray  # (3, 3)
    cam_to_ego: np.ndarray  # (4, 4)
    width: int
    height: int

    @property
    def rotation_wxyz(self) -> list[float]:
        return [float(v) for v in Quaternion(matrix=self.cam_to_ego[:3, :3], atol=1e-7).elements]

    @property
    def translation(self) -> list[float]:
        return [float(v) for v in self.cam_to_ego[:3, 3]]


def camera_rig(width: int, height: int) -> list[Camera]:
    """The six cameras in CAMERA_NAMES order for images of ``width`` x ``height`` pixels."""
    sx, sy = width / FULL_WIDTH, height / FULL_HEIGHT
    cams = []
    for name in CAMERA_NAMES:
        (tx, ty, tz), yaw_deg, f = _RIG[name]
        yaw = math.radians(yaw_deg)
        # Columns: camera x (right), y (down), z (forward) axes expressed in the ego frame.
        R = np.array(
            [
                [math.sin(yaw), 0.0, math.cos(yaw)],
                [-math.cos(yaw), 0.0, math.sin(yaw)],
                [0.0, -1.0, 0.0],
            ]
        )
        T = np.eye(4)
        T[:3, :3] = R
        T[:3, 3] = (tx, ty, tz)
        K = np.array([[f * sx, 0.0, FULL_WIDTH / 2 * sx], [0.0, f * sy, FULL_HEIGHT / 2 * sy], [0.0, 0.0, 1.0]])
        cams.append(Camera(name, K, T, width, height))
    return cams


def lidar_to_ego() -> np.ndarray:
    """(4, 4) LIDAR_TOP -> ego transform."""
    T = np.eye(4)
    c, s = math.cos(LIDAR_YAW), math.sin(LIDAR_YAW)
    T[:3, :3] = [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
    T[:3, 3] = LIDAR_TRANSLATION
    return T


def ego_to_world(x: float, y: float, yaw: float) -> np.ndarray:
    """(4, 4) ego -> global transform of a flat-ground pose."""
    T = np.eye(4)
    c, s = math.cos(yaw), math.sin(yaw)
    T[:2, :2] = [[c, -s], [s, c]]
    T[0, 3], T[1, 3] = x, y
    return T
