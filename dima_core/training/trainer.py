"""The training loop shared by every stage: data order, optimiser, schedule, precision, DDP/FSDP, logs, checkpoints.

A stage supplies three things: the model, a *step function* ``step_fn(model, batch) -> {name: loss tensor}``
(which must include ``"total"``, the value that is back-propagated; the other entries are logged), and the
training dataset with its collate function. Stage 1 (:func:`~dima_core.training.stage1.build_stage1_trainer`)
passes the :class:`~dima_core.models.vision_planner.VisionPlanner` and ``Stage1Step`` (its VAD losses); stage 2
(:func:`~dima_core.training.stage2.build_stage2_trainer`) passes the
:class:`~dima_core.models.dima.DimaJointModel` (planner + MLLM teacher) and ``Stage2Step`` through the same loop,
in ``Stage2Trainer`` (which also initialises from a stage-1 checkpoint). Both validate with ``Stage1Validation``.

Resume contract: a run stopped after step k and resumed from its checkpoint produces the same parameters and the
same per-step losses as the uninterrupted run (tested in test/test_training_resume.py). It holds because
- the data order is a pure function of ``(seed, epoch)`` and the checkpoint stores the position in the epoch
  (:class:`~dima_core.training.sampler.ResumableDistributedSampler` skips what was consumed);
- every RNG the step touches (Python, NumPy, torch CPU/CUDA of *every rank*) is saved and restored, DataLoader
  worker seeds derive from ``(seed, epoch, rank)``, and validation runs between saved RNG states;
- the lr schedule is a closed-form function of the step (schedule.py), and optimiser/scaler states are saved.
Mid-epoch resume is exact when the dataset's ``__getitem__`` is deterministic per index (ours is: no random
augmentation); random augmentation in workers would reassign worker streams after the skipped batches.

Distribution (``config.distributed.strategy``): ``ddp`` wraps the model in DistributedDataParallel when there is
more than one rank; ``fsdp`` shards it in place with FSDP2 (:mod:`dima_core.training.fsdp`), also for one process.
Under FSDP the checkpoints are gathered to rank 0 in the DDP layout (full weights, ``Optimizer.state_dict()``), so
``load_dima`` and resuming never need to know which strategy wrote them; weights are loaded through
:meth:`Trainer.load_model_state`, which shards them back.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from dima_core.config import config_to_dict, save_config
from dima_core.io.batch import batch_size_of, move_to_device
from dima_core.io.checkpoint import (
    KEY_CONFIG,
    KEY_EPOCH,
    KEY_EPOCH_STEP,
    KEY_MODEL,
    KEY_MODEL_CONFIG,
    KEY_OPTIMIZER,
    KEY_PRECISION,
    KEY_RNG,
    KEY_SAMPLER,
    KEY_SCALER,
    KEY_SCHEDULER,
    KEY_STAGE,
    KEY_STEP,
    KEY_WORLD_SIZE,
    CheckpointError,
    check_model_state,
    checkpoint_name,
    load_checkpoint,
    prune_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
    write_latest,
)
from dima_core.training.config import TrainConfig
from dima_core.training.determinism import (
    capture_rng_state,
    epoch_generator,
    restore_rng_state,
    seed_everything,
    seed_worker,
)
from dima_core.training.distributed import (
    DistContext,
    all_gather_objects,
    all_reduce_mean,
    barrier,
    broadcast_buffers,
)
from dima_core.training.precision import Precision, resolve_precision
from dima_core.training.profiling import NULL_TIMER, NullTimer, StepTimer
from dima_core.training.sampler import ResumableDistributedSampler
from dima_core.training.schedule import build_scheduler

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

    from dima_core.training.fsdp import ShardedModel

log = logging.getLogger(__name__)

# Signals that end a run cleanly: finish the step, checkpoint, return (SLURM sends SIGTERM before SIGKILL).
STOP_SIGNALS: tuple[int, ...] = (signal.SIGTERM, signal.SIGUSR1)

Batch = dict[str, Any]
StepFn = Callable[[nn.Module, Batch], Mapping[str, torch.Tensor]]
ValHook = Callable[["Trainer", int], Mapping[str, float]]

# Config keys that may legitimately change between a run and its resumption (where to write, how far to go,
# what to log); any other difference is reported because it breaks "resume == uninterrupted".
_RESUME_FREE_KEYS = frozenset(
    {
        "resume",
        "init",
        "output_dir",
        "max_steps",
        "progress_bar",
        "tensorboard",
        "log_interval",
        "checkpoint_interval",
        "checkpoint_every_epoch",
        "keep_checkpoints",
        "validate_every_epochs",
    }
)
# Nested keys of the same kind: the pre-decoded image cache yields exactly the pixels of the JPEG path (tested in
# test/test_image_cache.py), so switching it on or off between a run and its resumption changes nothing.
_RESUME_FREE_PATHS = frozenset({"data.dataset.image_cache", "data.cache_images"})
# End of a DataLoader iteration (a collate function may return anything, None included).
_END = object()


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` leaves behind."""

    step: int  # optimiser steps done in total (including those before a resume)
    epoch: int  # epoch index the run stopped in (== epochs when it finished)
    checkpoint: Path | None  # final checkpoint (rank 0; None on other ranks)
    metrics: dict[str, float] = field(default_factory=dict)  # last all-reduced training log window
    val_metrics: dict[str, float] = field(default_factory=dict)  # last validation result
    history: list[dict[str, float]] = field(default_factory=list)  # per-step local losses (record_history=True)
    replica_digest: str = ""  # SHA-256 of this rank's final parameters
    replicas_consistent: bool = True  # every rank ended with the same parameters
    stopped_by_signal: bool = False  # SIGTERM/SIGUSR1 arrived: checkpointed early, resume to continue


