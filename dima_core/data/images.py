"""Camera images as the training data reads them: decode a JPEG, resize it to the network input, normalise it.

Kept free of torch so that the image-cache builder's worker processes (image_cache.py) start in a fraction of a
second; :mod:`dima_core.data.dataset` re-exports everything here.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import cv2
import numpy as np

# DataConfig.interpolation name -> OpenCV resize flag (the preprocessing of the node resizes the same way).
INTERPOLATION_FLAGS: dict[str, int] = {
    "linear": cv2.INTER_LINEAR,
    "area": cv2.INTER_AREA,
    "nearest": cv2.INTER_NEAREST,
    "cubic": cv2.INTER_CUBIC,
}
INTERPOLATIONS: tuple[str, ...] = tuple(INTERPOLATION_FLAGS)  # DataConfig.interpolation names


class ImageLoadError(OSError):
    """A camera image is missing or cannot be decoded; the message names the file and the sample."""


def load_image(path: str | os.PathLike, sample_token: str = "") -> np.ndarray:
    """(H, W, 3) uint8 RGB image; raises ImageLoadError naming the file when it is missing or undecodable."""
    where = f" (sample {sample_token})" if sample_token else ""
    if not os.path.isfile(path):
        raise ImageLoadError(f"camera image {path} not found{where}")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None or image.ndim != 3 or image.size == 0:
        raise ImageLoadError(f"camera image {path} is corrupt or not an image{where}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def resize_image(
    image: np.ndarray, size_hw: Sequence[int], interpolation: int | str = cv2.INTER_AREA
) -> tuple[np.ndarray, float, float]:
    """The resize half of :func:`prepare_image`: ``(h, w, 3) uint8 -> (H, W, 3) uint8`` and ``(sx, sy)``.

    ``interpolation`` is a cv2 flag or a :data:`INTERPOLATIONS` name. An image already at ``size_hw`` is returned
    as it is. The pre-decoded image cache stores exactly this output (image_cache.py).
    """
    if isinstance(interpolation, str):
        interpolation = INTERPOLATION_FLAGS[interpolation]
    height, width = int(size_hw[0]), int(size_hw[1])
    src_h, src_w = image.shape[:2]
    if (src_h, src_w) != (height, width):
        image = cv2.resize(image, (width, height), interpolation=interpolation)
    return image, width / src_w, height / src_h


def normalise_image(
    pixels: np.ndarray, mean: Sequence[float], std: Sequence[float], channels_first: bool = False
) -> np.ndarray:
    """uint8 RGB -> float32 ``(x / 255 - mean) / std``; ``pixels`` ``(..., H, W, 3)``, or ``(..., 3, H, W)`` with
    ``channels_first``. The same element-wise expression either way, so the two layouts give identical values."""
    shape = (3, 1, 1) if channels_first else (3,)
    out = pixels.astype(np.float32) / 255.0
    return (out - np.asarray(mean, np.float32).reshape(shape)) / np.asarray(std, np.float32).reshape(shape)


def prepare_image(
    image: np.ndarray,
    size_hw: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    interpolation: int = cv2.INTER_AREA,
) -> tuple[np.ndarray, float, float]:
    """Resize an (h, w, 3) uint8 RGB image to ``size_hw`` and normalise it.

    Returns:
        (3, H, W) float32 ``(x / 255 - mean) / std``, and the scale factors (sx, sy) = (W / w, H / h) that map
        original pixel coordinates to resized ones (the intrinsics scale the same way).
    """
    image, sx, sy = resize_image(image, size_hw, interpolation)
    out = normalise_image(image, mean, std)
    return np.ascontiguousarray(out.transpose(2, 0, 1)), sx, sy


def scale_intrinsic(intrinsic: np.ndarray, sx: float, sy: float) -> np.ndarray:
    """K of the resized image: rows scaled by (sx, sy, 1), as mmdet3d/VAD scale lidar2img for a resize."""
    return np.diag([sx, sy, 1.0]) @ np.asarray(intrinsic, np.float64)


__all__ = [
    "INTERPOLATIONS",
    "INTERPOLATION_FLAGS",
    "ImageLoadError",
    "load_image",
    "normalise_image",
    "prepare_image",
    "resize_image",
    "scale_intrinsic",
]
