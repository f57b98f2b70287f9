"""Stage 2's protocol pieces without an LLM: the phase schedule (teacher warm-up, distillation ramp), the planner's
lr factors, the two optimiser groups, the planner freeze (no gradient, no optimiser state, no BatchNorm update),
the gradient-cosine and feature-distance diagnostics on values known by construction, and the config checks."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from dima_core.config import ConfigError, config_from_dict
from dima_core.models.mllm.config import DistillConfig
from dima_core.training.config import ScheduleConfig
from dima_core.training.schedule import lr_factor
from dima_core.training.stage2 import (
    JointConfig,
    PlannerFreeze,
    PlannerLrConfig,
    Stage2Phases,
    Stage2TrainConfig,
    TeacherWarmupConfig,
    build_stage2_optimizer,
    build_stage2_scheduler,
    check_warmup_terms,
    feature_distances,
    gradient_statistics,
    planner_lr_factor,
)
from dima_core.training.stage2.lr import check_planner_lr


def _joint(steps: int = 3, ramp: int = 4, terms=("vqa", "plan"), **kw) -> JointConfig:
    return JointConfig(
        teacher_warmup=TeacherWarmupConfig(steps=steps, terms=list(terms)), distill_ramp_steps=ramp, **kw
    )


def test_phases_warm_up_then_ramp_the_distillation_linearly():
    phases = Stage2Phases(_joint(steps=3, ramp=4))
    got = [(phases.at(s).name, phases.at(s).distill_scale) for s in range(8)]
    assert got == [("warmup", 0.0)] * 3 + [
        ("ramp", 0.25),
        ("ramp", 0.5),
        ("ramp", 0.75),
        ("joint", 1.0),
        ("joint", 1.0),
    ]
    assert [(p.name, p.distill_scale) for p in map(Stage2Phases(_joint(0, 0)).at, (0, 5))] == [("joint", 1.0)] * 2


def test_term_scales_train_only_the_warm_up_terms_and_ramp_every_distillation_term():
    phases = Stage2Phases(_joint(steps=2, ramp=2, terms=("vqa", "plan", "attention_distill")))
    warm, ramp = phases.at(0), phases.at(2)
    assert {
        t: phases.term_scale(warm, t)
        for t in ("vqa", "plan", "recon", "future", "scene_edit", "distill", "distill_perception", "attention_distill")
    } == {
        "vqa": 1.0,
        "plan": 1.0,
        "recon": 0.0,
        "future": 0.0,
        "scene_edit": 0.0,
        "distill": 0.0,
        "distill_perception": 0.0,
        "attention_distill": 1.0,
    }
    assert not phases.builds(warm, "future") and not phases.builds(warm, "distill") and phases.builds(warm, "vqa")
    assert {t: phases.term_scale(ramp, t) for t in ("recon", "distill", "distill_perception")} == {
        "recon": 1.0,
        "distill": 0.5,
        "distill_perception": 0.5,
    }


def test_planner_lr_factors():
    sched = ScheduleConfig(warmup_iters=4, warmup_ratio=0.25, min_lr_ratio=0.01)
    total, h = 20, 5
    shared = PlannerLrConfig(schedule="shared", multiplier=0.5)
    assert [planner_lr_factor(s, total, h, shared, sched) for s in range(h)] == [0.0] * h  # frozen planner
    for s in range(h, total):
        assert planner_lr_factor(s, total, h, shared, sched) == 0.5 * lr_factor(s, total, sched)
    constant = PlannerLrConfig(schedule="constant", multiplier=0.002)
    assert {planner_lr_factor(s, total, h, constant, sched) for s in range(h, total + 3)} == {0.002}
    # Its own cosine from the handover: full at h (no warm-up), min_lr_ratio + half the range half-way, min at the end
    cosine = PlannerLrConfig(schedule="cosine", multiplier=2.0, warmup_iters=0, min_lr_ratio=0.1)
    assert planner_lr_factor(h, total, h, cosine, sched) == pytest.approx(2.0)
    assert planner_lr_factor(h + 15 // 2, total, h, cosine, sched) == pytest.approx(
        2.0 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 15)))
    )
    assert planner_lr_factor(total, total, h, cosine, sched) == pytest.approx(0.2)
    rewarm = PlannerLrConfig(schedule="cosine", warmup_iters=3, warmup_ratio=0.5, min_lr_ratio=0.0)
    assert planner_lr_factor(h, total, h, rewarm, sched) == pytest.approx(0.5)  # a warm-up of its own


class _Joint(nn.Module):
    """A joint-model stand-in: ``planner`` (with BatchNorm and dropout) feeding a ``teacher`` head."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.planner = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Dropout(0.5))
        self.teacher = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feature = self.planner(x)
        return feature.square().mean(), self.teacher(feature).square().mean()


def _config(steps: int, **planner_lr) -> Stage2TrainConfig:
    cfg = Stage2TrainConfig(joint=_joint(steps=steps, ramp=0, planner_lr=PlannerLrConfig(**planner_lr)))
    cfg.optimizer.lr = 0.1
    cfg.schedule = ScheduleConfig(warmup_iters=2, warmup_ratio=0.5, min_lr_ratio=0.0)
    return cfg


