"""What the planner gets at a planning cycle, built exactly as the data layer builds a keyframe.

- Cameras: the dataset's renderer at the current ego pose with the current agents, JPEG-encoded at the world's
  fixed quality (the planner reads JPEG in training, on the vehicle and here), with the rig's calibration.
- Ego status: speed, longitudinal and lateral acceleration, yaw rate, in the layout of ``EgoStatus`` (the dataset
  reads them from the CAN bus, which the generator writes from the same kinematic quantities).
- Ego history: the positions 2.0 .. 0.5 s ago in the current ego frame, masked before the episode started (as the
  first keyframes of a dataset scene are).
- Command: from the route (:mod:`dima_core.sim.route`), never from the future.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dima_core.constants import CAMERA_NAMES, PAST_STEPS, STEP_SECONDS
from dima_core.data.ego_motion import EGO_STATUS_FROM_CAN_BUS
from dima_core.data.sample import EgoStatus
from dima_core.data.synth.cameras import Camera, ego_to_world
from dima_core.runtime.preprocess import CameraModel, decode_compressed


@dataclass
class SimObservation:
    """One planning cycle's inputs.

    Attributes:
        time: seconds since the episode started; ``frame``: planning cycle index.
        images_jpeg: JPEG bytes per camera, CAMERA_NAMES order.
        cameras: calibration per camera (full-size intrinsics, image size, camera -> ego).
        ego_pose: (4, 4) ego -> global.
        ego_status: speed, (ax, ay), yaw rate; ``ego_status.as_vector()`` is the model input.
        ego_past: (PAST_STEPS, 2) positions 2.0 .. 0.5 s ago in the current ego frame, oldest first.
        ego_past_mask: (PAST_STEPS,) bool, False before the episode start.
        command: 0 right, 1 left, 2 straight.
    """

    time: float
    frame: int
    images_jpeg: list[bytes]
    cameras: list[CameraModel]
    ego_pose: np.ndarray
    ego_status: EgoStatus
    ego_past: np.ndarray
    ego_past_mask: np.ndarray
    command: int

    def images_rgb(self) -> list[np.ndarray]:
        """(H, W, 3) uint8 RGB per camera, decoded as the training loader and the planner node decode."""
        return [
            decode_compressed(data, "jpeg", name) for data, name in zip(self.images_jpeg, CAMERA_NAMES, strict=True)
        ]


def camera_models(cameras: list[Camera]) -> list[CameraModel]:
    return [
        CameraModel(np.asarray(c.K, np.float64), c.width, c.height, np.asarray(c.cam_to_ego, np.float64))
        for c in cameras
    ]


def encode_jpeg(images_bgr: list[np.ndarray], quality: int) -> list[bytes]:
    out = []
    for image in images_bgr:
        ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
        if not ok:
            raise RuntimeError("OpenCV failed to encode a rendered camera image as JPEG")
        out.append(buf.tobytes())
    return out


def ego_history(
    times: np.ndarray, poses: np.ndarray, now: float, x: float, y: float, yaw: float
) -> tuple[np.ndarray, np.ndarray]:
    """Past positions at now - 2.0 .. now - 0.5 s in the current ego frame and their mask.

    ``times`` (K,) and ``poses`` (K, >=2) x, y of the steps logged so far (increasing times, ``now`` excluded).
    """
    past = np.zeros((PAST_STEPS, 2), np.float64)
    mask = np.zeros((PAST_STEPS,), bool)
    c, s = math.cos(yaw), math.sin(yaw)
    for i in range(PAST_STEPS):
        t = now - (PAST_STEPS - i) * STEP_SECONDS
        if len(times) == 0 or t < times[0] - 1e-6:
            continue
        k = int(np.argmin(np.abs(times - t)))
        dx, dy = poses[k, 0] - x, poses[k, 1] - y
        past[i] = (c * dx + s * dy, -s * dx + c * dy)
        mask[i] = True
    return past, mask


def ego_status(speed: float, accel: float, yaw_rate: float) -> EgoStatus:
    """The dataset's CAN-bus ego status for a planar vehicle: lateral acceleration = speed * yaw rate."""
    return EgoStatus(
        speed=float(speed),
        acceleration=np.array([accel, speed * yaw_rate], np.float32),
        yaw_rate=float(yaw_rate),
        source=EGO_STATUS_FROM_CAN_BUS,
    )


def ego_pose_matrix(x: float, y: float, yaw: float) -> np.ndarray:
    return ego_to_world(x, y, yaw)


__all__ = ["SimObservation", "camera_models", "ego_history", "ego_pose_matrix", "ego_status", "encode_jpeg"]
