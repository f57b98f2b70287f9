"""ROS-free preprocessing of the planner node: image decoding, the training resize/normalisation, calibration,
ego status, and the backend input dict.

Images go through the functions the training dataset uses (:func:`dima_core.data.dataset.prepare_image` and
:func:`~dima_core.data.dataset.scale_intrinsic`). Two ways to decode a JPEG (``PreprocessSettings.jpeg_max_reduction``):

- ``1``: the training path bit for bit: the full image decoded as :func:`~dima_core.data.dataset.load_image` decodes
  files (``IMREAD_COLOR``, BGR -> RGB), then resized with the training interpolation;
- ``2``, ``4`` or ``8``: decoded directly at the largest libjpeg reduction up to that (1/2, 1/4, 1/8) whose image still
  covers the network input (:mod:`dima_core.runtime.image_format`), then area-resized for the remainder with the
  reduced pixels' exact footprint (:func:`resize_reduced`). A 1/s decode is itself (close to) a block average, so
  with the training's ``area`` interpolation the result stays within a stated tolerance of the training tensor
  (measured and tested in test/test_runtime_preprocess.py, docs/planner_node.md) at a fraction of the cost; for
  other interpolations it would not, and the settings refuse the combination.

Cameras of a frame can be decoded in parallel (:class:`CameraPipeline`; OpenCV releases the GIL). Every problem raises
:class:`InputError` with a ``kind`` (decode, encoding, calibration, odometry, command, interface) that the node
reports in /diagnostics; nothing here returns a partially valid input.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np

from dima_core.data.dataset import prepare_image, scale_intrinsic
from dima_core.data.images import INTERPOLATION_FLAGS
from dima_core.export.io_spec import TensorSpec
from dima_core.runtime.image_format import JPEG_REDUCTIONS, DecodedImage, decode_image
from dima_core.runtime.input_error import InputError

# Raw sensor_msgs/Image encodings the node accepts (sensor_msgs/image_encodings.hpp names).
RAW_ENCODINGS: tuple[str, ...] = ("rgb8", "bgr8")


def decode_compressed(
    data: bytes | bytearray | memoryview | Sequence[int], fmt: str = "jpeg", source: str = "image"
) -> np.ndarray:
    """(H, W, 3) uint8 RGB at full size from CompressedImage bytes (JPEG or PNG, format and bytes checked),
    decoded exactly as the training loader decodes files."""
    return decode_image(data, fmt, source).pixels


def decode_raw(
    encoding: str, height: int, width: int, step: int, data: bytes | bytearray | Sequence[int], source: str = "image"
) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a raw sensor_msgs/Image; only rgb8 and bgr8 are accepted (clear error otherwise)."""
    if encoding not in RAW_ENCODINGS:
        raise InputError(
            "encoding",
            f"{source}: unsupported image encoding '{encoding}'; the planner accepts "
            f"{list(RAW_ENCODINGS)} (convert upstream, e.g. image_proc debayer)",
        )
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
    def from_lists(
        cls, intrinsics: Sequence[float], width: int, height: int, cam_to_ego: Sequence[float], source: str = "camera"
    ) -> CameraModel:
        k = np.asarray(intrinsics, np.float64).reshape(3, 3)
        t = np.asarray(cam_to_ego, np.float64).reshape(4, 4)
        if not (np.isfinite(k).all() and np.isfinite(t).all()) or k[0, 0] <= 0 or k[1, 1] <= 0:
            raise InputError("calibration", f"{source}: invalid calibration (non-finite values or fx/fy <= 0)")
        return cls(k, int(width), int(height), t)


def ego_status_vector(speed: float, ax: float, ay: float, yaw_rate: float, source: str = "odometry") -> np.ndarray:
    """(4,) float32 speed, ax, ay, yaw rate (``EgoStatus.as_vector`` layout); non-finite values are refused."""
    values = np.array([speed, ax, ay, yaw_rate], np.float64)
    if not np.isfinite(values).all():
        named = ", ".join(f"{n}={v}" for n, v in zip(("speed", "ax", "ay", "yaw_rate"), values, strict=True))
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
    rot = np.array(
        [
            [1 - s * (y * y + z * z), s * (x * y - z * w), s * (x * z + y * w)],
            [s * (x * y + z * w), 1 - s * (x * x + z * z), s * (y * z - x * w)],
            [s * (x * z - y * w), s * (y * z + x * w), 1 - s * (x * x + y * y)],
        ]
    )
    out = np.eye(4)
    out[:3, :3] = rot
    out[:3, 3] = np.asarray(position, np.float64)
    return out


