"""`dima bench distill`'s bookkeeping on values known by construction: mean ± sample std, the paired comparison
over seeds (differences, their mean and std, the sign count) and the FLOP counter's per-step numbers on a tiny MLP
trained by the real Trainer."""

from __future__ import annotations

import math

import pytest

from benchmarks.distill_costs import FlopSampler, RunCost, arm_cost
from benchmarks.distill_stats import format_mean_std, mean_std, paired
from training_fixtures import HIDDEN, IN_DIM, OUT_DIM, build_tiny_trainer, tiny_config


def test_mean_and_sample_std_skip_missing_values():
    assert mean_std([1.0, None, 3.0]) == (2.0, pytest.approx(math.sqrt(2.0)), 2)
    assert mean_std([None]) == (None, None, 0)
    assert format_mean_std([1.0, 2.0]) == "1.500 ± 0.707" and format_mean_std([0.25]) == "0.250"


def test_paired_differences_sign_count_and_spread():
    got = paired([1.0, 2.5, 0.75, None], [1.5, 2.0, 1.0, 9.0], [0, 1, 2, 3])
    assert got.seeds == [0, 1, 2] and got.differences == [-0.5, 0.5, -0.25]  # seed 3 lacks the method's value
    assert got.mean == pytest.approx(-0.25 / 3)
    assert got.std == pytest.approx(
        math.sqrt(((-0.5 + 0.25 / 3) ** 2 + (0.5 + 0.25 / 3) ** 2 + (-0.25 + 0.25 / 3) ** 2) / 2)
    )
    assert (got.better, got.worse, got.n) == (2, 1, 3)
    assert got.format().startswith("-0.083 ± ") and "(2/3 better; -0.500, +0.500, -0.250)" in got.format()
    with pytest.raises(ValueError, match="one value per seed"):
        paired([1.0], [1.0, 2.0], [0, 1])


def test_flop_sampler_counts_the_mlp_step_and_extrapolates(tmp_path):
    trainer = build_tiny_trainer(tiny_config(tmp_path, epochs=1, max_steps=5))  # batch 4 of 24 samples
    sampler = FlopSampler(lambda t: "warmup" if t.step < 2 else "train", samples_per_phase=2).attach(trainer)
    trainer.fit()
    batch = 4
    forward = 2 * batch * (IN_DIM * HIDDEN + HIDDEN * OUT_DIM)
    # backward: both weight gradients, and the input gradient of the second layer (the data needs none)
    backward = 2 * batch * (IN_DIM * HIDDEN + HIDDEN * OUT_DIM) + 2 * batch * HIDDEN * OUT_DIM
    cost = sampler.cost(wall_s=1.0)
    assert cost.flops_per_step == {"warmup": forward + backward, "train": forward + backward}
    assert cost.steps_by_phase == {"warmup": 2, "train": 3} and (cost.steps, cost.planner_steps) == (5, 3)
    assert (cost.samples, cost.planner_samples) == (20, 12)
    assert cost.flops == 5 * (forward + backward)
    total = arm_cost({"stage1": cost, "stage2": RunCost(wall_s=2.0, steps=1, planner_steps=1, flops=10.0)})
    assert (total["wall_s"], total["steps"], total["planner_steps"], total["flops"]) == (3.0, 6, 4, cost.flops + 10)
    assert set(total["runs"]) == {"stage1", "stage2"}
