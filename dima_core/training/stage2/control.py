"""The compute-matched control of stage 2: the planner alone, on stage 2's step grid (``dima bench distill``).

A DiMA run is stage 1 then stage 2 from its checkpoint. The fair planner-only arm starts from the *same* stage-1
checkpoint and then trains the planner exactly where stage 2 trains it: the same optimiser steps (the steps after
the teacher warm-up, ``joint.teacher_warmup.steps`` = h, up to the end of ``epochs``), the same batches in the same
order (the data order is a function of ``(seed, epoch)`` and the position, as in every run), the same per-step
learning rate (``joint.planner_lr`` relative to the handover) and the same optimiser settings. So both arms make
the same number of planner updates on the same samples; they differ by the teacher's gradients only (and by what
the teacher's share of the RNG stream and of the global gradient-norm clip does).

:func:`build_planner_only_trainer` reads a :class:`~dima_core.training.stage2.config.Stage2TrainConfig` (the DiMA
arm's own) and builds stage 1's model, loss and dataset around :class:`PlannerOnlyTrainer`, which starts at step h
(as if resumed there: the first h batches are the warm-up's, which the planner does not train on in either arm).
Its checkpoints are stage-1 checkpoints (the planner alone, with the stage-2 config minus its ``joint`` section as
their training config), evaluated and resumed like any stage-1 run.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from dima_core.training.config import TrainConfig
from dima_core.training.distributed import DistContext
from dima_core.training.stage1 import Stage1Step, load_index, resolve_repo_path, stage1_data_config
from dima_core.training.stage2.config import PlannerLrConfig, Stage2TrainConfig
from dima_core.training.stage2.lr import check_planner_lr, planner_lr_factor
from dima_core.training.trainer import Trainer

log = logging.getLogger(__name__)


class PlannerOnlyTrainer(Trainer):
    """The generic Trainer on the planner, positioned at the handover step with stage 2's planner lr factors.

    Args:
        config: the stage-1 view of the DiMA arm's config (:func:`planner_only_config`).
        handover: the DiMA arm's ``joint.teacher_warmup.steps``.
        planner_lr: its ``joint.planner_lr``.
    """

    def __init__(
        self,
        model: nn.Module,
        step_fn: Any,
        train_dataset: Any,
        config: TrainConfig,
        handover: int,
        planner_lr: PlannerLrConfig,
        **kwargs: Any,
    ) -> None:
        super().__init__(model, step_fn, train_dataset, config, **kwargs)
        self.handover = int(handover)
        check_planner_lr(self.total_steps, self.handover)
        total = self.total_steps

        # The scheduler counts this run's own steps k = step - handover (it starts at 0 here and its state is saved
        # and restored with the checkpoint), so step k runs at stage 2's planner lr of step handover + k.
        def factor(k: int) -> float:
            return planner_lr_factor(self.handover + k, total, self.handover, planner_lr, config.schedule)

        self.scheduler = LambdaLR(self.optimizer, lr_lambda=factor)
        # Start where stage 2 hands the planner over: the warm-up's batches are skipped, not trained on.
        self.step = self.handover
        self.epoch, self.epoch_step = divmod(self.handover, self.steps_per_epoch)


def planner_only_config(config: Stage2TrainConfig) -> TrainConfig:
    """The stage-1 :class:`TrainConfig` of a stage-2 config: everything but ``joint`` (data, optimiser, schedule,
    epochs, seed, output, init/resume), stage 1, no unused-parameter search (the planner uses all its parameters)."""
    from dima_core.config import config_from_dict, config_to_dict

    data = config_to_dict(config)
    data.pop("joint")
    data.update({"stage": 1, "find_unused_parameters": False})
    return config_from_dict(data, TrainConfig, source="planner-only control (stage-2 config without joint)")


def build_planner_only_trainer(
    config: Stage2TrainConfig, ctx: DistContext, record_history: bool = False
) -> PlannerOnlyTrainer:
    """Stage 1's planner, loss and training split on the step grid of the stage-2 run ``config`` (module doc)."""
    from dima_core.config import config_to_dict
    from dima_core.data.dataset import DrivingDataset, collate
    from dima_core.models import VisionPlanner, load_model_config
    from dima_core.models.losses import PlannerLoss
    from dima_core.training.determinism import seed_everything

    if not isinstance(config, Stage2TrainConfig):
        raise TypeError("the planner-only control needs the DiMA arm's Stage2TrainConfig")
    if config.init is None and config.resume is None:
        raise ValueError(
            "the planner-only control continues a stage-1 checkpoint: set init (the DiMA arm's stage-1 checkpoint)"
        )
    model_config = load_model_config(resolve_repo_path(config.model_config))
    data = stage1_data_config(config, model_config)
    index = load_index(data, config, ctx)
    # The stage-2 dataset's tokens and order (DrivingDataset underneath), so the sampler draws the same batches.
    train_set = DrivingDataset(index, dataclasses.replace(data, split=config.data.train_split))
    if len(train_set) == 0:
        raise ValueError(f"split '{config.data.train_split}' has no samples in {data.dataroot}")
    seed_everything(config.seed, config.deterministic)
    model = VisionPlanner(model_config)
    loss = PlannerLoss(model_config.loss, model_config.bev.x_range, model_config.bev.y_range)
    step = Stage1Step(loss, temporal=model_config.bev.use_temporal)
    joint = config.joint
    trainer = PlannerOnlyTrainer(
        model,
        step,
        train_set,
        planner_only_config(config),
        joint.teacher_warmup.steps,
        joint.planner_lr,
        ctx=ctx,
        collate_fn=collate,
        val_hook=None,
        model_config=config_to_dict(model_config),
        record_history=record_history,
    )
    log.info(
        "planner-only control: %s from step %d to %d (%d planner updates), lr %s",
        model_config.name,
        trainer.step,
        trainer.total_steps,
        trainer.total_steps - trainer.step,
        config.joint.planner_lr.schedule,
    )
    return trainer


__all__ = ["PlannerOnlyTrainer", "build_planner_only_trainer", "planner_only_config"]
