"""Run a trained :class:`~dima_core.models.VisionPlanner` over a dataset split: trajectories, decoded BEAM outputs
and per-frame latency.

This is the library behind ``dima eval --checkpoint``, ``dima viz --checkpoint`` and ``dima bench planner``::

    from dima_core.eval.planner_inference import load_planner, inference_dataset, run_planner

    loaded = load_planner("runs/tiny")                        # checkpoint file or run directory
    dataset = inference_dataset(loaded, index, split="val")    # the training data path (DrivingDataset + collate)
    result = run_planner(loaded.model, dataset, batch_size=1, device="cpu")
    result.trajectories                                       # {sample token: (6, 2) ego-frame positions}
    result.mean_latency_ms                                    # mean model time per frame, ms

Batches go through exactly the training path: :class:`~dima_core.data.dataset.DrivingDataset` with the data
config :func:`~dima_core.training.stage1.stage1_data_config` derives from the checkpoint's training config and model
config (input size, map resolution, identity normalisation, history frames), :func:`~dima_core.data.dataset.collate`,
and, for temporal models, the previous BEV built by :func:`~dima_core.training.stage1.history_bev` from the
dataset's previous keyframes, as training does. The model runs in eval mode under ``torch.no_grad``.

Frames: everything returned is in each sample's current ego frame (x forward, y left, metres; docs/design.md,
Frames and shapes).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from dima_core.data.config import DataConfig
from dima_core.data.dataset import DrivingDataset, collate
from dima_core.data.index import SampleIndex
from dima_core.io.batch import move_to_device
from dima_core.models import ModelConfig, VisionPlanner

if TYPE_CHECKING:
    from dima_core.models.dima import LoadedDima

log = logging.getLogger(__name__)


@dataclass
class FramePrediction:
    """The planner's outputs for one keyframe, as numpy, in that keyframe's ego frame.

    Attributes:
        trajectory: (6, 2) the plan of the sample's command (positions at 0.5 .. 3.0 s).
        trajectories: (3, 6, 2) one plan per command (0 right, 1 left, 2 straight).
        command: the command that selected ``trajectory``.
        agent_boxes: (Na, 7) x, y, z, w, l, h, yaw of every agent query.
        agent_scores: (Na, num_classes) sigmoid class scores (``constants.DETECTION_CLASSES`` order).
        agent_velocities: (Na, 2) vx, vy in m/s.
        map_polylines: (Nm, P, 2) polyline points of every map query.
        map_scores: (Nm, 3) sigmoid class scores (``constants.MAP_CLASSES`` order).
    """

    trajectory: np.ndarray
    trajectories: np.ndarray
    command: int
    agent_boxes: np.ndarray
    agent_scores: np.ndarray
    agent_velocities: np.ndarray
    map_polylines: np.ndarray
    map_scores: np.ndarray


@dataclass
class InferenceResult:
    """Outputs of :func:`run_planner` over a dataset.

    Attributes:
        predictions: sample token -> :class:`FramePrediction`, in dataset order.
        latency_ms: per batch, the wall time of the model (history BEV included, data loading excluded) divided by
            the batch size, in ms; with batch size 1 this is the per-frame latency.
        batch_size: the batch size used.
        device: the torch device the model ran on.
    """

    predictions: dict[str, FramePrediction] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)
    batch_size: int = 1
    device: str = "cpu"

    @property
    def trajectories(self) -> dict[str, np.ndarray]:
        """Sample token -> (6, 2) float64 plan (the results-file content)."""
        return {token: p.trajectory.astype(np.float64) for token, p in self.predictions.items()}

    @property
    def mean_latency_ms(self) -> float:
        """Mean model time per frame over all batches except the first (warm-up: allocator, cuDNN autotune)."""
        timed = self.latency_ms[1:] if len(self.latency_ms) > 1 else self.latency_ms
        return float(np.mean(timed)) if timed else float("nan")

    def latency_summary(self) -> dict[str, Any]:
        """JSON-ready latency statistics (ms per frame; the first batch is excluded as warm-up when possible)."""
        timed = self.latency_ms[1:] if len(self.latency_ms) > 1 else self.latency_ms
        arr = np.asarray(timed, np.float64)
        return {
            "device": self.device,
            "batch_size": self.batch_size,
            "num_frames": len(self.predictions),
            "num_timed_batches": int(arr.size),
            "mean_ms_per_frame": float(arr.mean()) if arr.size else None,
            "median_ms_per_frame": float(np.median(arr)) if arr.size else None,
            "p90_ms_per_frame": float(np.percentile(arr, 90)) if arr.size else None,
            "note": "model forward (with the history BEV of temporal models) per frame = batch time / batch size; "
            "data loading excluded; first batch excluded as warm-up",
        }


@dataclass
class LoadedPlanner:
    """A planner restored from a stage-1 or stage-2 checkpoint.

    Attributes:
        model: the planner in eval mode on the CPU (move it with ``.to(device)`` or let :func:`run_planner` do it).
        model_config: its :class:`ModelConfig` (from the checkpoint, not from a YAML file).
        data_config: the dataset config training used (from the checkpoint), as :func:`stage1_data_config` fixes it
            for this model; ``dataroot``/``version``/``split`` are whatever training had.
        checkpoint: path of the checkpoint file.
        step: optimiser steps the checkpoint was taken after.
    """

    model: VisionPlanner
    model_config: ModelConfig
    data_config: DataConfig
    checkpoint: str
    step: int


def load_planner_for_cli(checkpoint: str | os.PathLike) -> LoadedPlanner:
    """:func:`load_planner` with a :class:`CheckpointError` turned into a ``ValueError``, which ``dima`` reports as
    a one-line error (exit status 2) instead of a traceback."""
    from dima_core.io.checkpoint import CheckpointError

    try:
        return load_planner(checkpoint)
    except CheckpointError as exc:
        raise ValueError(str(exc)) from exc


def load_planner(checkpoint: str | os.PathLike, map_location: str | torch.device = "cpu") -> LoadedPlanner:
    """Restore the vision planner of a stage-1 or stage-2 checkpoint (a file, or a run directory with a ``latest``
    pointer); a stage-2 checkpoint's teacher is skipped and the LLM never constructed.

    The model config is the one stored in the checkpoint, so no YAML has to match; the weights are checked against
    it key by key (:func:`~dima_core.models.dima.load_dima`).

    Raises:
        CheckpointError: missing, corrupt, foreign, or not a planner checkpoint.
    """
    from dima_core.models.dima import load_dima

    return loaded_planner_view(load_dima(checkpoint, mode="vision", map_location=map_location))


def loaded_planner_view(loaded: LoadedDima, model: torch.nn.Module | None = None) -> LoadedPlanner:
    """``loaded`` as a :class:`LoadedPlanner` whose data config comes from the checkpoint's training config.

    ``model`` replaces the planner (e.g. a mode wrapper of :mod:`dima_core.eval.dima_modes`)."""
    from dima_core.config import config_from_dict
    from dima_core.training.config import train_config_class
    from dima_core.training.stage1 import stage1_data_config

    config_cls = train_config_class(loaded.stage)
    train_config = config_from_dict(dict(loaded.train_config), config_cls, source=f"{loaded.checkpoint}:config")
    return LoadedPlanner(
        model=model if model is not None else loaded.model.planner,  # type: ignore[arg-type]
        model_config=loaded.model_config,
        data_config=stage1_data_config(train_config, loaded.model_config),
        checkpoint=loaded.checkpoint,
        step=loaded.step,
    )


def eval_data_config(loaded: LoadedPlanner, dataroot: str, version: str, split: str | None) -> DataConfig:
    """The checkpoint's data config pointed at another dataset/split (no cached index: callers pass one).

    The training run's pre-decoded image cache is kept only for the dataset it was built from: on any other
    dataroot or version the images are decoded from their files."""
    own = loaded.data_config
    same_data = os.path.abspath(str(own.dataroot)) == os.path.abspath(str(dataroot)) and own.version == version
    return dataclasses.replace(
        own,
        dataroot=str(dataroot),
        version=version,
        split=split,
        index_path=None,
        image_cache=own.image_cache if same_data else None,
    )


def inference_dataset(loaded: LoadedPlanner, index: SampleIndex, split: str | None) -> DrivingDataset:
    """The :class:`DrivingDataset` of ``split`` (None: every sample) of ``index`` as the checkpoint's model reads it.

    ``index`` must hold map vectors at the model's resolution (``map_head.num_points`` points each).
    """
    cfg = eval_data_config(loaded, index.dataroot, index.version, split)
    return DrivingDataset(index, cfg)


def eval_index(
    loaded: LoadedPlanner,
    dataroot: str | os.PathLike,
    version: str,
    split: str | None,
    index_path: str | os.PathLike | None = None,
    longtail_token_files: tuple[str, ...] = (),
    nusc: Any = None,
) -> SampleIndex:
    """The samples to evaluate: a cached index (``index_path``, checked against dataroot/version), else a fresh
    index of ``split`` (None: all) built with the checkpoint's reader settings at the model's map resolution."""
    from dima_core.data.index import build_index
    from dima_core.data.nuscenes_reader import NuScenesReader

    if index_path is not None:
        return SampleIndex.load(index_path, dataroot=str(dataroot), version=version)
    cfg = dataclasses.replace(
        eval_data_config(loaded, str(dataroot), version, split),
        with_map=True,
        longtail_token_files=list(longtail_token_files),
    )
    return build_index(NuScenesReader.from_config(cfg, nusc=nusc), split=split)


def _to_numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().float().cpu().numpy()


def run_planner(
    model: VisionPlanner,
    dataset: DrivingDataset,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
    num_workers: int = 0,
) -> InferenceResult:
    """Run ``model`` (eval mode, no gradients) over every sample of ``dataset``.

    Args:
        model: the planner; it is moved to ``device`` and put in eval mode (and left there).
        dataset: a :class:`DrivingDataset` built for this model (see :func:`inference_dataset`).
        batch_size: frames per forward pass (1 gives the per-frame latency a vehicle sees).
        device: ``"cpu"``, ``"cuda"`` or a torch device.
        num_workers: DataLoader workers (image decoding runs there, outside the timed region).

    Returns:
        :class:`InferenceResult`: per-token predictions (ego frame) and per-frame latency.
    """
    from dima_core.training.stage1 import planner_batch_inputs

    device = torch.device(device)
    model.to(device).eval()
    temporal = bool(model.config.bev.use_temporal)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate)
    result = InferenceResult(batch_size=batch_size, device=str(device))
    with torch.no_grad():
        for batch in loader:
            batch = move_to_device(batch, device)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # start the clock with an idle device: time this batch only
            start = time.perf_counter()
            # Same inputs (and BEV history, when temporal) as training.
            output = model(**planner_batch_inputs(model, batch, temporal))
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            size = len(batch["token"])
            result.latency_ms.append(1000.0 * (time.perf_counter() - start) / size)
            beam = output.beam
            trajectory = _to_numpy(output.trajectory)
            trajectories = _to_numpy(output.trajectories)
            boxes = _to_numpy(beam.agent_boxes)
            agent_scores = _to_numpy(torch.sigmoid(beam.agent_logits.float()))
            velocities = _to_numpy(beam.agent_velocities)
            polylines = _to_numpy(beam.map_polylines)
            map_scores = _to_numpy(torch.sigmoid(beam.map_logits.float()))
            commands = batch["command"].cpu().numpy()
            for i, token in enumerate(batch["token"]):
                result.predictions[token] = FramePrediction(
                    trajectory=trajectory[i],
                    trajectories=trajectories[i],
                    command=int(commands[i]),
                    agent_boxes=boxes[i],
                    agent_scores=agent_scores[i],
                    agent_velocities=velocities[i],
                    map_polylines=polylines[i],
                    map_scores=map_scores[i],
                )
    return result


def predict_trajectories(
    model: VisionPlanner,
    dataset: DrivingDataset,
    batch_size: int = 1,
    device: str | torch.device = "cpu",
) -> dict[str, np.ndarray]:
    """Sample token -> (6, 2) planned ego-frame positions at 0.5 .. 3.0 s (the command's mode).

    Shorthand for ``run_planner(...).trajectories``; use :func:`run_planner` for BEAM outputs and latency.
    """
    return run_planner(model, dataset, batch_size=batch_size, device=device).trajectories


__all__ = [
    "FramePrediction",
    "InferenceResult",
    "LoadedPlanner",
    "eval_data_config",
    "inference_dataset",
    "load_planner",
    "load_planner_for_cli",
    "loaded_planner_view",
    "predict_trajectories",
    "run_planner",
]
