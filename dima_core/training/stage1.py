"""Stage 1: the vision planner (VisionPlanner + PlannerLoss) trained alone on the driving data.

Builds the pieces the generic :class:`~dima_core.training.trainer.Trainer` needs from a :class:`TrainConfig`:
- the model from ``model_config`` (seeded identically on every rank before construction);
- the datasets from ``data.dataset`` (one cached index, filtered by ``train_split`` / ``val_split``; images from
  the pre-decoded ``image_cache``, or from one in the run directory with ``data.cache_images``, built on first
  use), with the
  network input size and map resolution taken from the *model* config so the two cannot disagree, and with
  identity normalisation because the model normalises RGB in [0, 1] itself (``ImageBackbone``), which keeps the
  exported network's input the raw camera image;
- a step function mapping the batch dict of :mod:`dima_core.data.dataset` onto the model inputs and the
  :class:`~dima_core.models.losses.PlannerLoss` targets;
- a validation hook: mean loss terms and plan L2 (VAD cumulative convention, fully-observed futures) on the val
  split. The official numbers, collision included, come from ``dima eval``.

Temporal models (``bev.use_temporal``, VAD's queue): with ``data.dataset.num_prev_frames = K`` the history BEV is
built VAD-style, from the oldest previous frame to the newest, in eval mode and without gradients, each frame
attending to the ego-motion-warped BEV of the one before. Where no sample of the batch has a frame (scene start)
the chain restarts without history, as BEVFormer does; in a batch mixing samples with and without it, the missing
ones get an all-zero BEV. With K = 0 the temporal model trains without history (``prev_bev=None``).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler

from dima_core.config import config_to_dict
from dima_core.data.config import DataConfig
from dima_core.io.batch import move_to_device
from dima_core.training.config import TrainConfig
from dima_core.training.determinism import epoch_generator, seed_everything, seed_worker
from dima_core.training.distributed import DistContext, all_reduce_sum, barrier
from dima_core.training.profiling import NULL_TIMER, NullTimer, StepTimer
from dima_core.training.trainer import Trainer

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]


def resolve_repo_path(path: str) -> Path:
    """An absolute path as is; a relative one against the working directory, else against the repo root."""
    candidate = Path(path).expanduser()
    if candidate.is_absolute() or candidate.exists():
        return candidate
    return REPO_ROOT / candidate


def planner_targets(batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
    """The dataset's batch dict renamed to :class:`PlannerLoss` targets (its module docstring has the table)."""
    labels = batch["agent_labels"]
    velocities = torch.where(
        batch["agent_velocity_mask"][..., None],
        batch["agent_velocities"],
        torch.full_like(batch["agent_velocities"], float("nan")),  # PlannerLoss ignores NaN (unknown) velocities
    )
    return {
        "gt_boxes": batch["agent_boxes"],
        # Padding slots carry -1; the masks exclude them, a valid class index keeps one-hot encodings in range.
        "gt_labels": labels.clamp(min=0),
        "gt_velocities": velocities,
        "gt_agent_futures": batch["agent_future"],
        "gt_agent_future_mask": batch["agent_future_mask"],
        "gt_agent_mask": batch["agent_mask"],
        "gt_map_polylines": batch["map_polylines"],
        "gt_map_labels": batch["map_labels"].clamp(min=0),
        "gt_map_mask": batch["map_mask"],
        "gt_ego_future": batch["ego_future"],
        "gt_ego_future_mask": batch["ego_future_mask"],
        "command": batch["command"],
    }


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module a DistributedDataParallel wrapper holds, or ``model`` itself (stage 2's step unwraps it too)."""
    return model.module if isinstance(model, DistributedDataParallel) else model


def history_bev(planner: nn.Module, batch: Mapping[str, Any]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(prev_bev (B, C, Hb, Wb), ego_motion (B, 4, 4))`` from the batch's previous frames (module docstring).

    ``(None, None)`` when no sample of the batch has a previous frame: the encoder then lets the current queries
    stand in for the history, as BEVFormer does on a scene's first frame.
    """
    images = batch["prev_images"]  # (B, K, N, 3, H, W), most recent first
    to_current = batch["prev_ego_to_ego"]  # (B, K, 4, 4): previous ego frame k -> current ego frame
    valid = batch["prev_mask"].bool()  # (B, K); a prefix per sample: history stops at the scene start
    was_training = planner.training
    planner.eval()  # VAD: the history is encoded in eval mode (no dropout), without gradients
    bev: torch.Tensor | None = None
    try:
        with torch.no_grad():
            for k in reversed(range(images.shape[1])):  # oldest first
                if not bool(valid[:, k].any()):
                    bev = None
                    continue
                # frame k+1 -> current -> frame k
                motion = None if bev is None else torch.linalg.inv(to_current[:, k]) @ to_current[:, k + 1]
                feats = planner.backbone(images[:, k].flatten(0, 1))
                bev = planner.bev_encoder(feats, batch["intrinsics"], batch["cam_to_ego"], bev, motion)
                if not bool(valid[:, k].all()):
                    # Only in batches mixing samples with and without this frame (never at VAD's batch 1 per GPU).
                    bev = bev * valid[:, k].to(bev.dtype).view(-1, 1, 1, 1)
    finally:
        planner.train(was_training)
    if bev is None:
        return None, None
    return bev, to_current[:, 0]


def planner_batch_inputs(planner: nn.Module, batch: Mapping[str, Any], temporal: bool) -> dict[str, Any]:
    """Keyword arguments of ``VisionPlanner.forward`` for a collated batch, with the BEV history when ``temporal``.

    ``planner`` is the unwrapped planner (the history is encoded without DDP); training, stage 2 and evaluation all
    feed the planner through here so that the three read a batch the same way.
    """
    prev_bev = ego_motion = None
    if temporal and "prev_images" in batch:
        prev_bev, ego_motion = history_bev(planner, batch)
    return {
        "images": batch["images"],
        "intrinsics": batch["intrinsics"],
        "cam_to_ego": batch["cam_to_ego"],
        "ego_status": batch["ego_status"],
        "command": batch["command"],
        "prev_bev": prev_bev,
        "ego_motion": ego_motion,
    }


def float32_outputs(output: Any) -> Any:
    """The model output (a dataclass of tensors, nested dataclasses allowed) with every floating tensor in fp32.

    Under autocast the heads return bf16/fp16 tensors; the loss then really runs in fp32 (matching costs, focal
    terms, the planning constraints), not just outside autocast on half-precision inputs. fp32 tensors are returned
    as they are (``Tensor.float()`` is the identity then), so an fp32 run is unchanged bit for bit.
    """
    if isinstance(output, torch.Tensor):
        return output.float() if output.is_floating_point() else output
    if dataclasses.is_dataclass(output) and not isinstance(output, type):
        changes = {f.name: float32_outputs(getattr(output, f.name)) for f in dataclasses.fields(output)}
        return dataclasses.replace(output, **changes)
    return output


class Stage1Step:
    """``step_fn`` of the trainer: forward the planner on a batch, return PlannerLoss's named terms + ``total``.

    ``timer`` (profiling.py; the trainer's ``set_timer`` sets it) times the loss apart from the forward.
    """

    def __init__(self, loss: nn.Module, temporal: bool) -> None:
        self.loss = loss
        self.temporal = temporal
        self.timer: NullTimer | StepTimer = NULL_TIMER

    def run(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[Any, dict[str, torch.Tensor]]:
        """``(PlannerOutput, losses)``: the validation hook needs the plan as well as the losses."""
        output = model(**planner_batch_inputs(unwrap_model(model), batch, self.temporal))
        # Losses in fp32 whatever the autocast: Hungarian costs and focal terms are fragile in half precision.
        with self.timer.section("loss"), torch.autocast(device_type=batch["images"].device.type, enabled=False):
            losses = self.loss(float32_outputs(output), planner_targets(batch))
        return output, losses

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
        return self.run(model, batch)[1]


class Stage1Validation:
    """Validation hook: loss terms and VAD-convention plan L2 at 1/2/3 s on the val split, exact over ranks."""

    def __init__(self, dataset: Any, config: TrainConfig, ctx: DistContext, collate_fn: Any) -> None:
        self.config = config
        self.ctx = ctx
        # No shuffling; DistributedSampler pads the last round with repeats, a small bias accepted for a training
        # signal (VAD likewise evaluates on one GPU for the reported numbers).
        self.sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=False)
        self.loader = DataLoader(
            dataset,
            batch_size=config.data.batch_size,
            sampler=self.sampler,
            num_workers=config.data.num_workers,
            collate_fn=collate_fn,
            worker_init_fn=seed_worker,
            generator=epoch_generator(config.seed, 0, ctx.rank),
        )

    def __call__(self, trainer: Trainer, epoch: int) -> dict[str, float]:
        step: Stage1Step = trainer.step_fn  # type: ignore[assignment]
        sums: dict[str, float] = {"samples": 0.0, "scored": 0.0, "l2_1s": 0.0, "l2_2s": 0.0, "l2_3s": 0.0}
        for batch in self.loader:
            batch = move_to_device(batch, self.ctx.device)
            size = float(batch["images"].shape[0])
            # The unwrapped model: no DDP gradient hooks in evaluation.
            output, losses = step.run(trainer.model, batch)
            for key, value in losses.items():
                sums[f"loss/{key}"] = sums.get(f"loss/{key}", 0.0) + float(value) * size
            sums["samples"] += size
            # The command's plan vs the GT future, on fully observed futures only (docs/design.md, Evaluation protocol).
            full = batch["ego_future_mask"].all(dim=-1)
            l2 = torch.linalg.norm(output.trajectory.float() - batch["ego_future"], dim=-1)[full]  # (n, 6)
            sums["scored"] += float(full.sum())
            for seconds in (1, 2, 3):
                sums[f"l2_{seconds}s"] += float(l2[:, : 2 * seconds].mean(-1).sum())
        # Every rank reports the same keys (loss names come from the same loss module), as the collective needs.
        totals = all_reduce_sum(sums, self.ctx)
        samples = max(totals["samples"], 1.0)
        metrics = {k: v / samples for k, v in totals.items() if k.startswith("loss/")}
        if totals["scored"] > 0:
            for seconds in (1, 2, 3):
                metrics[f"plan_l2_{seconds}s"] = totals[f"l2_{seconds}s"] / totals["scored"]
            metrics["plan_l2_avg"] = sum(metrics[f"plan_l2_{s}s"] for s in (1, 2, 3)) / 3
        return metrics


def stage1_data_config(config: TrainConfig, model_config: Any) -> DataConfig:
    """The dataset config the planner needs: its input size and map resolution, identity normalisation."""
    data = config.data.dataset
    width, height = model_config.image_size  # the model states (width, height), the data layer (height, width)
    wanted = {
        "image_size": (height, width),
        "map_points_per_vector": model_config.map_head.num_points,
        # ImageBackbone normalises RGB in [0, 1] itself; normalising here as well would do it twice.
        "image_mean": (0.0, 0.0, 0.0),
        "image_std": (1.0, 1.0, 1.0),
    }
    for key, value in wanted.items():
        old = getattr(data, key)
        if (tuple(old) if isinstance(old, (list, tuple)) else old) != value:
            log.info("data.dataset.%s: %s -> %s (set by the model config)", key, old, value)
    return dataclasses.replace(data, **wanted)


def load_index(data: DataConfig, config: TrainConfig, ctx: DistContext) -> Any:
    """The cached sample index: ``index_path`` when set, else built once by rank 0 into the run directory."""
    from dima_core.data.index import SampleIndex, build_index
    from dima_core.data.nuscenes_reader import NuScenesReader

    if data.index_path:
        return SampleIndex.load(resolve_repo_path(data.index_path), dataroot=data.dataroot, version=data.version)
    path = Path(config.output_dir) / "index.pkl"
    if ctx.is_main:
        if path.is_file():
            try:
                SampleIndex.load(path, dataroot=data.dataroot, version=data.version)
            except Exception as exc:  # noqa: BLE001 - a stale or foreign cache is rebuilt, whatever is wrong
                log.warning("rebuilding %s: %s", path, exc)
                path.unlink()
        if not path.is_file():
            log.info(
                "no data.dataset.index_path: indexing %s (%s) into %s (run `dima data index` once to reuse "
                "an index across runs)",
                data.dataroot,
                data.version,
                path,
            )
            build_index(NuScenesReader.from_config(data), split=None, progress=False).save(path)
    barrier(ctx)  # the other ranks read what rank 0 wrote
    return SampleIndex.load(path, dataroot=data.dataroot, version=data.version)


def load_image_cache(index: Any, data: DataConfig, ctx: DistContext, rebuild_stale: bool = False) -> Any:
    """The pre-decoded image cache ``data.image_cache`` for ``index``, built there by rank 0 when it does not exist.

    A cache that exists but was built for other data, another size or interpolation is refused (ImageCacheError
    with the rebuild command), never silently replaced: another run may be using it. ``rebuild_stale`` (the run
    directory's own cache, ``data.cache_images``) rebuilds it instead, with a WARNING.
    """
    from dima_core.data.image_cache import META_FILE, ImageCache, ImageCacheError, build_image_cache

    path = resolve_repo_path(data.image_cache)
    if ctx.is_main:
        if not (path / META_FILE).is_file():
            log.info("image cache %s does not exist: decoding %d samples into it once", path, len(index))
            build_image_cache(index, path, data.image_size, data.interpolation)
        elif rebuild_stale:
            try:
                ImageCache.open(path, index=index, image_size=data.image_size, interpolation=data.interpolation)
            except ImageCacheError as exc:
                log.warning("rebuilding the run's image cache: %s", exc)
                build_image_cache(index, path, data.image_size, data.interpolation, overwrite=True)
    barrier(ctx)  # the other ranks read what rank 0 wrote
    return ImageCache.open(path, index=index, image_size=data.image_size, interpolation=data.interpolation)


def build_stage1_trainer(config: TrainConfig, ctx: DistContext, record_history: bool = False) -> Trainer:
    """Model, loss, datasets, validation hook and the :class:`Trainer` for a stage-1 run."""
    from dima_core.data.dataset import DrivingDataset, collate
    from dima_core.models import VisionPlanner, load_model_config
    from dima_core.models.losses import PlannerLoss

    model_config = load_model_config(resolve_repo_path(config.model_config))
    data = stage1_data_config(config, model_config)
    index = load_index(data, config, ctx)
    if data.image_cache is None and config.data.cache_images:
        height, width = data.image_size
        path = Path(config.output_dir) / f"image_cache_{width}x{height}_{data.interpolation}"
        data = dataclasses.replace(data, image_cache=str(path))
        cache = load_image_cache(index, data, ctx, rebuild_stale=True)
    else:
        cache = load_image_cache(index, data, ctx) if data.image_cache else None
    train_set = DrivingDataset(index, dataclasses.replace(data, split=config.data.train_split), image_cache=cache)
    if len(train_set) == 0:
        splits = sorted({s.split for s in index})
        raise ValueError(f"split '{config.data.train_split}' has no samples in {data.dataroot} (splits: {splits})")
    val_set = None
    if config.data.val_split is not None and config.validate_every_epochs:
        val_set = DrivingDataset(index, dataclasses.replace(data, split=config.data.val_split), image_cache=cache)
        if len(val_set) == 0:
            log.warning("val split '%s' is empty: validation disabled", config.data.val_split)
            val_set = None
    if model_config.bev.use_temporal and data.num_prev_frames == 0:
        log.warning("temporal model without history frames (data.dataset.num_prev_frames = 0): prev_bev is None")

    # Identical initial weights on every rank without relying on DDP's broadcast (and so on a single process).
    seed_everything(config.seed, config.deterministic)
    model = VisionPlanner(model_config)
    loss = PlannerLoss(model_config.loss, model_config.bev.x_range, model_config.bev.y_range)
    step = Stage1Step(loss, temporal=model_config.bev.use_temporal)
    counts = model.num_parameters()
    log.info(
        "model %s: %.2f M parameters; train %d samples (%s), val %d (%s)",
        model_config.name,
        counts["total"] / 1e6,
        len(train_set),
        config.data.train_split,
        len(val_set) if val_set else 0,
        config.data.val_split,
    )
    trainer = Trainer(
        model,
        step,
        train_set,
        config,
        ctx=ctx,
        collate_fn=collate,
        val_hook=None,
        model_config=config_to_dict(model_config),
        record_history=record_history,
    )
    if val_set is not None:
        trainer.val_hook = Stage1Validation(val_set, config, ctx, collate)
    return trainer


__all__ = [
    "Stage1Step",
    "Stage1Validation",
    "build_stage1_trainer",
    "float32_outputs",
    "history_bev",
    "planner_batch_inputs",
    "load_image_cache",
    "load_index",
    "planner_targets",
    "resolve_repo_path",
    "stage1_data_config",
    "unwrap_model",
]
