"""ROS-free preprocessing of the planner node: image decoding, the training resize/normalisation, calibration,
ego status, and the backend input dict.

Images go through exactly the functions the training dataset uses (:func:`dima_core.data.dataset.prepare_image`
and :func:`~dima_core.data.dataset.scale_intrinsic`), and JPEGs are decoded with the same OpenCV decoder as
:func:`~dima_core.data.dataset.load_image` (``IMREAD_COLOR`` then BGR -> RGB), so one JPEG gives the same tensor in
training and on the vehicle (tested in test/test_runtime_preprocess.py).

Every problem raises :class:`InputError` with a ``kind`` (decode, encoding, calibration, odometry, interface) that
the node reports in /diagnostics; nothing here returns a partially valid input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import cv2
import numpy as np

from dima_core.data.dataset import _INTERPOLATION, prepare_image, scale_intrinsic
from dima_core.export.io_spec import TensorSpec

# Raw sensor_msgs/Image encodings the node accepts (sensor_msgs/image_encodings.hpp names).
RAW_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8")


class InputError(ValueError):
    """An input that cannot be used; ``kind`` groups it for diagnostics."""

    def __init__(self, kind: str, message: str) -> None:
        self.kind = kind
        super().__init__(message)


def decode_compressed(data: bytes | bytearray | memoryview | Sequence[int], fmt: str = "jpeg",
                      source: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB from CompressedImage bytes (JPEG or PNG), decoded as the training loader decodes files."""
    buf = np.frombuffer(bytes(data), dtype=np.uint8) if not isinstance(data, np.ndarray) else data.astype(np.uint8)
    if buf.size == 0:
        raise InputError("decode", f"{source}: empty CompressedImage (format '{fmt}')")
    image = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or image.size == 0:
        raise InputError("decode", f"{source}: corrupt or undecodable CompressedImage ({buf.size} bytes, "
                                   f"format '{fmt}')")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_raw(encoding: str, height: int, width: int, step: int, data: bytes | bytearray | Sequence[int],
               source: str = "image") -> np.ndarray:
    """(H, W, 3) uint8 RGB from a raw sensor_msgs/Image; only rgb8 and bgr8 are accepted (clear error otherwise)."""
    if encoding not in RAW_ENCODINGS:
        raise InputError("encoding", f"{source}: unsupported image encoding '{encoding}'; the planner accepts "
                                     f"{list(RAW_ENCODINGS)} (convert upstream, e.g. image_proc debayer)")
    if height <= 0 or width <= 0 or step < width * 3:
        raise InputError("encoding", f"{source}: invalid image geometry {width}x{height}, step {step}")
    raw = np.frombuffer(bytes(data), dtype=np.uint8)
    if raw.size < step * height:
        raise InputError("encoding", f"{source}: {raw.size} bytes of data for {height} rows of step {step}")
    image = raw[: step * height].reshape(height, step)[:, : width * 3].reshape(height, width, 3)
    return np.ascontiguousarray(image[:, :, ::-1] if encoding == "bgr8" else image)


@dataclass
class CameraModel:
    """Full-size pinhole intrinsics, the image size they refer to, and the camera -> base_link transform."""

    intrinsics: np.ndarray  # (3, 3)
    width: int
    height: int
    cam_to_ego: np.ndarray  # (4, 4)

    @classmethod
    def from_lists(cls, intrinsics: Sequence[float], width: int, height: int, cam_to_ego: Sequence[float],
                   source: str = "camera") -> "CameraModel":
        k = np.asarray(intrinsics, np.float64).reshape(3, 3)
        t = np.asarray(cam_to_ego, np.float64).reshape(4, 4)
        if not (np.isfinite(k).all() and np.isfinite(t).all()) or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise InputError("calibration", f"{source}: invalid calibration (non-finite values or fx/fy <= 0)")
        return cls(k, int(width), int(height), t)


def ego_status_vector(speed: float, ax: float, ay: float, yaw_rate: float, source: str = "odometry") -> np.ndarray:
    """(4,) float32 speed, ax, ay, yaw rate (``EgoStatus.as_vector`` layout); non-finite values are refused."""
    values = np.array([speed, ax, ay, yaw_rate], np.float64)
    if not np.isfinite(values).all():
        named = ", ".join(f"{n}={v}" for n, v in zip(("speed", "ax", "ay", "yaw_rate"), values))
        raise InputError("odometry", f"{source}: non-finite ego status ({named}); frame refused")
    return values.astype(np.float32)


def check_pose(matrix: np.ndarray, source: str = "odometry") -> np.ndarray:
    """A finite 4x4 pose or :class:`InputError` (a NaN pose would poison the temporal ego motion)."""
    if not np.isfinite(matrix).all():
        raise InputError("odometry", f"{source}: non-finite pose; frame refused")
    return matrix