def test_two_groups_in_model_order_with_their_own_factors():
    model = _Joint()
    cfg = _config(steps=2, schedule="constant", multiplier=0.01)
    opt = build_stage2_optimizer(model, cfg)
    assert [g["name"] for g in opt.param_groups] == ["planner", "teacher"]
    assert [p for g in opt.param_groups for p in g["params"]] == list(model.parameters())  # the model's order
    sched = build_stage2_scheduler(opt, cfg, total_steps=6)
    lrs = []
    for _ in range(4):
        lrs.append(sched.get_last_lr())
        opt.step()
        sched.step()
    assert [lr[0] for lr in lrs] == [0.0, 0.0, pytest.approx(0.001), pytest.approx(0.001)]
    assert [lr[1] for lr in lrs] == [pytest.approx(0.1 * lr_factor(s, 6, cfg.schedule)) for s in range(4)]
    # A warm-up as long as the run: the teacher trains on a fixed planner, whose lr stays 0 to the end.
    whole = build_stage2_scheduler(build_stage2_optimizer(model, _config(steps=6)), _config(steps=6), total_steps=6)
    for _ in range(6):
        assert whole.get_last_lr()[0] == 0.0 and whole.get_last_lr()[1] > 0
        whole.optimizer.step()
        whole.step()
    assert whole.get_last_lr()[0] == 0.0
    with pytest.raises(ValueError, match="teacher_warmup.steps 6 >= the run's 6"):
        check_planner_lr(6, 6)


def test_frozen_planner_gets_no_gradient_no_optimiser_state_and_keeps_its_buffers():
    model = _Joint()
    model.train()
    opt = build_stage2_optimizer(model, _config(steps=2))
    freeze = PlannerFreeze(model.planner)
    before = {k: v.clone() for k, v in model.planner.state_dict().items()}
    teacher_before = model.teacher.weight.detach().clone()
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(1))
    for _ in range(3):
        freeze.apply(True)
        assert not model.planner.training and model.teacher.training
        _, teacher_loss = model(x)
        opt.zero_grad(set_to_none=True)
        teacher_loss.backward()
        opt.step()
    after = model.planner.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # weights and BatchNorm statistics
    assert all(p.grad is None and p not in opt.state for p in model.planner.parameters())
    assert not torch.equal(model.teacher.weight, teacher_before) and model.teacher.weight in opt.state
    freeze.apply(False)  # the handover
    assert model.planner.training and all(p.requires_grad for p in model.planner.parameters())
    planner_loss, teacher_loss = model(x)
    opt.zero_grad(set_to_none=True)
    (planner_loss + teacher_loss).backward()
    opt.step()
    assert not torch.equal(model.planner[0].weight, before["0.weight"])


def test_gradient_statistics_on_known_gradients():
    p = nn.Parameter(torch.tensor([3.0, 4.0]))
    q = nn.Parameter(torch.tensor([1.0]))
    groups = {
        "planner": (p * torch.tensor([1.0, 0.0])).sum(),  # grad (1, 0 | 0)
        "distill": (p * torch.tensor([0.0, 2.0])).sum() + q.sum(),  # grad (0, 2 | 1)
        "teacher": -3.0 * p[0],
    }  # grad (-3, 0 | 0)
    stats = gradient_statistics(groups, [p, q])
    assert stats["grad_norm/planner"] == pytest.approx(1.0)
    assert stats["grad_norm/distill"] == pytest.approx(math.sqrt(5.0))
    assert stats["grad_norm/teacher"] == pytest.approx(3.0)
    assert stats["grad_cosine/planner__distill"] == pytest.approx(0.0)
    assert stats["grad_cosine/planner__teacher"] == pytest.approx(-1.0)
    assert stats["grad_cosine/distill__teacher"] == pytest.approx(0.0)
    # A group without a loss, or without a path to the parameters, is left out.
    frozen = torch.tensor(2.0, requires_grad=True)
    assert set(
        gradient_statistics({"planner": groups["planner"], "distill": None, "teacher": frozen * 1.0}, [p, q])
    ) == {"grad_norm/planner"}


def test_feature_distances_on_known_features():
    s = torch.tensor([[3.0, 0.0], [0.0, 1.0]])
    t = torch.tensor([[0.0, 4.0], [0.0, 2.0]])
    got = feature_distances(s, t, DistillConfig(kind="l2"))
    assert got["feature_l2"] == pytest.approx((5.0 + 1.0) / 2)
    assert got["feature_cosine"] == pytest.approx((0.0 + 1.0) / 2)
    assert got["feature_distill"] == pytest.approx((9 + 16 + 0 + 1) / 4)


def test_warm_up_config_errors_name_the_problem():
    with pytest.raises(ConfigError, match=r"joint.teacher_warmup.*\['distill'\] are not warm-up terms"):
        config_from_dict({"joint": {"teacher_warmup": {"steps": 2, "terms": ["distill"]}}}, Stage2TrainConfig)
    with pytest.raises(ConfigError, match="planner_lr.schedule"):
        config_from_dict({"joint": {"planner_lr": {"schedule": "linear"}}}, Stage2TrainConfig)
    with pytest.raises(ValueError, match="include 'plan'"):
        check_warmup_terms(Stage2TrainConfig(joint=_joint(steps=2, terms=("recon",))))
    cfg = config_from_dict(
        {
            "joint": {
                "teacher_warmup": {"steps": 5},
                "distill_ramp_steps": 10,
                "distill_loss": "l1",
                "planner_lr": {"schedule": "constant", "multiplier": 0.01},
            }
        },
        Stage2TrainConfig,
    )
    assert (
        cfg.joint.teacher_warmup.steps,
        cfg.joint.distill_ramp_steps,
        cfg.joint.distill_loss,
        cfg.joint.planner_lr.schedule,
    ) == (5, 10, "l1", "constant")
    check_warmup_terms(cfg)
