"""Planner frames from a split of a nuScenes-format dataset (the synthetic world): the inputs int8 calibration reads
and the held-out frames every precision's accuracy cost is measured on.

A frame holds what a backend is fed for one keyframe, preprocessed exactly as training preprocessed it
(:class:`~dima_core.data.dataset.DrivingDataset` with the model's input size and identity normalisation, the
training data config's interpolation when a checkpoint gives one), plus the keyframe's GT ego future for the
open-loop L2::

    source = FrameSource("data/synth_drive", split="val")
    frames = load_frames(model_config, source, count=16)        # evenly spaced over the split (many scenes)
    feeds, outputs = run_frame(frames[0], backend.input_specs, backend.infer)

Temporal models (``bev.use_temporal``) carry their previous BEV. A frame then also holds its previous keyframe's
images, and :func:`run_frame` does what the runtime does on a scene: the previous keyframe with the zero state
(``prev_bev`` zeros, identity ``ego_motion``; the frame's own calibration, ego status and command), then the frame
itself with the ``bev_map`` that produced; both feeds are returned, so calibration sees a scene's first frame and a
later one.

Sample selection is deterministic (evenly spaced over the split's keyframes in scene order), so an export and a
benchmark run on the same data read the same frames.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dima_core.data.config import DataConfig
from dima_core.export.io_spec import TensorSpec
from dima_core.models.config import ModelConfig

log = logging.getLogger(__name__)

Infer = Callable[[Mapping[str, np.ndarray]], Mapping[str, np.ndarray]]
# Inputs taken from a dataset item (the temporal state is added by run_frame).
_FRAME_INPUTS = ("images", "intrinsics", "cam_to_ego", "ego_status", "command")


@dataclass(frozen=True)
class FrameSource:
    """One split of a nuScenes-format dataset. ``version`` None: the dataset's only ``v1.0-*`` table directory.
    ``index_path``: a cached ``dima data index`` of the dataset (faster than reading the tables)."""

    dataroot: str
    split: str = "train"
    version: str | None = None
    index_path: str | None = None

    def describe(self) -> str:
        return f"{self.dataroot} ({self.resolved_version()}) split {self.split}"

    def resolved_version(self) -> str:
        if self.version:
            return self.version
        root = Path(self.dataroot)
        if not root.is_dir():
            raise FileNotFoundError(f"dataset root {root} does not exist")
        versions = sorted(p.name for p in root.iterdir() if p.is_dir() and p.name.startswith("v1.0-"))
        if len(versions) != 1:
            raise ValueError(
                f"{root} has table directories {versions or 'none'}: give the version (e.g. v1.0-synth) explicitly"
            )
        return versions[0]


@dataclass
class PlannerFrame:
    """One keyframe as backend inputs.

    Attributes:
        token: sample token.
        inputs: batch-1 arrays by input name: ``images (1, N, 3, H, W)``, ``intrinsics (1, N, 3, 3)``,
            ``cam_to_ego (1, N, 4, 4)``, ``ego_status (1, 4)``, ``command (1,)``.
        previous_images: ``(1, N, 3, H, W)`` the previous keyframe's images (temporal models; None otherwise and at
            a scene's first keyframe).
        ego_motion: ``(1, 4, 4)`` previous ego frame -> this ego frame, with ``previous_images``.
        ego_future: ``(6, 2)`` GT ego positions at 0.5 .. 3.0 s in this ego frame.
        ego_future_mask: ``(6,)`` which GT positions exist (only full futures are scored).
    """

    token: str
    inputs: dict[str, np.ndarray]
    previous_images: np.ndarray | None
    ego_motion: np.ndarray | None
    ego_future: np.ndarray
    ego_future_mask: np.ndarray


def frame_data_config(model_config: ModelConfig, base: DataConfig | None = None) -> DataConfig:
    """The data config whose items are this model's inputs: ``base`` (the training data config of a checkpoint;
    defaults otherwise) at the model's input size with identity normalisation (the model normalises itself) and
    the previous keyframe for temporal models; no image cache (it is checked against a whole index)."""
    base = base if base is not None else DataConfig()
    width, height = model_config.image_size
    return dataclasses.replace(
        base,
        image_size=(height, width),
        image_mean=(0.0, 0.0, 0.0),
        image_std=(1.0, 1.0, 1.0),
        map_points_per_vector=model_config.map_head.num_points,
        num_prev_frames=1 if model_config.bev.use_temporal else 0,
        image_cache=None,
        index_path=None,
        split=None,
    )


def training_data_config(checkpoint: str | os.PathLike[str]) -> DataConfig:
    """The data config a checkpoint was trained with (its stored training config)."""
    from dima_core.eval.planner_inference import load_planner

    return load_planner(checkpoint).data_config


def _evenly_spaced(tokens: list[str], count: int) -> list[str]:
    if count >= len(tokens):
        return list(tokens)
    positions = np.unique(np.linspace(0, len(tokens) - 1, count).round().astype(int))
    return [tokens[i] for i in positions]


@functools.lru_cache(maxsize=2)
def _cached_index(path: str, dataroot: str, version: str):  # -> SampleIndex
    """A cached index read once per process: calibration and held-out frames usually come from the same file (tens
    of MB for a full world); nothing here modifies it."""
    from dima_core.data.index import SampleIndex

    return SampleIndex.load(path, dataroot=dataroot, version=version)


def _sample_index(source: FrameSource, cfg: DataConfig, count: int, temporal: bool):  # -> (SampleIndex, tokens)
    from dima_core.data.index import SampleIndex, dataset_fingerprint
    from dima_core.data.nuscenes_reader import NuScenesReader

    version = source.resolved_version()
    if source.index_path:
        index = _cached_index(str(Path(source.index_path).resolve()), source.dataroot, version)
        tokens = _evenly_spaced(index.tokens(source.split), count)
        return index, tokens
    # Build only the chosen keyframes (and their predecessors for temporal models), without the GT map nothing
    # here reads: a few seconds instead of indexing the whole split.
    reader = NuScenesReader.from_config(
        dataclasses.replace(cfg, dataroot=source.dataroot, version=version, with_map=False)
    )
    tokens = _evenly_spaced(reader.sample_tokens(source.split), count)
    samples = {t: reader.build_sample(t) for t in tokens}
    if temporal:
        for t in tokens:
            prev = samples[t].prev_token
            if prev and prev not in samples:
                samples[prev] = reader.build_sample(prev)
    index = SampleIndex(
        samples=list(samples.values()),
        dataroot=reader.dataroot,
        version=version,
        fingerprint=dataset_fingerprint(reader.dataroot, version),
    )
    return index, tokens


def load_frames(
    model_config: ModelConfig, source: FrameSource, count: int, data_config: DataConfig | None = None
) -> list[PlannerFrame]:
    """``count`` keyframes of ``source.split``, evenly spaced in scene order, as this model's inputs.

    Raises ValueError when the split has no keyframes (or ``count`` < 1), FileNotFoundError for a missing dataset.
    """
    from dima_core.data.dataset import DrivingDataset

    if count < 1:
        raise ValueError(f"the number of frames must be >= 1, got {count}")
    cfg = frame_data_config(model_config, data_config)
    temporal = bool(model_config.bev.use_temporal)
    index, tokens = _sample_index(source, cfg, count, temporal)
    if not tokens:
        raise ValueError(f"{source.describe()} has no keyframes: choose a split the dataset has (train, val)")
    points = next((s.vector_map.polylines.shape[1] for s in index if len(s.vector_map)), None)
    if points is not None:
        # The map is not a model input; a cached index may hold it at another resolution than the model's.
        cfg = dataclasses.replace(cfg, map_points_per_vector=int(points))
    dataset = DrivingDataset(index, cfg)
    position = {t: i for i, t in enumerate(dataset.tokens)}
    frames = []
    for token in tokens:
        item = dataset[position[token]]
        inputs = {name: item[name].numpy()[None] for name in _FRAME_INPUTS}
        inputs["command"] = inputs["command"].reshape(1).astype(np.int64)
        previous = motion = None
        if temporal and bool(item["prev_mask"][0]):
            previous = item["prev_images"][0].numpy()[None]
            motion = item["prev_ego_to_ego"][0].numpy()[None]
        frames.append(
            PlannerFrame(
                token,
                inputs,
                previous,
                motion,
                item["ego_future"].numpy().astype(np.float64),
                item["ego_future_mask"].numpy().astype(bool),
            )
        )
    log.info("loaded %d frames of %s", len(frames), source.describe())
    return frames


def run_frame(
    frame: PlannerFrame, specs: tuple[TensorSpec, ...], infer: Infer
) -> tuple[list[dict[str, np.ndarray]], Mapping[str, np.ndarray]]:
    """Run ``frame`` through ``infer`` as the runtime would; returns (every feed given, the frame's outputs)."""
    names = {s.name for s in specs}
    feeds = {k: v for k, v in frame.inputs.items() if k in names}  # ego_status is pruned without ego status
    if "prev_bev" not in names:
        return [feeds], infer(feeds)
    bev_spec = next(s for s in specs if s.name == "prev_bev")
    zero_state = {"prev_bev": np.zeros(bev_spec.shape, np.float32), "ego_motion": np.eye(4, dtype=np.float32)[None]}
    if frame.previous_images is None:
        first = {**feeds, **zero_state}
        return [first], infer(first)
    previous = {**feeds, "images": frame.previous_images, **zero_state}
    state = infer(previous)["bev_map"]
    current = {
        **feeds,
        "prev_bev": np.asarray(state, np.float32),
        "ego_motion": np.asarray(frame.ego_motion, np.float32),
    }
    return [previous, current], infer(current)


__all__ = ["FrameSource", "PlannerFrame", "frame_data_config", "load_frames", "run_frame", "training_data_config"]
