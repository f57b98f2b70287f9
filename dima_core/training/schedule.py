"""Learning-rate schedule: linear warm-up then cosine annealing to a minimum ratio, stepped per optimiser step.

This reproduces mmcv's ``CosineAnnealingLrUpdaterHook`` with ``warmup='linear'`` as VAD configures it
(``warmup_iters=500, warmup_ratio=1/3, min_lr_ratio=1e-3``)::

    cosine(s)  = min_lr_ratio + (1 - min_lr_ratio) * (1 + cos(pi * s / total)) / 2
    factor(s)  = cosine(s) * (1 - (1 - s / warmup_iters) * (1 - warmup_ratio))   for s < warmup_iters
    factor(s)  = cosine(s)                                                          otherwise
    lr(s)      = peak_lr * factor(s)

``s`` is the 0-based index of the optimiser step the lr is used for, so the first step runs at
``peak_lr * warmup_ratio * cosine(0) = peak_lr * warmup_ratio`` and ``lr(total) = peak_lr * min_lr_ratio``. As in
mmcv, warm-up *scales* the cosine value rather than replacing it. One deliberate difference: mmcv anneals by epoch
(a staircase) by default; we anneal every step, which is smoother and independent of the epoch length.

Why ``LambdaLR`` with a closed form rather than ``SequentialLR(LinearLR, CosineAnnealingLR)``: the chained
schedulers compute lr recursively from the previous value (so a resumed run depends on float history), they
cannot express mmcv's multiplicative warm-up, and their state is several nested objects. Here the whole state is
the step counter, and the schedule's shape always comes from the config: a plain function is not pickled into
``LambdaLR.state_dict``.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from dima_core.training.config import ScheduleConfig


def lr_factor(step: int, total_steps: int, schedule: ScheduleConfig) -> float:
    """Multiplier of the peak lr for 0-based optimiser step ``step`` of ``total_steps`` (formula in the module doc)."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    progress = min(max(step, 0), total_steps) / total_steps
    factor = schedule.min_lr_ratio + (1.0 - schedule.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    if step < schedule.warmup_iters:
        factor *= 1.0 - (1.0 - step / schedule.warmup_iters) * (1.0 - schedule.warmup_ratio)
    return factor


def build_scheduler(optimizer: torch.optim.Optimizer, schedule: ScheduleConfig, total_steps: int) -> LambdaLR:
    """A ``LambdaLR`` that applies :func:`lr_factor`; call ``.step()`` once after every optimiser step.

    ``total_steps`` is the length of the *whole* schedule (epochs x steps per epoch), never a smoke-run
    ``max_steps``: stopping early and resuming must see the same curve as the uninterrupted run.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")

    def factor(step: int) -> float:
        return lr_factor(step, total_steps, schedule)

    return LambdaLR(optimizer, lr_lambda=factor)


__all__ = ["build_scheduler", "lr_factor"]