def pose_matrix(position: Sequence[float], quaternion_xyzw: Sequence[float]) -> np.ndarray:
    """4x4 transform from a position and an (x, y, z, w) quaternion."""
    x, y, z, w = (float(v) for v in quaternion_xyzw)
    n = x * x + y * y + z * z + w * w
    if not np.isfinite(n) or n < 1e-12:
        out = np.full((4, 4), np.nan)
        return out
    s = 2.0 / n
    rot = np.array([
        [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
        [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
        [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
    ])
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = np.asarray(position, np.float64)
    return out


@dataclass
class PreprocessSettings:
    """What the training data path did (``DataConfig``) and the network input size (``ModelConfig.image_size``)."""

    image_size_wh: tuple[int, int]
    interpolation: str = "area"
    image_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    image_std: tuple[float, float, float] = (1.0, 1.0, 1.0)


def camera_tensors(images_rgb: Sequence[np.ndarray], cameras: Sequence[CameraModel], settings: PreprocessSettings,
                   names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``images (N,3,H,W)``, ``intrinsics (N,3,3)`` scaled to the network input, ``cam_to_ego (N,4,4)``, float32."""
    w, h = settings.image_size_wh
    interpolation = _INTERPOLATION[settings.interpolation]
    images, intrinsics = [], []
    for name, image, cam in zip(names, images_rgb, cameras):
        if image.shape[:2] != (cam.height, cam.width):
            raise InputError("calibration", f"{name}: image is {image.shape[1]}x{image.shape[0]} but its calibration "
                                            f"is for {cam.width}x{cam.height}; intrinsics would be wrong")
        tensor, sx, sy = prepare_image(image, (h, w), settings.image_mean, settings.image_std, interpolation)
        images.append(tensor)
        intrinsics.append(scale_intrinsic(cam.intrinsics, sx, sy))
    return (np.stack(images).astype(np.float32), np.stack(intrinsics).astype(np.float32),
            np.stack([c.cam_to_ego for c in cameras]).astype(np.float32))


class TemporalState:
    """The recurrent state of a temporal model: the previous ``bev_map`` and the ego pose it was computed at.

    The first frame (or the first after a gap, :meth:`reset`) gets a zero BEV and identity motion, which is what the
    model sees for a sample without a previous keyframe.
    """

    def __init__(self) -> None:
        self.prev_bev: Optional[np.ndarray] = None
        self.prev_pose: Optional[np.ndarray] = None

    def reset(self) -> None:
        self.prev_bev = None
        self.prev_pose = None

    def inputs(self, spec: Mapping[str, TensorSpec], pose: np.ndarray) -> dict[str, np.ndarray]:
        bev_spec = spec["prev_bev"]
        if self.prev_bev is None or self.prev_pose is None:
            return {"prev_bev": np.zeros(bev_spec.shape, np.float32), "ego_motion": np.eye(4, dtype=np.float32)[None]}
        # previous ego frame -> current ego frame = inv(map_T_cur) @ map_T_prev
        motion = np.linalg.inv(pose) @ self.prev_pose
        return {"prev_bev": self.prev_bev, "ego_motion": motion.astype(np.float32)[None]}

    def update(self, bev_map: Optional[np.ndarray], pose: np.ndarray) -> None:
        self.prev_bev = None if bev_map is None else np.asarray(bev_map, np.float32)
        self.prev_pose = pose


def build_inputs(specs: Sequence[TensorSpec], images: np.ndarray, intrinsics: np.ndarray, cam_to_ego: np.ndarray,
                 ego_status: np.ndarray, command: int, temporal: Optional[dict[str, np.ndarray]] = None
                 ) -> dict[str, np.ndarray]:
    """The backend's input dict for one frame: only the names in ``specs`` (an export may prune ego_status)."""
    if int(command) not in (0, 1, 2):
        raise InputError("command", f"driving command {command} is not 0 (right), 1 (left) or 2 (straight)")
    available = {
        "images": images[None],
        "intrinsics": intrinsics[None],
        "cam_to_ego": cam_to_ego[None],
        "ego_status": np.asarray(ego_status, np.float32)[None],
        "command": np.array([int(command)], np.int64),
        **(temporal or {}),
    }
    missing = [s.name for s in specs if s.name not in available]
    if missing:
        raise InputError("interface", f"the model needs inputs {missing} the node cannot provide")
    return {s.name: available[s.name] for s in specs}


__all__ = [
    "CameraModel",
    "InputError",
    "PreprocessSettings",
    "RAW_ENCODINGS",
    "TemporalState",
    "build_inputs",
    "camera_tensors",
    "check_pose",
    "decode_compressed",
    "decode_raw",
    "ego_status_vector",
    "pose_matrix",
]
