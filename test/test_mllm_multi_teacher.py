"""Drive-KD multi-teacher distillation: the hint loss is finite and zero where it must be, the extra terms reach
only the planner feature and their regressors (never the LLM, adapters or the frozen base), their weights enter
the total, and bad configurations are clear errors (also for gradient projection)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from dima_core.config import ConfigError, config_from_dict
from dima_core.models.mllm.config import (
    DistillConfig,
    HiddenStateTeacher,
    MllmConfig,
    MultiTeacherConfig,
    load_mllm_config,
)
from dima_core.models.mllm.distill import MultiTeacherDistiller, hidden_distill_loss
from dima_core.models.mllm.llm import base_parameters, lora_parameters
from dima_core.models.mllm.losses import total_loss
from mllm_fixtures import PLANNER_DIM, make_beam, make_teacher, tiny_config

TEACHERS = [
    HiddenStateTeacher(name="perception", layer=1, weight=0.1, loss="cosine"),
    HiddenStateTeacher(name="planning", layer=-2, weight=0.3, loss="kl"),
]


@pytest.fixture(scope="module")
def multi_teacher():
    """A tiny-config teacher on SmolLM2 (30 layers) with two extra teachers."""
    return make_teacher(tiny_config(multi_teacher=MultiTeacherConfig(enabled=True, teachers=list(TEACHERS))))


def test_hint_loss_is_zero_for_a_match_positive_otherwise_and_finite() -> None:
    a = torch.randn(3, 12)
    for kind in ("cosine", "kl"):
        assert hidden_distill_loss(a, a.clone(), kind).item() == pytest.approx(0.0, abs=1e-6)
        assert hidden_distill_loss(a, torch.randn(3, 12), kind).item() > 0
        assert torch.isfinite(hidden_distill_loss(torch.zeros(3, 12), a, kind))
    assert hidden_distill_loss(a, 5.0 * a, "cosine").item() == pytest.approx(0.0, abs=1e-6)  # scale-free
    with pytest.raises(ValueError, match="unknown hidden distillation loss"):
        hidden_distill_loss(a, a, "mse")  # type: ignore[arg-type]


def test_distiller_targets_are_fixed_and_a_perfect_student_scores_zero() -> None:
    d, batch, length = 8, 2, 5
    distiller = MultiTeacherDistiller(d, d, TEACHERS, DistillConfig(), num_hidden_states=3)
    for reg in distiller.regressors.values():  # identity regressors: the student is compared as is
        with torch.no_grad():
            reg.weight.copy_(torch.eye(d))
            reg.bias.zero_()
    hidden = [torch.randn(batch, length, d, requires_grad=True) for _ in range(3)]
    positions = torch.tensor([[3], [1]])
    targets = distiller.targets(hidden, positions)
    expected = F.layer_norm(hidden[1][torch.arange(batch), positions[:, 0]], (d,))
    assert torch.allclose(targets["perception"], expected) and not targets["perception"].requires_grad
    for name, teacher in (("perception", TEACHERS[0]), ("planning", TEACHERS[1])):
        losses = distiller(targets[name].clone(), hidden, positions)
        assert losses[name].item() == pytest.approx(0.0, abs=1e-6), teacher.loss
    losses = distiller(torch.randn(batch, d), hidden, positions)
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    with pytest.raises(ValueError, match="'perception': layer 1 is outside"):
        MultiTeacherDistiller(d, d, TEACHERS, DistillConfig(), num_hidden_states=1)
    too_deep = [HiddenStateTeacher(name="deep", layer=31)]
    with pytest.raises(ValueError, match="'deep': layer 31 is outside the LLM's decoder layers \\(1..30"):
        MultiTeacherDistiller(d, d, too_deep, DistillConfig(), num_hidden_states=31)  # SmolLM2: 30 layers


def test_extra_terms_reach_only_the_planner_feature_and_regressors(multi_teacher) -> None:
    teacher = multi_teacher
    teacher.zero_grad(set_to_none=True)
    beam = make_beam(2, requires_grad=True)
    feature = torch.randn(2, PLANNER_DIM, requires_grad=True)
    prompts = teacher.encode_prompts(["Is the road clear?", "Where is the car?"], ["Yes.", "Ahead."])
    args = (beam, prompts, torch.tensor([2, 0]), torch.randn(2, 6, 2), torch.ones(2, 6, dtype=torch.bool))
    total, terms, _ = teacher.losses(*args, planner_feature=feature)
    assert {"distill", "distill_perception", "distill_planning"} <= set(terms)
    assert all(torch.isfinite(terms[k]) and terms[k] > 0 for k in ("distill_perception", "distill_planning"))
    # Weighted into the total with the teachers' weights.
    cfg = teacher.cfg
    assert cfg.term_weight("distill_planning") == 0.3
    assert torch.allclose(total, total_loss(terms, cfg.weights, cfg.extra_term_weights()))
    without = {k: v for k, v in terms.items() if k != "distill_planning"}
    assert torch.allclose(
        total - 0.3 * terms["distill_planning"], total_loss(without, cfg.weights, cfg.extra_term_weights())
    )

    terms["distill_perception"].backward()
    assert feature.grad is not None and feature.grad.abs().sum() > 0
    regressors = teacher.multi_teacher.regressors
    assert regressors["perception"].weight.grad.abs().sum() > 0
    assert regressors["planning"].weight.grad is None
    for p in [*teacher.adapters.parameters(), teacher.plan_query, *lora_parameters(teacher.llm)]:
        assert p.grad is None, "a teacher hint target must stay detached"
    assert beam.bev.grad is None
    for name, p in base_parameters(teacher.llm):
        assert not p.requires_grad and p.grad is None, name
    teacher.zero_grad(set_to_none=True)

    # No planner feature (distillation switched off): no distillation term at all.
    _, terms, _ = teacher.losses(*args)
    assert not any(k.startswith("distill") for k in terms)
    # The regressors are trainable state that checkpoints keep.
    assert any(k.startswith("multi_teacher.regressors.") for k in teacher.trainable_state_dict())


def test_off_by_default_and_bad_configs_are_clear_errors() -> None:
    cfg = load_mllm_config("smollm2_135m")
    assert not cfg.multi_teacher.enabled and not cfg.gradient_projection.enabled
    assert cfg.extra_term_weights() == {}
    base = {"multi_teacher": {"enabled": True}}
    cases = [
        ({"multi_teacher": {"teachers": [{"name": "a", "layer": 0}]}}, "layer 0 is the input embedding"),
        ({"multi_teacher": {"teachers": [{"name": "Bad-Name"}]}}, "must be lower-case letters"),
        ({"multi_teacher": {"teachers": [{"name": "a"}, {"name": "a", "layer": 2}]}}, "names must be unique"),
        ({"multi_teacher": {"enabled": True, "teachers": []}}, "needs at least one entry"),
        (
            {**base, "gradient_projection": {"enabled": True, "terms": ["planner", "distill_typo"]}},
            r"\['distill_typo'\] are not loss terms \(known: \[.*distill_perception",
        ),
        ({"gradient_projection": {"enabled": True, "terms": ["planner"]}}, "at least two terms"),
        ({"gradient_projection": {"terms": ["planner", "distill"], "anchor": "vqa"}}, "anchor 'vqa' is not one"),
        ({"gradient_projection": {"modules": []}}, "at least one module"),
    ]
    for data, message in cases:
        with pytest.raises(ConfigError, match=message):
            config_from_dict(data, MllmConfig, source="mllm.yaml")
    ok = config_from_dict(
        {
            "multi_teacher": {"enabled": True, "teachers": [{"name": "mid", "layer": -16}]},
            "gradient_projection": {"enabled": True, "terms": ["planner", "distill_mid"], "anchor": "planner"},
        },
        MllmConfig,
        source="mllm.yaml",
    )
    assert ok.extra_term_weights() == {"distill_mid": 0.1}
    assert dataclasses.asdict(ok)["gradient_projection"]["anchor"] == "planner"