@dataclass
class PreprocessSettings:
    """What the training data path did (``DataConfig``), the network input size (``ModelConfig.image_size``), and how
    far a JPEG may be reduced while decoding (1: the exact training path; see the module docstring)."""

    image_size_wh: tuple[int, int]
    interpolation: str = "area"
    image_mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    image_std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    jpeg_max_reduction: int = 1

    def __post_init__(self) -> None:
        if self.interpolation not in INTERPOLATION_FLAGS:
            raise ValueError(f"interpolation must be one of {sorted(INTERPOLATION_FLAGS)}, got '{self.interpolation}'")
        if self.jpeg_max_reduction not in JPEG_REDUCTIONS:
            raise ValueError(f"jpeg_max_reduction must be one of {JPEG_REDUCTIONS}, got {self.jpeg_max_reduction}")
        if self.jpeg_max_reduction > 1 and self.interpolation != "area":
            raise ValueError(
                f"jpeg_max_reduction {self.jpeg_max_reduction} needs interpolation 'area' (a reduced JPEG "
                "decode averages blocks of pixels; with "
                f"'{self.interpolation}' it would not match training): use jpeg_max_reduction 1"
            )


ImageInput = np.ndarray | DecodedImage


def decode_for_network(
    data: bytes | bytearray | memoryview | Sequence[int], fmt: str, settings: PreprocessSettings, source: str = "image"
) -> DecodedImage:
    """CompressedImage bytes decoded for the network input of ``settings``: JPEGs at the largest reduction up to
    ``settings.jpeg_max_reduction`` that still covers the input size, PNGs (and reduction 1) at full size."""
    return decode_image(data, fmt, source, tuple(settings.image_size_wh), settings.jpeg_max_reduction)


