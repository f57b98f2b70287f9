"""The distillation loss kinds of surrogate (f) on features whose distances are known by construction, the config
switch that picks one (``distill.kind`` in the MLLM config, ``joint.distill_loss`` in stage 2), and the gradient
direction (into the planner, never into a detached teacher)."""

from __future__ import annotations

import math

import pytest
import torch

from dima_core.config import ConfigError, config_from_dict
from dima_core.models.mllm.config import DistillConfig, MllmConfig
from dima_core.models.mllm.distill import DISTILL_KINDS, FeatureDistiller, feature_distance, hidden_distill_loss

STUDENT = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
TEACHER = torch.tensor([[1.0, 0.0, 3.0, 8.0]])


def test_l1_is_the_mean_absolute_difference():
    # |0| + |2| + |0| + |-4| over 4 channels
    assert feature_distance(STUDENT, TEACHER, "l1").item() == pytest.approx(1.5)


def test_l2_is_the_mean_squared_difference():
    # 0 + 4 + 0 + 16 over 4 channels
    assert feature_distance(STUDENT, TEACHER, "l2").item() == pytest.approx(5.0)


def test_cosine_is_one_minus_the_cosine_averaged_over_the_batch():
    s = torch.tensor([[1.0, 0.0], [0.0, 1.0], [3.0, 0.0]])
    t = torch.tensor([[2.0, 0.0], [1.0, 1.0], [-1.0, 0.0]])  # parallel, 45 degrees, opposite
    expected = ((1 - 1) + (1 - 1 / math.sqrt(2)) + (1 - -1)) / 3
    assert feature_distance(s, t, "cosine").item() == pytest.approx(expected)


def test_kl_on_softmaxed_features_with_temperature_and_t2_scaling():
    s = torch.tensor([[0.0, 0.0]])  # uniform
    t = torch.tensor([[0.0, math.log(3.0)]])  # softmax [1/4, 3/4]
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert feature_distance(s, t, "kl").item() == pytest.approx(expected)
    # T = 2: softmax(t / 2) = [1, sqrt 3] / (1 + sqrt 3); times T^2 = 4 unless scale_by_t2 is off
    a, b = 1 / (1 + math.sqrt(3)), math.sqrt(3) / (1 + math.sqrt(3))
    raw = a * math.log(2 * a) + b * math.log(2 * b)
    assert feature_distance(s, t, "kl", temperature=2.0).item() == pytest.approx(4 * raw)
    assert feature_distance(s, t, "kl", temperature=2.0, scale_by_t2=False).item() == pytest.approx(raw)


@pytest.mark.parametrize("kind", DISTILL_KINDS)
def test_every_kind_is_zero_on_equal_features_and_positive_otherwise(kind):
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(0))
    assert feature_distance(x, x.clone(), kind).item() == pytest.approx(0.0, abs=1e-6)
    assert feature_distance(x, x.flip(-1), kind).item() > 1e-4


def test_unknown_kind_and_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="unknown distillation kind 'huber'"):
        feature_distance(STUDENT, TEACHER, "huber")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="equal shapes"):
        feature_distance(STUDENT, TEACHER[:, :3], "l1")
    with pytest.raises(ValueError, match="distill.kind 'huber'"):
        FeatureDistiller(4, 4, DistillConfig(kind="huber"))  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="distill.kind"):
        config_from_dict({"distill": {"kind": "huber"}}, MllmConfig)


@pytest.mark.parametrize("kind,expected", [("l1", 1.5), ("l2", 5.0)])
def test_feature_distiller_uses_its_kind_and_sends_the_gradient_to_the_planner_only(kind, expected):
    distiller = FeatureDistiller(4, 4, DistillConfig(kind=kind))
    planner = STUDENT.clone().requires_grad_(True)
    mllm = TEACHER.clone().requires_grad_(True)
    loss = distiller(planner, mllm)
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    assert planner.grad is not None and planner.grad.abs().sum() > 0
    assert mllm.grad is None  # detach_teacher: the teacher is a fixed target
    if kind == "l1":  # d/ds mean|s - t| = sign(s - t) / 4
        assert torch.equal(planner.grad, torch.tensor([[0.0, 0.25, 0.0, -0.25]]))


def test_student_mllm_sends_the_gradient_to_the_teacher_instead():
    distiller = FeatureDistiller(4, 4, DistillConfig(kind="l2", student="mllm"))
    planner = STUDENT.clone().requires_grad_(True)
    mllm = TEACHER.clone().requires_grad_(True)
    distiller(planner, mllm).backward()
    assert planner.grad is None and mllm.grad is not None
    # d/dm mean (m - s)^2 = 2 (m - s) / 4
    assert torch.allclose(mllm.grad, (TEACHER - STUDENT) / 2)


def test_multi_teacher_kinds_are_the_same_distances():
    s, t = torch.randn(2, 6), torch.randn(2, 6)
    assert torch.equal(hidden_distill_loss(s, t, "cosine"), feature_distance(s, t, "cosine"))
    assert torch.equal(hidden_distill_loss(s, t, "kl", 2.0), feature_distance(s, t, "kl", 2.0))
    with pytest.raises(ValueError, match="unknown hidden distillation loss 'l1'"):
        hidden_distill_loss(s, t, "l1")  # type: ignore[arg-type]


def test_stage2_distill_loss_overrides_the_teacher_config():
    from dima_core.training.stage2 import JointConfig, teacher_config

    assert teacher_config(JointConfig()).distill.kind == "kl"  # the shipped MLLM config: DiMA's KL
    cfg = teacher_config(JointConfig(distill_loss="l1"))
    assert cfg.distill.kind == "l1"
    assert cfg.distill.temperature == teacher_config(JointConfig()).distill.temperature  # the rest is kept
