"""The stage-2 optimiser: two AdamW param groups (teacher, planner) with their own learning-rate factors.

The teacher's group (adapters, LoRA, heads, queries) follows the run's ``schedule`` from step 0, as the single group
of stage 1 does. The planner's group (scene encoder + planning transformer) follows ``joint.planner_lr``
(:class:`~dima_core.training.stage2.config.PlannerLrConfig`): 0 during the teacher warm-up, then ``shared``,
``constant`` or its own ``cosine`` from the handover step. Both factors are closed-form functions of the step
(``LambdaLR``, as schedule.py), so resuming restores them exactly from the step counter.

The planner group comes first, so the optimiser state lists the parameters in the model's order (the planner is
the joint model's first submodule) and the trainer's logged ``lr`` is the planner's; the diagnostics records carry
both (``diag/lr_planner``, ``diag/lr_teacher``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LambdaLR

from dima_core.training.config import ScheduleConfig, TrainConfig
from dima_core.training.schedule import lr_factor
from dima_core.training.stage2.config import PlannerLrConfig

log = logging.getLogger(__name__)

PLANNER_GROUP, TEACHER_GROUP = 0, 1
PLANNER_PREFIX = "planner."


def planner_lr_factor(
    step: int, total_steps: int, handover: int, cfg: PlannerLrConfig, schedule: ScheduleConfig
) -> float:
    """Multiplier of ``optimizer.lr`` for the planner at 0-based optimiser step ``step`` (module docstring).

    A warm-up as long as the run (``handover >= total_steps``: a teacher trained on a fixed planner) keeps it 0.
    """
    if step < handover or handover >= total_steps:
        return 0.0
    if cfg.schedule == "shared":
        return cfg.multiplier * lr_factor(step, total_steps, schedule)
    if cfg.schedule == "constant":
        return cfg.multiplier
    if cfg.schedule == "cosine":
        own = ScheduleConfig(
            warmup_iters=cfg.warmup_iters, warmup_ratio=cfg.warmup_ratio, min_lr_ratio=cfg.min_lr_ratio
        )
        return cfg.multiplier * lr_factor(step - handover, total_steps - handover, own)
    raise ValueError(f"unknown joint.planner_lr.schedule {cfg.schedule!r} (shared, constant, cosine)")


def check_planner_lr(total_steps: int, handover: int) -> None:
    """Refuse a planner-only run that would have no step to train (the compute-matched control of a DiMA run whose
    warm-up covers the whole run has nothing to match)."""
    if handover >= total_steps:
        raise ValueError(
            f"joint.teacher_warmup.steps {handover} >= the run's {total_steps} optimiser steps: the "
            "planner never trains in this run (lower the warm-up or train more epochs)"
        )


def planner_parameters(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """``(teacher params, planner params)``: the trainable parameters of a joint model, split by the ``planner.``
    prefix, each in the model's order."""
    teacher, planner = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (planner if name.startswith(PLANNER_PREFIX) else teacher).append(p)
    return teacher, planner


def build_stage2_optimizer(model: nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW over the two groups (planner, teacher) with the run's optimiser settings (the Trainer's update rule)."""
    from dima_core.training.trainer import optimizer_implementation

    teacher, planner = planner_parameters(model)
    if not planner:
        raise ValueError("the joint model has no trainable planner parameter")
    opt = config.optimizer
    groups = [{"params": planner, "name": "planner"}, {"params": teacher, "name": "teacher"}]
    return torch.optim.AdamW(
        groups,
        lr=opt.lr,
        betas=(opt.betas[0], opt.betas[1]),
        eps=opt.eps,
        weight_decay=opt.weight_decay,
        **optimizer_implementation(opt.implementation),
    )


def build_stage2_scheduler(optimizer: torch.optim.Optimizer, config: Any, total_steps: int) -> LambdaLR:
    """The two groups' factors: :func:`planner_lr_factor` for the planner, the run's schedule for the teacher."""
    joint = config.joint
    handover = joint.teacher_warmup.steps
    if handover >= total_steps:
        log.info(
            "teacher warm-up of %d steps covers the whole run (%d steps): the planner stays frozen",
            handover,
            total_steps,
        )

    def teacher_factor(step: int) -> float:
        return lr_factor(step, total_steps, config.schedule)

    def planner_factor(step: int) -> float:
        return planner_lr_factor(step, total_steps, handover, joint.planner_lr, config.schedule)

    factors: list[Callable[[int], float]] = [planner_factor, teacher_factor]
    return LambdaLR(optimizer, lr_lambda=factors)


__all__ = [
    "PLANNER_GROUP",
    "TEACHER_GROUP",
    "build_stage2_optimizer",
    "build_stage2_scheduler",
    "check_planner_lr",
    "planner_lr_factor",
    "planner_parameters",
]