def resize_reduced(image: DecodedImage, size_wh: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8: an area resize of a reduced decode to ``size_wh`` that covers exactly the full image.

    A 1/s decode of a side that is not a multiple of s ends with a pixel standing for a partial block, so the full
    image spans ``full / s`` reduced pixels (1600x900 at 1/8: 200 x 112.5), and resizing all ``ceil(full / s)``
    pixels would stretch the content by up to one block (0.4 % of the height here) against the intrinsics. Repeating
    every pixel ``k`` times (``k`` the smallest factor making ``full * k / s`` whole) and cropping to that span gives a
    piecewise-constant image whose area resize equals the exact-footprint area average; for the usual sizes k is 1
    or 2, so the repeat costs next to nothing.
    """
    s = image.reduction
    pixels = image.pixels
    w, h = int(size_wh[0]), int(size_wh[1])
    if s == 1:
        return pixels if pixels.shape[:2] == (h, w) else cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA)
    kx = s // math.gcd(image.full_width % s, s)  # gcd(0, s) = s: no repeat for a whole number of blocks
    ky = s // math.gcd(image.full_height % s, s)
    if ky > 1:
        pixels = np.repeat(pixels, ky, axis=0)[: image.full_height * ky // s]
    if kx > 1:
        pixels = np.repeat(pixels, kx, axis=1)[:, : image.full_width * kx // s]
    if pixels.shape[:2] == (h, w):
        return pixels
    return cv2.resize(pixels, (w, h), interpolation=cv2.INTER_AREA)


def camera_tensor(
    image: ImageInput, camera: CameraModel, settings: PreprocessSettings, name: str = "camera"
) -> tuple[np.ndarray, np.ndarray]:
    """``(3, H, W)`` float32 network image and its ``(3, 3)`` intrinsics scaled to the network input.

    ``image`` is a full-size (h, w, 3) uint8 RGB array or a :class:`DecodedImage` (possibly reduced); its full size
    must be the one the calibration refers to. Full-size images go through the training's ``prepare_image``
    unchanged; reduced ones through :func:`resize_reduced`, then the same normalisation. The intrinsics scale by
    network size / full size in both cases, as in training.
    """
    decoded = image if isinstance(image, DecodedImage) else DecodedImage(image, image.shape[1], image.shape[0], 1)
    if (decoded.full_height, decoded.full_width) != (camera.height, camera.width):
        raise InputError(
            "calibration",
            f"{name}: image is {decoded.full_width}x{decoded.full_height} but its "
            f"calibration is for {camera.width}x{camera.height}; intrinsics would be "
            "wrong",
        )
    w, h = settings.image_size_wh
    if decoded.reduction == 1:
        tensor, sx, sy = prepare_image(
            decoded.pixels, (h, w), settings.image_mean, settings.image_std, INTERPOLATION_FLAGS[settings.interpolation]
        )
    else:
        if settings.interpolation != "area":
            raise InputError(
                "interface",
                f"{name}: a 1/{decoded.reduction} JPEG decode needs interpolation 'area', "
                f"not '{settings.interpolation}'",
            )
        tensor, _, _ = prepare_image(
            resize_reduced(decoded, (w, h)), (h, w), settings.image_mean, settings.image_std
        )  # already at (h, w): the normalisation only
        sx, sy = w / decoded.full_width, h / decoded.full_height
    return tensor, scale_intrinsic(camera.intrinsics, sx, sy)


def camera_tensors(
    images_rgb: Sequence[ImageInput], cameras: Sequence[CameraModel], settings: PreprocessSettings, names: Sequence[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``images (N,3,H,W)``, ``intrinsics (N,3,3)`` scaled to the network input, ``cam_to_ego (N,4,4)``, float32."""
    outs = [
        camera_tensor(image, cam, settings, name) for name, image, cam in zip(names, images_rgb, cameras, strict=True)
    ]
    return _stack(outs, cameras)


def _stack(
    outs: Sequence[tuple[np.ndarray, np.ndarray]], cameras: Sequence[CameraModel]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return (
        np.stack([t for t, _ in outs]).astype(np.float32),
        np.stack([k for _, k in outs]).astype(np.float32),
        np.stack([c.cam_to_ego for c in cameras]).astype(np.float32),
    )


CameraSource = Callable[[str], tuple[ImageInput, CameraModel]]


class CameraPipeline:
    """Decode + resize + normalise every camera of a frame, in ``threads`` threads (1: in the calling thread).

    ``tensors(names, source)`` calls ``source(name) -> (image, camera model)`` (the node's decoding of its message
    and its calibration lookup) and :func:`camera_tensor` for each camera. OpenCV's decoder and resize and numpy's
    conversions release the GIL, so with threads > 1 cameras decode concurrently; results keep the camera order,
    and the first camera's error (in that order) is raised after all have finished, so the pool never holds work of a
    previous frame.
    """

    def __init__(self, settings: PreprocessSettings, threads: int = 1) -> None:
        if threads < 1:
            raise ValueError(f"threads must be >= 1, got {threads}")
        self.settings = settings
        self.threads = int(threads)
        self._pool = (
            ThreadPoolExecutor(max_workers=self.threads, thread_name_prefix="dima-decode") if self.threads > 1 else None
        )

    def _one(self, name: str, source: CameraSource) -> tuple[np.ndarray, np.ndarray, CameraModel]:
        image, camera = source(name)
        tensor, k = camera_tensor(image, camera, self.settings, name)
        return tensor, k, camera

    def tensors(self, names: Sequence[str], source: CameraSource) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``images (N,3,H,W)``, ``intrinsics (N,3,3)``, ``cam_to_ego (N,4,4)`` float32 for ``names`` in order."""
        if self._pool is None:
            results = [self._one(name, source) for name in names]
        else:
            futures: list[Future] = [self._pool.submit(self._one, name, source) for name in names]
            errors = [f.exception() for f in futures]  # waits for all of them
            for error in errors:
                if error is not None:
                    raise error
            results = [f.result() for f in futures]
        return _stack([(t, k) for t, k, _ in results], [c for _, _, c in results])

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


class TemporalState:
    """The recurrent state of a temporal model: the previous ``bev_map`` and the ego pose it was computed at.

    The first frame (or the first after a gap, :meth:`reset`) gets a zero BEV and identity motion, which is what the
    model sees for a sample without a previous keyframe.
    """

    def __init__(self) -> None:
        self.prev_bev: np.ndarray | None = None
        self.prev_pose: np.ndarray | None = None

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

    def update(self, bev_map: np.ndarray | None, pose: np.ndarray) -> None:
        self.prev_bev = None if bev_map is None else np.asarray(bev_map, np.float32)
        self.prev_pose = pose


def build_inputs(
    specs: Sequence[TensorSpec],
    images: np.ndarray,
    intrinsics: np.ndarray,
    cam_to_ego: np.ndarray,
    ego_status: np.ndarray,
    command: int,
    temporal: dict[str, np.ndarray] | None = None,
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
    "CameraPipeline",
    "CameraSource",
    "DecodedImage",
    "ImageInput",
    "InputError",
    "PreprocessSettings",
    "RAW_ENCODINGS",
    "TemporalState",
    "build_inputs",
    "camera_tensor",
    "camera_tensors",
    "check_pose",
    "decode_compressed",
    "decode_for_network",
    "decode_raw",
    "ego_status_vector",
    "pose_matrix",
    "resize_reduced",
]