def loss_values(losses: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """``{name: float}`` of a step's loss tensors, read back in one device-to-host copy.

    Each value is exactly ``float(tensor)`` (the float64 cast is exact for every floating dtype); one stacked copy
    instead of one per loss spares a CUDA run a dozen synchronisations per step.
    """
    names = list(losses)
    if not names:
        return {}
    stacked = torch.stack([losses[name].detach().reshape(()).double() for name in names])
    return dict(zip(names, stacked.cpu().tolist(), strict=True))


def optimizer_implementation(name: str) -> dict[str, bool]:
    """AdamW keyword arguments for ``OptimizerConfig.implementation`` (auto: torch's own choice)."""
    choices: dict[str, dict[str, bool]] = {
        "auto": {},
        "for_loop": {"foreach": False},
        "foreach": {"foreach": True},
        "fused": {"fused": True},
    }
    if name not in choices:
        raise ValueError(f"unknown optimizer implementation {name!r}: use {', '.join(choices)}")
    return choices[name]


def _local_shard(tensor: torch.Tensor) -> torch.Tensor:
    """This rank's shard of a FSDP-sharded (DTensor) parameter; any other tensor unchanged.

    The DTensor module is only consulted when something imported it already (FSDP does): importing it costs
    seconds that every DDP or single-process run would pay for nothing, and without it no DTensor can exist.
    """
    dtensor = sys.modules.get("torch.distributed.tensor")
    if dtensor is not None and isinstance(tensor, dtensor.DTensor):
        return tensor.to_local()
    return tensor


def parameter_digest(model: nn.Module) -> str:
    """SHA-256 over every parameter (name, dtype, shape, raw bytes): equal digests mean equal weights.

    Buffers are left out on purpose: under DDP, BatchNorm running statistics are broadcast from rank 0 at the
    *start* of each forward, so after the last step every rank holds the statistics of its own last batch. Only
    rank 0's are checkpointed; the parameters are what DDP keeps identical. A FSDP-sharded parameter contributes
    this rank's shard only (the digest then identifies the rank's shards, compared between replicas).
    """
    digest = hashlib.sha256()
    for name, tensor in model.named_parameters():
        data = _local_shard(tensor.detach()).to("cpu").contiguous()
        digest.update(f"{name}|{data.dtype}|{tuple(data.shape)}|".encode())
        # Raw bytes via a uint8 view: exact (no float formatting) and works for dtypes NumPy lacks (bf16).
        digest.update(data.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class Trainer:
    """Generic data-parallel trainer (module docstring for the contract).

    Args:
        model: the unwrapped model; moved to ``ctx.device`` and wrapped in DDP when ``ctx.world_size > 1``, or
            sharded in place by FSDP (``config.distributed.strategy: fsdp``; needs ``ctx`` with a process group).
        step_fn: ``step_fn(model, batch) -> {name: scalar tensor}`` with a ``"total"`` entry.
        train_dataset: map-style dataset; the trainer owns its sampler and DataLoader.
        config: the run's :class:`TrainConfig`.
        ctx: from :func:`~dima_core.training.distributed.init_distributed` (single CPU process by default).
        collate_fn: batches dataset items (``dima_core.data.dataset.collate`` for the driving data).
        val_hook: ``val_hook(trainer, epoch) -> {metric: value}``, called on every rank in eval mode under
            ``torch.no_grad()`` every ``validate_every_epochs``; it must all-reduce across ranks itself.
        model_config: the model's resolved config as a plain dict; stored in checkpoints and compared on resume.
        record_history: keep every step's local losses in memory (tests, benchmarks).
    """

    def __init__(
        self,
        model: nn.Module,
        step_fn: StepFn,
        train_dataset: Dataset,
        config: TrainConfig,
        ctx: DistContext | None = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        val_hook: ValHook | None = None,
        model_config: Mapping[str, Any] | None = None,
        record_history: bool = False,
    ) -> None:
        self.config = config
        self.ctx = ctx if ctx is not None else DistContext()
        self.step_fn = step_fn
        self.dataset = train_dataset
        self.collate_fn = collate_fn
        self.val_hook = val_hook
        self.model_config = dict(model_config) if model_config is not None else {}
        self.record_history = record_history
        self.output_dir = Path(config.output_dir)
        self.precision: Precision = resolve_precision(config.precision, self.ctx.device, config.cpu_bf16)

        # The caller seeded *before* building the model (identical init on every rank); this second seeding
        # gives each rank its own stream for dropout and friends, independent of how much the model build drew.
        seed_everything(config.seed + self.ctx.rank, config.deterministic)

        self.fsdp: ShardedModel | None = None  # set when the model is FSDP-sharded
        self._fsdp_requires_grad: tuple[bool, ...] = ()
        if config.distributed.strategy == "fsdp":
            from dima_core.training.fsdp import shard_model

            if config.channels_last:
                raise ValueError(
                    "channels_last is not supported with distributed.strategy fsdp (the LLM teacher "
                    "has no convolutions to gain from it)"
                )
            if self.precision.use_grad_scaler:
                # Each rank would see inf/nan in its own shards only and skip steps on its own: the replicas would
                # drift apart. bf16 needs no loss scaling.
                raise ValueError(
                    "precision fp16 needs a gradient scaler, which FSDP training does not support: "
                    "use precision bf16 (or off) with distributed.strategy fsdp"
                )
            # No model.to(device) first: fully_shard moves one unit at a time and keeps only the local shard on the
            # device, so a 7B model never has to fit whole on one GPU.
            self.fsdp = shard_model(model, self.ctx, config.distributed.fsdp, config.find_unused_parameters)
            self.model = model
            # FSDP2 fixes which parameters are trainable when a unit is first gathered; train_step checks that the
            # step function does not change it (e.g. the MLLM's two-stage schedule freezing LoRA).
            self._fsdp_requires_grad = tuple(p.requires_grad for p in model.parameters())
        else:
            self.model = model.to(self.ctx.device)
            if config.channels_last:
                # 4-D parameters (convolution weights) in NHWC: oneDNN / cuDNN then pick NHWC kernels and keep the
                # activations NHWC, with no layout reorder around each convolution. Values are unchanged.
                self.model.to(memory_format=torch.channels_last)
        self.train_model: nn.Module = self.model
        if self.ctx.distributed and self.fsdp is None:
            self.train_model = DistributedDataParallel(
                self.model,
                device_ids=[self.ctx.device.index] if self.ctx.device.type == "cuda" else None,
                find_unused_parameters=config.find_unused_parameters,
            )

        self.sampler = ResumableDistributedSampler(
            train_dataset,  # type: ignore[arg-type]
            num_replicas=self.ctx.world_size,
            rank=self.ctx.rank,
            shuffle=True,
            seed=config.seed,
            drop_last=config.data.drop_last,
        )
        batch_size = config.data.batch_size
        per_rank = self.sampler.num_samples
        self.steps_per_epoch = per_rank // batch_size if config.data.drop_last else math.ceil(per_rank / batch_size)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the training split has {self.sampler.total_size // self.ctx.world_size} samples per rank: fewer "
                f"than one batch of {batch_size} on each of {self.ctx.world_size} ranks (drop_last=True)"
            )
        self.total_steps = config.epochs * self.steps_per_epoch

        params = [p for p in self.model.parameters() if p.requires_grad]
        if not params:
            raise ValueError("the model has no trainable parameters")
        # implementation "auto" keeps AdamW's own choice, on purpose: for FSDP's DTensor parameters it is the
        # per-tensor one; the foreach one re-derives DTensor shardings for every new list of gradients (70-120 s per
        # new list for the stage-2 test model on a CPU). "fused" / "foreach" are for plain tensors (config.py).
        opt = config.optimizer
        betas = (opt.betas[0], opt.betas[1])
        self.optimizer = torch.optim.AdamW(
            params,
            lr=opt.lr,
            betas=betas,
            eps=opt.eps,
            weight_decay=opt.weight_decay,
            **optimizer_implementation(opt.implementation),
        )
        self.scheduler = build_scheduler(self.optimizer, config.schedule, self.total_steps)
        self.scaler = torch.amp.GradScaler(
            "cuda" if self.ctx.device.type == "cuda" else "cpu", enabled=self.precision.use_grad_scaler
        )

        self.step = 0  # optimiser steps done
        self.epoch = 0  # epoch in progress
        self.epoch_step = 0  # batches of self.epoch already trained
        self.history: list[dict[str, float]] = []
        self.last_checkpoint: Path | None = None
        self._saved_at_step = -1
        self._writer: SummaryWriter | None = None  # rank 0 with config.tensorboard, from fit() on
        self._stop_signal: int | None = None
        self.timer: NullTimer | StepTimer = NULL_TIMER  # per-section timing; set_timer() (dima bench train)

    def set_timer(self, timer: NullTimer | StepTimer) -> None:
        """Time the loop's sections with ``timer`` (profiling.py); the step function shares it when it has a
        ``timer`` attribute (stage 1's does, to time its loss apart from the forward)."""
        self.timer = timer
        if hasattr(self.step_fn, "timer"):
            self.step_fn.timer = timer  # type: ignore[attr-defined]

    # ----------------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds except the RNG states (gathered from all ranks in :meth:`save`).

        Under FSDP this is collective (every rank must call it): weights and optimiser state are gathered into full
        CPU tensors on rank 0, in the layout of the unsharded ``model.state_dict()`` / ``optimizer.state_dict()``;
        the other ranks get empty ``model`` and ``optimizer`` entries.
        """
        if self.fsdp is not None:
            from dima_core.training.fsdp import gather_full_state

            model_state, optimizer_state = gather_full_state(self.model, self.optimizer)
        else:
            model_state, optimizer_state = self.model.state_dict(), self.optimizer.state_dict()
        return {
            KEY_STAGE: self.config.stage,
            KEY_EPOCH: self.epoch,
            KEY_EPOCH_STEP: self.epoch_step,
            KEY_STEP: self.step,
            KEY_MODEL: model_state,
            KEY_OPTIMIZER: optimizer_state,
            KEY_SCHEDULER: self.scheduler.state_dict(),
            KEY_SCALER: self.scaler.state_dict(),
            KEY_SAMPLER: {
                "seed": self.config.seed,
                "epoch": self.epoch,
                "start_index": self.epoch_step * self.config.data.batch_size,
                "num_replicas": self.ctx.world_size,
                "batch_size": self.config.data.batch_size,
            },
            KEY_CONFIG: config_to_dict(self.config),
            KEY_MODEL_CONFIG: self.model_config,
            KEY_PRECISION: self.precision.name,
            KEY_WORLD_SIZE: self.ctx.world_size,
        }

    def save(self) -> Path | None:
        """Checkpoint the current position (collective: every rank must call it); rank 0 writes, returns path."""
        rng_states = all_gather_objects(capture_rng_state(), self.ctx)
        state = self.state_dict()  # on every rank: a collective under FSDP
        path: Path | None = None
        if self.ctx.is_main:
            state[KEY_RNG] = rng_states
            path = save_checkpoint(state, self.output_dir / checkpoint_name(self.step))
            write_latest(self.output_dir, path)
            prune_checkpoints(self.output_dir, self.config.keep_checkpoints)
            log.info("checkpoint %s (epoch %d, step %d)", path, self.epoch, self.step)
        # Nobody races ahead (and, e.g., reads 'latest' or exits) before the file is complete.
        barrier(self.ctx)
        self.last_checkpoint = path
        self._saved_at_step = self.step
        return path

    def _config_differences(self, saved: Mapping[str, Any]) -> list[str]:
        current = config_to_dict(self.config)
        diffs = []

        def walk(a: Any, b: Any, prefix: str) -> None:
            if isinstance(a, dict) and isinstance(b, dict):
                for key in sorted(set(a) | set(b)):
                    if (not prefix and key in _RESUME_FREE_KEYS) or f"{prefix}.{key}" in _RESUME_FREE_PATHS:
                        continue
                    walk(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
            elif a != b:
                diffs.append(f"{prefix}: checkpoint {a!r} -> now {b!r}")

        walk(dict(saved), current, "")
        return diffs

    def resume(self, path: str | Path) -> Path:
        """Restore model, optimiser, schedule, scaler, position and RNG states from a checkpoint (or run dir)."""
        file = resolve_checkpoint(path)
        state = load_checkpoint(file, map_location="cpu")
        check_model_state(state[KEY_MODEL], self.model, str(file))
        saved_model_config = state.get(KEY_MODEL_CONFIG) or {}
        if self.model_config and saved_model_config and saved_model_config != self.model_config:
            keys = sorted(
                k
                for k in set(saved_model_config) | set(self.model_config)
                if saved_model_config.get(k) != self.model_config.get(k)
            )
            raise CheckpointError(f"checkpoint {file} was trained with a different model config (differs in {keys})")
        if state[KEY_STAGE] != self.config.stage:
            raise CheckpointError(
                f"checkpoint {file} is from stage {state[KEY_STAGE]}, this run is stage {self.config.stage}: "
                "use 'init' to start a new stage from its weights"
            )
        for diff in self._config_differences(state[KEY_CONFIG]):
            log.warning("resume: config changed, the result will differ from an uninterrupted run: %s", diff)

        self.load_model_state(state[KEY_MODEL])
        try:
            self.load_optimizer_state(state[KEY_OPTIMIZER])
        except (ValueError, KeyError, IndexError) as exc:
            raise CheckpointError(f"checkpoint {file}: optimiser state does not fit this model ({exc})") from exc
        self.scheduler.load_state_dict(state[KEY_SCHEDULER])
        if self.precision.use_grad_scaler and state[KEY_SCALER]:
            self.scaler.load_state_dict(state[KEY_SCALER])

        self.step = int(state[KEY_STEP])
        self.epoch = int(state[KEY_EPOCH])
        self.epoch_step = int(state[KEY_EPOCH_STEP])
        sampler = state[KEY_SAMPLER]
        if sampler["num_replicas"] != self.ctx.world_size or sampler["batch_size"] != self.config.data.batch_size:
            log.warning(
                "resume: checkpoint ran %d ranks x batch %d, this run %d x %d; the epoch position is kept in "
                "batches, so the data order differs from an uninterrupted run",
                sampler["num_replicas"],
                sampler["batch_size"],
                self.ctx.world_size,
                self.config.data.batch_size,
            )
        if self.epoch_step >= self.steps_per_epoch:  # the checkpoint closed its epoch
            self.epoch, self.epoch_step = self.epoch + 1, 0
        self._saved_at_step = self.step  # this position is on disk already

        rng_states = state[KEY_RNG]
        if len(rng_states) == self.ctx.world_size:
            restore_rng_state(rng_states[self.ctx.rank])
        else:
            log.warning(
                "resume: checkpoint holds RNG states of %d ranks, this run has %d: reseeding instead",
                len(rng_states),
                self.ctx.world_size,
            )
            seed_everything(self.config.seed + self.ctx.rank + 7919 * self.step, self.config.deterministic)
        log.info("resumed from %s at epoch %d, batch %d, step %d", file, self.epoch, self.epoch_step, self.step)
        return file

    def init_weights(self, path: str | Path) -> Path:
        """Initialise the model from a checkpoint's (or a planner weights file's) weights only: a new run, whose
        optimiser and position start fresh."""
        from dima_core.models.weights_file import load_weights_or_checkpoint

        file, state = load_weights_or_checkpoint(path)
        check_model_state(state[KEY_MODEL], self.model, str(file))
        self.load_model_state(state[KEY_MODEL])
        log.info("initialised model weights from %s (stage %s, step %s)", file, state[KEY_STAGE], state[KEY_STEP])
        return file

    def load_model_state(self, state: Mapping[str, torch.Tensor], prefix: str = "") -> None:
        """Load full (unsharded) weights into the model, or into its submodule named ``prefix`` (e.g. ``planner.``).

        Every rank passes the same weights. Under FSDP they are sharded into the model (collective); otherwise this
        is the module's own ``load_state_dict``. Check the keys first (:func:`check_model_state`): FSDP leaves
        weights the state lacks at their current values.
        """
        if self.fsdp is not None:
            from dima_core.training.fsdp import load_full_model_state

            load_full_model_state(self.model, {f"{prefix}{key}": value for key, value in state.items()})
            return
        target = self.model.get_submodule(prefix.rstrip(".")) if prefix else self.model
        target.load_state_dict(state)

    def load_optimizer_state(self, state: Mapping[str, Any]) -> None:
        """Load an ``Optimizer.state_dict()`` (sharded into place under FSDP; collective then)."""
        if self.fsdp is not None:
            from dima_core.training.fsdp import load_full_optimizer_state

            load_full_optimizer_state(self.model, self.optimizer, state)
            return
        self.optimizer.load_state_dict(state)

    # ------------------------------------------------------------------------------------------------ loop
    def _loader(self, epoch: int) -> DataLoader:
        cfg = self.config.data
        return DataLoader(
            self.dataset,
            batch_size=cfg.batch_size,
            sampler=self.sampler,
            num_workers=cfg.num_workers,
            collate_fn=self.collate_fn,
            pin_memory=cfg.pin_memory and self.ctx.device.type == "cuda",
            drop_last=cfg.drop_last,
            worker_init_fn=seed_worker,
            generator=epoch_generator(self.config.seed, epoch, self.ctx.rank),
        )

    def _autocast(self) -> Any:
        if not self.precision.enabled:
            return nullcontext()
        return torch.autocast(device_type=self.ctx.device.type, dtype=self.precision.autocast_dtype)

    def train_step(self, batch: Batch) -> tuple[dict[str, float], float]:
        """One optimiser step on one batch; returns the local loss values and the gradient norm (nan if unclipped)."""
        timer = self.timer
        with timer.section("data"):
            batch = move_to_device(batch, self.ctx.device, non_blocking=self.config.data.pin_memory)
        with timer.section("forward"):
            if self.fsdp is not None:
                from dima_core.training.fsdp import gather_root

                # DDP's buffer semantics (rank 0's BatchNorm statistics everywhere at the start of a step), which
                # also keeps resuming exact: a checkpoint stores rank 0's buffers.
                broadcast_buffers(self.model, self.ctx)
                # Step functions call parts of the model outside its forward (fsdp.py); the backward re-shards.
                gather_root(self.model)
            with self._autocast():
                losses = self.step_fn(self.train_model, batch)
        if self.fsdp is not None:
            self._check_fsdp_trainable()
        if "total" not in losses:
            raise KeyError(f"step_fn must return a 'total' loss; it returned {sorted(losses)}")
        total = losses["total"]
        with timer.section("logging"):
            values = loss_values(losses)
        if not math.isfinite(values["total"]):
            raise FloatingPointError(f"non-finite loss at step {self.step} (epoch {self.epoch}): {values}")

        with timer.section("optimizer"):
            self.optimizer.zero_grad(set_to_none=True)
        with timer.section("backward"):
            self.scaler.scale(total).backward()
        with timer.section("optimizer"):
            if self.fsdp is not None and self.config.find_unused_parameters:
                from dima_core.training.fsdp import drop_unused_gradients

                drop_unused_gradients([p for group in self.optimizer.param_groups for p in group["params"]])
            grad_norm = float("nan")
            if self.config.grad_clip_norm is not None:
                # Clip the true gradients, not the loss-scaled ones.
                self.scaler.unscale_(self.optimizer)
                params = [p for group in self.optimizer.param_groups for p in group["params"]]
                if self.fsdp is not None:
                    from dima_core.training.fsdp import clip_grad_norm

                    # The global norm over every rank's gradient shards (one all-reduce), as clip_grad_norm_
                    # computes it for unsharded gradients.
                    grad_norm = float(clip_grad_norm(params, self.config.grad_clip_norm, self.fsdp.mesh))
                else:
                    grad_norm = float(torch.nn.utils.clip_grad_norm_(params, self.config.grad_clip_norm))
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
        return values, grad_norm

    def _check_fsdp_trainable(self) -> None:
        """FSDP2 fixes a parameter's requires_grad for its gathered copy; a later change would be silently ignored
        (the parameter would keep or lack gradients regardless), so it is an error here."""
        now = tuple(p.requires_grad for p in self.model.parameters())
        if now != self._fsdp_requires_grad:
            # Not strict: a changed parameter count is the error raised below, not a zip() ValueError.
            changed = [
                name
                for (name, p), before in zip(self.model.named_parameters(), self._fsdp_requires_grad, strict=False)
                if p.requires_grad != before
            ]
            raise RuntimeError(
                f"the step changed which parameters train ({len(changed)}, e.g. {changed[:3]}); FSDP fixes that "
                "when it shards the model. Schedules that freeze and unfreeze parameters (the MLLM's two_stage) "
                "need distributed.strategy ddp"
            )

    def _gathered_for_eval(self) -> Any:
        """Under FSDP: the root gathered for the hook's out-of-forward calls, every unit re-sharded afterwards (no
        backward does it). A no-op context otherwise."""
        if self.fsdp is None:
            return nullcontext()
        from dima_core.training.fsdp import gathered

        return gathered(self.model)

    def _validate(self, epoch: int) -> dict[str, float]:
        if self.val_hook is None:
            return {}
        # Validation must not perturb training: same RNG afterwards as if it had not run.
        rng = capture_rng_state()
        broadcast_buffers(self.model, self.ctx)
        self.model.eval()
        try:
            with torch.no_grad(), self._autocast(), self._gathered_for_eval():
                metrics = {k: float(v) for k, v in self.val_hook(self, epoch).items()}
        finally:
            self.model.train()
            restore_rng_state(rng)
        if self.ctx.is_main:
            log.info("validation epoch %d: %s", epoch, ", ".join(f"{k}={v:.4f}" for k, v in sorted(metrics.items())))
            if self._writer is not None:
                for key, value in metrics.items():
                    self._writer.add_scalar(f"val/{key}", value, self.step)
        return metrics

    def _open_writer(self, resumed: bool) -> None:
        if not (self.ctx.is_main and self.config.tensorboard):
            return
        from torch.utils.tensorboard import SummaryWriter

        # purge_step drops events a crashed earlier attempt logged after the checkpoint we resumed from.
        self._writer = SummaryWriter(
            log_dir=str(self.output_dir / "tensorboard"), purge_step=self.step if resumed else None
        )

    def _log_window(
        self, sums: dict[str, float], count: int, samples: int, seconds: float, grad_norm: float
    ) -> dict[str, float]:
        local = {f"loss/{k}": v / max(count, 1) for k, v in sums.items()}
        local["samples_per_s"] = samples / max(seconds, 1e-9)
        if not math.isnan(grad_norm):
            local["grad_norm"] = grad_norm
        metrics = all_reduce_mean(local, self.ctx)
        # Each rank measured its own share; the job's throughput is their sum.
        metrics["samples_per_s"] *= self.ctx.world_size
        metrics["lr"] = float(self.scheduler.get_last_lr()[0])
        if self.ctx.is_main:
            if self._writer is not None:
                for key, value in metrics.items():
                    self._writer.add_scalar(f"train/{key}", value, self.step)
            with open(self.output_dir / "metrics.jsonl", "a") as fileobj:
                fileobj.write(json.dumps({"step": self.step, "epoch": self.epoch, **metrics}) + "\n")
        return metrics

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        # Only set a flag: the step in flight finishes, then every rank checkpoints together (see _stop_requested).
        self._stop_signal = signum
        log.warning("received %s: checkpointing after the current step", signal.Signals(signum).name)

    def _install_stop_handlers(self) -> dict[int, Any]:
        """SIGTERM (SLURM preemption / scancel, torchrun shutdown) and SIGUSR1 (``sbatch --signal``) -> clean stop."""
        if threading.current_thread() is not threading.main_thread():
            return {}  # signal handlers can only be installed from the main thread
        previous = {}
        for signum in STOP_SIGNALS:
            previous[signum] = signal.signal(signum, self._on_stop_signal)
        return previous

    def _stop_requested(self) -> bool:
        """Whether any rank got a stop signal (one tiny all-reduce per step, so all ranks stop at the same step)."""
        local = 1.0 if self._stop_signal is not None else 0.0
        if not self.ctx.distributed:
            return bool(local)
        return all_reduce_mean({"stop": local}, self.ctx)["stop"] > 0.0

    def fit(self) -> TrainResult:
        """Train until ``epochs`` are done or ``max_steps`` is reached; checkpoint along the way and at the end."""
        cfg = self.config
        if self.ctx.is_main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            save_config(cfg, self.output_dir / "config.yaml")
        resumed = cfg.resume is not None
        if cfg.resume is not None:
            self.resume(cfg.resume)
        elif cfg.init is not None:
            self.init_weights(cfg.init)
        barrier(self.ctx)
        self._open_writer(resumed)

        target = self.total_steps if cfg.max_steps is None else min(self.total_steps, cfg.max_steps)
        from tqdm import tqdm

        bar = tqdm(
            total=target,
            initial=min(self.step, target),
            unit="step",
            dynamic_ncols=True,
            desc=f"stage {cfg.stage}",
            # None: tqdm hides itself when stderr is not a terminal (cluster logs stay clean).
            disable=None if (cfg.progress_bar and self.ctx.is_main) else True,
        )
        log.info(
            "training: %d samples, %d ranks x batch %d, %d steps/epoch, epochs %d -> %d steps (stopping at %d), "
            "precision %s, device %s",
            len(self.dataset),
            self.ctx.world_size,
            cfg.data.batch_size,
            self.steps_per_epoch,  # type: ignore[arg-type]
            cfg.epochs,
            self.total_steps,
            target,
            self.precision.name,
            self.ctx.device,
        )
        metrics: dict[str, float] = {}
        val_metrics: dict[str, float] = {}
        stopped = False
        self.model.train()
        previous_handlers = self._install_stop_handlers()
        timer = self.timer
        timer.restart()
        try:
            while self.epoch < cfg.epochs and self.step < target:
                self.sampler.set_epoch(self.epoch, self.epoch_step * cfg.data.batch_size)
                sums: dict[str, float] = {}
                count, samples, grad_norm = 0, 0, float("nan")
                window_start = time.perf_counter()
                with timer.section("data"):
                    batches = iter(self._loader(self.epoch))
                while True:
                    with timer.section("data"):
                        batch = next(batches, _END)
                    if batch is _END:
                        break
                    size = batch_size_of(batch)
                    samples += size
                    values, grad_norm = self.train_step(batch)
                    with timer.section("logging"):
                        self.step += 1
                        self.epoch_step += 1
                        count += 1
                        for key, value in values.items():
                            sums[key] = sums.get(key, 0.0) + value
                        if self.record_history:
                            self.history.append(
                                {"step": float(self.step), "lr": float(self.scheduler.get_last_lr()[0]), **values}
                            )
                        if self.step % cfg.log_interval == 0:
                            metrics = self._log_window(
                                sums, count, samples, time.perf_counter() - window_start, grad_norm
                            )
                            bar.set_postfix(
                                loss=f"{metrics['loss/total']:.4f}",
                                samples_s=f"{metrics['samples_per_s']:.1f}",
                                lr=f"{metrics['lr']:.2e}",
                            )
                            sums, count, samples = {}, 0, 0
                            window_start = time.perf_counter()
                        bar.update(1)
                    if cfg.checkpoint_interval and self.step % cfg.checkpoint_interval == 0:
                        with timer.section("checkpoint"):
                            self.save()
                    if self.step >= target:
                        timer.end_step(size)
                        break
                    with timer.section("logging"):
                        stopped = self._stop_requested()
                    timer.end_step(size)
                    if stopped:
                        break
                if stopped:
                    log.warning(
                        "stopped by signal at epoch %d, step %d; continue with --resume %s",
                        self.epoch,
                        self.step,
                        self.output_dir,
                    )
                    break
                if self.epoch_step < self.steps_per_epoch:
                    break  # stopped inside the epoch (max_steps); the final checkpoint records the position
                if cfg.validate_every_epochs and (self.epoch + 1) % cfg.validate_every_epochs == 0:
                    val_metrics = self._validate(self.epoch)
                if cfg.checkpoint_every_epoch and self._saved_at_step != self.step:
                    with timer.section("checkpoint"):
                        self.save()
                self.epoch, self.epoch_step = self.epoch + 1, 0
            if self._saved_at_step != self.step:
                with timer.section("checkpoint"):
                    self.save()
            digest, consistent = self._check_replicas()
        finally:
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
            bar.close()
            if self._writer is not None:
                self._writer.close()
                self._writer = None
        return TrainResult(
            step=self.step,
            epoch=self.epoch,
            checkpoint=self.last_checkpoint,
            metrics=metrics,
            val_metrics=val_metrics,
            history=self.history,
            replica_digest=digest,
            replicas_consistent=consistent,
            stopped_by_signal=stopped,
        )

    def _check_replicas(self) -> tuple[str, bool]:
        """Each rank writes its parameter digest to ``replicas/rank<r>.sha256``; rank 0 checks that replicas agree.

        DDP: every rank is a replica of the whole model. FSDP: a rank's digest covers its own shards, so only ranks
        holding the same shards (the same shard index: replicas under hybrid sharding) must agree; under full
        sharding each shard exists once and there is nothing to compare.
        """
        digest = parameter_digest(self.model)
        replicas = self.output_dir / "replicas"
        replicas.mkdir(parents=True, exist_ok=True)
        (replicas / f"rank{self.ctx.rank}.sha256").write_text(digest + "\n")
        shard = self.fsdp.shard_index if self.fsdp is not None else 0
        gathered = all_gather_objects((shard, digest), self.ctx)
        by_shard: dict[int, set[str]] = {}
        for index, value in gathered:  # type: ignore[misc]
            by_shard.setdefault(index, set()).add(value)
        consistent = all(len(values) == 1 for values in by_shard.values())
        if not consistent:
            log.error("replicas diverged: (shard, parameter digest) per rank %s", gathered)
        elif self.ctx.distributed and self.ctx.is_main:
            if self.fsdp is None:
                log.info("all %d ranks hold identical parameters (sha256 %s)", self.ctx.world_size, digest[:16])
            else:
                copies = self.ctx.world_size // len(by_shard)
                log.info("FSDP: %d shard(s) held by %d rank(s) each, replicas identical", len(by_shard), copies)
        return digest, consistent


__all__ = [
    "Batch",
    "StepFn",
    "TrainResult",
    "Trainer",
    "ValHook",
    "loss_values",
    "optimizer_implementation",
    "parameter_digest",
]
