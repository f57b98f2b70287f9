"""PyTorch Dataset over a cached sample index, and the collate function that batches it.

One item is a dict of tensors (shapes for one sample; ``collate`` adds a leading batch dimension B):

=====================  ==========================  ==============================================================
key                    shape / type                meaning
=====================  ==========================  ==============================================================
images                 (6, 3, H, W) float32        RGB, resized to ``image_size``, ``(x / 255 - mean) / std``
                                                   (from the JPEGs, or from ``image_cache``: the same values)
intrinsics             (6, 3, 3) float32           pinhole K scaled to the resized image
cam_to_ego             (6, 4, 4) float32           camera (optical) -> current ego frame
ego_to_image           (6, 3, 4) float32           ``intrinsics @ inv(cam_to_ego)[:3]`` (VAD's lidar2img, ego frame)
ego_status             (4,) float32                speed, ax, ay, yaw rate (EgoStatus.as_vector)
command                () int64                    0 right, 1 left, 2 straight (VAD's order)
ego_future             (6, 2) float32              GT positions at 0.5 .. 3.0 s, current ego frame
ego_future_yaw         (6,) float32                heading relative to the current one
ego_future_mask        (6,) bool
ego_past               (4, 2) float32              positions at -2.0 .. -0.5 s, oldest first
ego_past_mask          (4,) bool
agent_boxes            (A, 7) float32              x, y, z, w, l, h, yaw; A = max_agents, nearest first
agent_labels           (A,) int64                  DETECTION_CLASSES index, -1 on padding
agent_velocities       (A, 2) float32              vx, vy (0 where unknown, see agent_velocity_mask)
agent_velocity_mask    (A,) bool                   the devkit could estimate the velocity
agent_future           (A, 6, 2) float32           future centres, current ego frame
agent_future_yaw       (A, 6) float32
agent_future_mask      (A, 6) bool
agent_mask             (A,) bool                   real agent (not padding)
map_polylines          (M, P, 2) float32           M = max_map_vectors, P = points per vector
map_labels             (M,) int64                  MAP_CLASSES index, -1 on padding
map_mask               (M,) bool
prev_images            (K, 6, 3, H, W) float32     only with num_prev_frames = K > 0; most recent first
prev_ego_to_ego        (K, 4, 4) float32           previous ego frame -> current ego frame
prev_mask              (K,) bool                   the previous keyframe exists (zeros otherwise)
token, scene_name,     str / list[str]             provenance; ``tags`` are scenario / long-tail split names
split, tags
=====================  ==========================  ==============================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dima_core.constants import CAMERA_NAMES, PERCEPTION_X_RANGE, PERCEPTION_Y_RANGE
from dima_core.data.config import DataConfig
from dima_core.data.geometry import invert
from dima_core.data.image_cache import ImageCache
from dima_core.data.images import (  # re-exported: callers import these from here (runtime/preprocess.py, tools)
    INTERPOLATION_FLAGS,
    INTERPOLATIONS,
    ImageLoadError,
    load_image,
    normalise_image,
    prepare_image,
    resize_image,
    scale_intrinsic,
)
from dima_core.data.index import SampleIndex
from dima_core.data.sample import DrivingSample

# Keys collate keeps as Python lists instead of stacking.
_LIST_KEYS = ("token", "scene_name", "split", "tags")


def _pad(array: np.ndarray, length: int, fill: float = 0.0) -> np.ndarray:
    """Pad or truncate along axis 0 to ``length``."""
    array = array[:length]
    if len(array) == length:
        return array
    pad = np.full((length - len(array), *array.shape[1:]), fill, dtype=array.dtype)
    return np.concatenate([array, pad], axis=0)


class DrivingDataset(Dataset):
    """Samples of a :class:`SampleIndex` as model-ready tensors (layout in the module docstring).

    Args:
        index: the cached index (``SampleIndex.load`` or ``build_index``).
        cfg: data configuration (image size, normalisation, padding sizes, previous frames, split).
        load_images: False skips the JPEGs (``images`` / ``prev_images`` absent), for label-only consumers.
        image_cache: pre-decoded images (:mod:`dima_core.data.image_cache`) to read instead of the JPEGs; default:
            ``cfg.image_cache`` opened and checked against the index, the image size and the interpolation. Items
            are identical either way.
    """

    def __init__(
        self,
        index: SampleIndex,
        cfg: DataConfig | None = None,
        load_images: bool = True,
        image_cache: ImageCache | None = None,
    ):
        self.index = index
        self.cfg = cfg if cfg is not None else DataConfig()
        self.load_images = load_images
        self.tokens = index.tokens(self.cfg.split)
        self._interpolation = INTERPOLATION_FLAGS[self.cfg.interpolation]
        if image_cache is None and self.cfg.image_cache and load_images:
            image_cache = ImageCache.open(self.cfg.image_cache)
        if image_cache is not None:
            image_cache.check(index, self.cfg.image_size, self.cfg.interpolation)
        self.image_cache = image_cache if load_images else None

    @classmethod
    def from_config(cls, cfg: DataConfig, load_images: bool = True) -> DrivingDataset:
        """Open ``cfg.index_path``, checking it was built from ``cfg.dataroot`` / ``cfg.version``."""
        if not cfg.index_path:
            raise ValueError("DataConfig.index_path is not set: build an index with `dima data index` first")
        index = SampleIndex.load(cfg.index_path, dataroot=cfg.dataroot, version=cfg.version)
        return cls(index, cfg, load_images)

    def __len__(self) -> int:
        return len(self.tokens)

    def _cached_images(self, sample: DrivingSample) -> tuple[np.ndarray, list[tuple[float, float]]]:
        """``(images (6, 3, H, W) float32, [(sx, sy)] per camera)`` from the image cache, as the JPEG path makes
        them: the cache holds ``resize_image``'s pixels and each source's size."""
        assert self.image_cache is not None
        height, width = int(self.cfg.image_size[0]), int(self.cfg.image_size[1])
        scales = [(width / int(w), height / int(h)) for h, w in self.image_cache.source_hw(sample.token)]
        pixels = self.image_cache.images(sample.token)
        return normalise_image(pixels, self.cfg.image_mean, self.cfg.image_std, channels_first=True), scales

    def _cameras(self, sample: DrivingSample) -> dict[str, np.ndarray]:
        images: list[np.ndarray] | np.ndarray = []
        intrinsics = []
        cached_scales: list[tuple[float, float]] | None = None
        if self.image_cache is not None:
            images, cached_scales = self._cached_images(sample)
        for c, cam in enumerate(sample.cameras):
            if cached_scales is not None:
                sx, sy = cached_scales[c]
            elif self.load_images:
                image, sx, sy = prepare_image(
                    load_image(cam.image_path, sample.token),
                    self.cfg.image_size,
                    self.cfg.image_mean,
                    self.cfg.image_std,
                    self._interpolation,
                )
                images.append(image)  # type: ignore[union-attr]
            else:
                sx, sy = self.cfg.image_size[1] / cam.width, self.cfg.image_size[0] / cam.height
            intrinsics.append(scale_intrinsic(cam.intrinsic, sx, sy))
        intrinsics_arr = np.stack(intrinsics)
        cam_to_ego = np.stack([cam.cam_to_ego for cam in sample.cameras])
        ego_to_image = np.einsum("nij,njk->nik", intrinsics_arr, np.linalg.inv(cam_to_ego)[:, :3, :])
        out = {
            "intrinsics": intrinsics_arr.astype(np.float32),
            "cam_to_ego": cam_to_ego.astype(np.float32),
            "ego_to_image": ego_to_image.astype(np.float32),
        }
        if self.load_images:
            out["images"] = np.stack(images)
        return out

    def _agents(self, sample: DrivingSample) -> dict[str, np.ndarray]:
        agents = sample.agents
        keep = np.arange(len(agents))
        if self.cfg.agents_in_perception_range and len(agents):
            x, y = agents.boxes[:, 0], agents.boxes[:, 1]
            inside = (
                (x >= PERCEPTION_X_RANGE[0])
                & (x <= PERCEPTION_X_RANGE[1])
                & (y >= PERCEPTION_Y_RANGE[0])
                & (y <= PERCEPTION_Y_RANGE[1])
            )
            keep = keep[inside]
        # Nearest first, so truncation to max_agents drops the farthest.
        keep = keep[np.argsort(np.hypot(agents.boxes[keep, 0], agents.boxes[keep, 1]), kind="stable")]
        num = self.cfg.max_agents
        velocities = agents.velocities[keep]
        velocity_known = np.isfinite(velocities).all(axis=1)
        return {
            "agent_boxes": _pad(agents.boxes[keep].astype(np.float32), num),
            "agent_labels": _pad(agents.labels[keep].astype(np.int64), num, -1),
            "agent_velocities": _pad(np.where(velocity_known[:, None], velocities, 0.0).astype(np.float32), num),
            "agent_velocity_mask": _pad(velocity_known, num, False),
            "agent_future": _pad(agents.future[keep].astype(np.float32), num),
            "agent_future_yaw": _pad(agents.future_yaw[keep].astype(np.float32), num),
            "agent_future_mask": _pad(agents.future_mask[keep].astype(bool), num, False),
            "agent_mask": _pad(np.ones(len(keep), bool), num, False),
        }

    def _map(self, sample: DrivingSample) -> dict[str, np.ndarray]:
        vmap = sample.vector_map
        num, points = self.cfg.max_map_vectors, self.cfg.map_points_per_vector
        polylines = vmap.polylines.astype(np.float32)
        if polylines.shape[1:] != (points, 2) and len(vmap):
            raise ValueError(
                f"sample {sample.token}: index map vectors have {polylines.shape[1]} points, config wants {points}; "
                "rebuild the index with the same map_points_per_vector"
            )
        polylines = polylines.reshape(-1, points, 2)
        return {
            "map_polylines": _pad(polylines, num),
            "map_labels": _pad(vmap.labels.astype(np.int64), num, -1),
            "map_mask": _pad(np.ones(len(vmap), bool), num, False),
        }

    def _previous(self, sample: DrivingSample) -> dict[str, np.ndarray]:
        count = self.cfg.num_prev_frames
        height, width = self.cfg.image_size
        images = np.zeros((count, len(CAMERA_NAMES), 3, height, width), np.float32)
        transforms = np.tile(np.eye(4, dtype=np.float32), (count, 1, 1))
        mask = np.zeros((count,), bool)
        global_to_ego = invert(sample.ego_to_global)
        for k, prev in enumerate(self.index.previous(sample.token, count)):
            if prev is None:
                break
            mask[k] = True
            transforms[k] = (global_to_ego @ prev.ego_to_global).astype(np.float32)
            if self.image_cache is not None:
                images[k] = self._cached_images(prev)[0]
            elif self.load_images:
                for c, cam in enumerate(prev.cameras):
                    images[k, c] = prepare_image(
                        load_image(cam.image_path, prev.token),
                        self.cfg.image_size,
                        self.cfg.image_mean,
                        self.cfg.image_std,
                        self._interpolation,
                    )[0]
        out = {"prev_ego_to_ego": transforms, "prev_mask": mask}
        if self.load_images:
            out["prev_images"] = images
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample = self.index.get(self.tokens[i])
        arrays: dict[str, np.ndarray] = {
            **self._cameras(sample),
            "ego_status": sample.ego_status.as_vector(),
            "command": np.asarray(sample.command, np.int64),
            "ego_future": sample.ego_future.astype(np.float32),
            "ego_future_yaw": sample.ego_future_yaw.astype(np.float32),
            "ego_future_mask": sample.ego_future_mask.astype(bool),
            "ego_past": sample.ego_past.astype(np.float32),
            "ego_past_mask": sample.ego_past_mask.astype(bool),
            **self._agents(sample),
            **self._map(sample),
        }
        if self.cfg.num_prev_frames > 0:
            arrays.update(self._previous(sample))
        # ascontiguousarray would turn the 0-d command into shape (1,); it is contiguous already.
        item: dict[str, Any] = {
            key: torch.from_numpy(np.ascontiguousarray(v) if v.ndim else v) for key, v in arrays.items()
        }
        item.update(token=sample.token, scene_name=sample.scene_name, split=sample.split, tags=list(sample.tags))
        return item


def collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Batch dataset items: tensors stacked on a new leading dim B; token/scene_name/split/tags as lists."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        batch[key] = values if key in _LIST_KEYS else torch.stack(values)
    return batch


__all__ = [
    "DrivingDataset",
    "INTERPOLATIONS",
    "ImageLoadError",
    "collate",
    "load_image",
    "normalise_image",
    "prepare_image",
    "resize_image",
    "scale_intrinsic",
]
