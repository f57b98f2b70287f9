"""The lr schedule: VAD's linear warm-up (ratio 1/3) into cosine annealing down to min_lr_ratio, per step."""

from __future__ import annotations

import math
from itertools import pairwise

import pytest
import torch

from dima_core.training.config import ScheduleConfig
from dima_core.training.schedule import build_scheduler, lr_factor

VAD = ScheduleConfig(warmup_iters=500, warmup_ratio=1.0 / 3.0, min_lr_ratio=1e-3)


def cosine(step: int, total: int, min_ratio: float) -> float:
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * step / total))


def test_factor_at_warmup_start_end_and_training_end() -> None:
    total = 10_000
    # First step: warm-up ratio times the (still ~1) cosine value, exactly as mmcv's linear warm-up.
    assert lr_factor(0, total, VAD) == pytest.approx(1.0 / 3.0, rel=1e-12)
    # Half-way through warm-up: 1 - (1 - 0.5)(1 - 1/3) = 2/3 of the cosine value.
    assert lr_factor(250, total, VAD) == pytest.approx(cosine(250, total, 1e-3) * 2.0 / 3.0, rel=1e-12)
    # Last warm-up step is just below the cosine curve, the next one is on it.
    assert lr_factor(499, total, VAD) == pytest.approx(cosine(499, total, 1e-3) * (1 - (1 / 500) * (2 / 3)))
    assert lr_factor(500, total, VAD) == pytest.approx(cosine(500, total, 1e-3), rel=1e-12)
    # Middle of training: halfway between peak and floor.
    assert lr_factor(total // 2, total, VAD) == pytest.approx((1 + 1e-3) / 2, rel=1e-12)
    # End of training: the floor, and it stays there.
    assert lr_factor(total, total, VAD) == pytest.approx(1e-3, rel=1e-9)
    assert lr_factor(total + 50, total, VAD) == pytest.approx(1e-3, rel=1e-9)
    assert lr_factor(total - 1, total, VAD) > 1e-3


def test_factor_is_monotonic_in_warmup_and_after() -> None:
    total = 2000
    values = [lr_factor(s, total, VAD) for s in range(total + 1)]
    assert all(b > a for a, b in pairwise(values[:501]))
    assert all(b <= a for a, b in pairwise(values[500:]))


def test_lambda_lr_applies_the_factor_per_optimizer_step() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([param], lr=2e-4)
    schedule = ScheduleConfig(warmup_iters=4, warmup_ratio=1.0 / 3.0, min_lr_ratio=1e-3)
    total = 20
    scheduler = build_scheduler(optimizer, schedule, total)
    seen = []
    for _ in range(total):
        seen.append(optimizer.param_groups[0]["lr"])  # the lr this optimiser step uses
        optimizer.step()
        scheduler.step()
    expected = [2e-4 * lr_factor(s, total, schedule) for s in range(total)]
    assert seen == pytest.approx(expected, rel=1e-12)
    assert seen[0] == pytest.approx(2e-4 / 3)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(2e-4 * 1e-3)  # after the last step: the floor


def test_no_warmup_and_bad_total() -> None:
    schedule = ScheduleConfig(warmup_iters=0, warmup_ratio=1.0 / 3.0, min_lr_ratio=0.0)
    assert lr_factor(0, 100, schedule) == pytest.approx(1.0)
    assert lr_factor(100, 100, schedule) == pytest.approx(0.0, abs=1e-15)
    with pytest.raises(ValueError, match="total_steps"):
        lr_factor(0, 0, schedule)
