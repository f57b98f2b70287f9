"""DiMA loss terms (a)-(f): finite, zero where they must be, gradients into the intended parameters and never into
the frozen LLM base; KL distillation; DiMA-Dual max-pooling; the two-stage freeze schedule; Drive-KD attention."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from dima_core.config import ConfigError
from dima_core.data.qa.scene_edits import add_agent, remove_agent
from dima_core.models.config import PlannerConfig
from dima_core.models.mllm.config import (
    AttentionDistillConfig,
    DistillConfig,
    LLMConfig,
    LoraSettings,
    LossWeights,
    MllmConfig,
    SceneEditConfig,
    load_mllm_config,
)
from dima_core.models.mllm.distill import FeatureDistiller, dual_mode_feature, dual_mode_plan, kl_divergence
from dima_core.models.mllm.llm import base_parameters, lora_parameters
from dima_core.models.mllm.losses import (
    answer_token_loss,
    attention_distill_loss,
    edit_collision_hinge,
    future_loss,
    planning_l1,
    reconstruction_loss,
    scene_edit_loss,
    total_loss,
    vqa_loss,
)
from dima_core.models.mllm.scene_editing import edited_plan_targets
from dima_core.models.mllm.teacher import attn_implementation
from dima_core.models.planner import PlanningTransformer
from dima_core.training.gradient_projection import GradientProjector
from mllm_fixtures import PLANNER_DIM, SCENE_DIM, base_llm, make_beam, make_teacher, straight_scene, tiny_config

QUESTIONS = ["Is there a car ahead of the ego vehicle?", "What should the ego vehicle do?"]
ANSWERS = ["Yes, a car is 12 m ahead.", "Keep going straight."]


def _grad_norm(module: torch.nn.Module) -> float:
    return float(sum(p.grad.abs().sum() for p in module.parameters() if p.grad is not None))


def _assert_base_untouched(teacher) -> None:
    for name, p in base_parameters(teacher.llm):
        assert not p.requires_grad and p.grad is None, name


def _edits():
    cfg = dataclasses.replace(SceneEditConfig(), add_distances_m=[15.0], added_speed_choices_mps=[0.0])
    add = add_agent(straight_scene(speed=8.0, lanes_left=0), cfg, np.random.default_rng(0))
    rem = remove_agent(straight_scene(agents=[(10.0, 7.0, 5.0)], lanes_left=2), cfg, np.random.default_rng(0))
    assert add is not None and rem is not None
    return [add, rem]


def test_all_terms_finite_and_gradients_reach_the_intended_parameters(teacher) -> None:
    teacher.zero_grad(set_to_none=True)
    beam = make_beam(2, requires_grad=True)
    planner_feature = torch.randn(2, PLANNER_DIM, requires_grad=True)
    future = {k: torch.randn(2, 16, SCENE_DIM, requires_grad=True) for k in (1, 2)}
    edits = _edits()
    edit_prompts = teacher.edit_qa_prompts(edits, seed=0)
    total, terms, out = teacher.losses(
        beam,
        teacher.encode_prompts(QUESTIONS, ANSWERS),
        torch.tensor([2, 1]),
        torch.randn(2, 6, 2),
        torch.ones(2, 6, dtype=torch.bool),
        planner_feature=planner_feature,
        future_bev=future,
        edits=edits,
        edit_prompts=edit_prompts,
        generator=torch.Generator().manual_seed(0),
    )
    assert set(terms) == {"vqa", "plan", "recon", "future", "distill", "scene_edit"}
    assert all(torch.isfinite(v) and v > 0 for v in terms.values()), terms
    assert torch.allclose(total, sum(terms.values()))  # all weights 1.0 by default
    assert out.plan_trajectories.shape == (2, 3, 6, 2) and out.plan_feature.shape == (2, PLANNER_DIM)
    assert out.recon.shape == (2, round(0.3 * 16), SCENE_DIM)
    total.backward()
    _assert_base_untouched(teacher)
    assert all(p.grad is not None for p in lora_parameters(teacher.llm))
    assert sum(float(p.grad.abs().sum()) for n, p in teacher.llm.named_parameters() if "lora_B" in n) > 0
    for name in ("bev", "ego", "agent", "map"):
        assert _grad_norm(teacher.adapters.adapters[name]) > 0, name
    for module in (teacher.plan_head, teacher.recon_head, teacher.future_heads, teacher.agent_encoder, teacher.masker):
        assert _grad_norm(module) > 0, type(module).__name__
    assert teacher.plan_query.grad.abs().sum() > 0
    # The scene encoder (through the BEAM tokens) and the planner (through its feature) are trained too ...
    assert beam.bev.grad.abs().sum() > 0 and beam.agents.grad.abs().sum() > 0
    assert planner_feature.grad.abs().sum() > 0
    # ... but never through the future targets, which are the encoder's detached tokens.
    assert all(t.grad is None for t in future.values())
    teacher.zero_grad(set_to_none=True)


def test_each_term_routes_gradients_only_where_it_should(teacher) -> None:
    beam = make_beam(2, requires_grad=True)
    prompts = teacher.encode_prompts(QUESTIONS, ANSWERS)
    g = torch.Generator().manual_seed(0)

    teacher.zero_grad(set_to_none=True)
    out = teacher(beam, prompts, mask_bev=True, generator=g)
    reconstruction_loss(out.recon, out.recon_target).backward()
    assert _grad_norm(teacher.recon_head) > 0 and _grad_norm(teacher.adapters.adapters["bev"]) > 0
    assert _grad_norm(teacher.plan_head) == 0 and _grad_norm(teacher.future_heads) == 0
    _assert_base_untouched(teacher)

    teacher.zero_grad(set_to_none=True)
    planner_feature = torch.randn(2, PLANNER_DIM, requires_grad=True)
    out = teacher(beam, prompts)
    teacher.distiller(planner_feature, out.plan_feature).backward()
    assert planner_feature.grad.abs().sum() > 0
    # Teacher side detached by default: nothing in the MLLM moves.
    assert all(p.grad is None for p in teacher.parameters())

    teacher.zero_grad(set_to_none=True)
    out = teacher(beam, prompts)
    out.lm_loss.backward()
    assert _grad_norm(teacher.adapters) > 0 and _grad_norm(teacher.plan_head) == 0
    assert sum(float(p.grad.abs().sum()) for n, p in teacher.llm.named_parameters() if "lora_B" in n) > 0
    _assert_base_untouched(teacher)
    teacher.zero_grad(set_to_none=True)


def test_losses_are_zero_where_they_must_be() -> None:
    x = torch.randn(2, 5, 8, requires_grad=True)
    assert reconstruction_loss(x, x.detach().clone()) == 0
    f = torch.randn(4, 16)
    assert kl_divergence(f, f.clone(), temperature=2.0).abs() < 1e-7
    traj = torch.randn(2, 3, 6, 2)
    gt = traj[torch.arange(2), torch.tensor([0, 2])].clone()
    mask = torch.ones(2, 6, dtype=torch.bool)
    mask[1, 4:] = False
    gt[1, 4:] = 1e6  # invalid steps never count
    assert planning_l1(traj, torch.tensor([0, 2]), gt, mask) == 0
    assert planning_l1(traj, torch.tensor([0, 2]), gt, torch.zeros(2, 6, dtype=torch.bool)) == 0
    pred = {1: torch.randn(2, 4, 8), 2: torch.randn(2, 4, 8)}
    assert future_loss(pred, {k: v.clone() for k, v in pred.items()}) == 0
    assert (
        future_loss(
            pred,
            {k: v + 1 for k, v in pred.items()},
            {1: torch.tensor([False, False]), 2: torch.tensor([False, False])},
        )
        == 0
    )
    logits = torch.randn(1, 5, 11)
    assert vqa_loss(logits, torch.full((1, 5), -100)) == 0
    labels = torch.tensor([[-100, -100, 3, 4, 5]])
    ref = F.cross_entropy(logits[0, 1:4], torch.tensor([3, 4, 5]))
    assert torch.allclose(vqa_loss(logits, labels), ref)


def test_scene_edit_loss_l1_and_collision_hinge() -> None:
    edits = _edits()
    targets = edited_plan_targets(edits)
    label = targets["ego_future"]
    perfect = label.unsqueeze(1).repeat(1, 3, 1, 1)
    assert scene_edit_loss(perfect, torch.tensor([2, 2]), targets) == 0  # label keeps clear of the added car
    # Driving straight through the stopped car costs more than the L1 alone.
    through = perfect.clone()
    through[0, 2] = torch.stack([torch.arange(1, 7) * 4.0, torch.zeros(6)], dim=1)
    l1_only = planning_l1(through, torch.tensor([2, 2]), label, targets["ego_mask"])
    assert scene_edit_loss(through, torch.tensor([2, 2]), targets) > l1_only
    hinge = edit_collision_hinge(torch.zeros(1, 1, 2), torch.tensor([[[30.0, 0.0]]]), torch.tensor([[4.6, 1.9]]), 1.0)
    assert hinge.item() == 0.0


def test_kl_direction_temperature_and_projection() -> None:
    torch.manual_seed(0)
    t, s = torch.randn(3, 8), torch.randn(3, 8)
    p_t, p_s = F.softmax(t / 2.0, -1), F.softmax(s / 2.0, -1)
    manual = (p_t * (p_t.log() - p_s.log())).sum(-1).mean() * 4.0
    assert torch.allclose(kl_divergence(t, s, 2.0), manual, atol=1e-6)
    assert torch.allclose(kl_divergence(t, s, 2.0, scale_by_t2=False), manual / 4.0, atol=1e-6)

    distiller = FeatureDistiller(planner_dim=8, mllm_dim=12, cfg=DistillConfig())
    planner, mllm = torch.randn(3, 8, requires_grad=True), torch.randn(3, 12, requires_grad=True)
    loss = distiller(planner, mllm)
    assert torch.isfinite(loss) and loss > 0
    loss.backward()
    assert planner.grad.abs().sum() > 0 and mllm.grad is None  # student = planner; teacher detached
    assert distiller.project.weight.grad.abs().sum() > 0  # the width bridge still learns
    # Student = MLLM reverses the flow.
    reverse = FeatureDistiller(8, 8, DistillConfig(student="mllm"))
    a, b = torch.randn(3, 8, requires_grad=True), torch.randn(3, 8, requires_grad=True)
    reverse(a, b).backward()
    assert a.grad is None and b.grad.abs().sum() > 0
    assert torch.allclose(reverse(a, b), kl_divergence(a, b, 1.0))


def test_dual_mode_is_the_elementwise_max_fed_to_the_planner_head(teacher) -> None:
    torch.manual_seed(0)
    planner = PlanningTransformer(PlannerConfig(feature_dim=PLANNER_DIM), SCENE_DIM, (-30.0, 30.0), (-15.0, 15.0))
    a, b = torch.randn(4, PLANNER_DIM), torch.randn(4, PLANNER_DIM)
    fused = dual_mode_feature(a, b)
    assert torch.equal(fused, torch.where(a >= b, a, b))
    assert torch.equal(dual_mode_plan(a, b, planner.decode), planner.decode(torch.maximum(a, b)))
    assert torch.equal(teacher.dual_plan(a, b, planner.decode), planner.decode(torch.maximum(a, b)))
    proj = torch.nn.Linear(6, PLANNER_DIM)
    c = torch.randn(4, 6)
    assert torch.equal(dual_mode_plan(a, c, planner.decode, proj), planner.decode(torch.maximum(a, proj(c))))
    with pytest.raises(ValueError):
        dual_mode_feature(a, c)


def test_two_stage_schedule_freezes_lora_then_releases_it(teacher) -> None:
    cfg = teacher.cfg
    old = cfg.two_stage
    cfg.two_stage = dataclasses.replace(old, enabled=True, align_steps=10)
    try:
        assert teacher.stage_for_step(0) == "align" and teacher.stage_for_step(10) == "finetune"
        teacher.set_stage("align")
        teacher.zero_grad(set_to_none=True)
        out = teacher(make_beam(1), teacher.encode_prompts(QUESTIONS[:1], ANSWERS[:1]))
        out.lm_loss.backward()
        assert all(p.grad is None and not p.requires_grad for p in lora_parameters(teacher.llm))
        assert _grad_norm(teacher.adapters) > 0
        _assert_base_untouched(teacher)
    finally:
        teacher.set_stage("finetune")
        cfg.two_stage = old
        teacher.zero_grad(set_to_none=True)
    assert all(p.requires_grad for p in lora_parameters(teacher.llm))
    kept = teacher.trainable_state_dict()
    assert any("lora_" in k for k in kept) and any(k.startswith("adapters.") for k in kept)
    assert not any(k.startswith("llm.") and "lora_" not in k for k in kept)


def test_attention_distillation_option(teacher) -> None:
    b, h, length = 1, 2, 6
    text = torch.zeros(b, length, dtype=torch.bool)
    text[:, 4:] = True
    vision = torch.zeros(b, length, dtype=torch.bool)
    vision[:, 1:3] = True
    a = [torch.softmax(torch.randn(b, h, length, length), -1) for _ in range(3)]
    assert attention_distill_loss(a, [x.clone() for x in a], [(0, 0), (-1, -1)], text, vision) == 0
    other = [x.clone() for x in a]
    other[0][:, :, 4, 1] += 0.5
    assert attention_distill_loss(a, other, [(0, 0)], text, vision) > 0
    assert attention_distill_loss(a, other, [(-1, -1)], text, vision) == 0  # only chosen layers count
    # The teacher returns real attention maps with eager attention, and its masks pick text rows / BEAM columns.
    teacher.llm.get_base_model().set_attn_implementation("eager")
    try:
        prompts = teacher.encode_prompts(QUESTIONS[:1], ANSWERS[:1])
        with torch.no_grad():
            out = teacher(make_beam(1), prompts, output_attentions=True)
    finally:
        teacher.llm.get_base_model().set_attn_implementation("sdpa")
    n = prompts.input_ids.shape[1]
    assert len(out.attentions) == 30 and out.attentions[0].shape == (1, 9, n, n)
    text_mask, vision_mask = teacher.attention_masks(prompts)
    assert int(vision_mask.sum()) == sum(teacher.cfg.adapters.queries.values())
    assert not (text_mask & vision_mask).any() and text_mask.any()
    assert attention_distill_loss(out.attentions, out.attentions, [(0, 0), (-2, -2)], text_mask, vision_mask) == 0


def test_attention_distillation_against_the_frozen_base_llm() -> None:
    """The option as stage 2 runs it: DimaTeacher.losses without reference maps computes them from the base LLM."""
    cfg = tiny_config(
        llm=LLMConfig(attn_implementation="eager", lora=LoraSettings(rank=4, alpha=8.0, dropout=0.0)),
        attention_distill=AttentionDistillConfig(enabled=True),
    )
    teacher = make_teacher(cfg)
    assert attn_implementation(teacher.llm) == "eager"  # the config's kernel, although the cached base is sdpa
    assert attn_implementation(base_llm()[0]) == "sdpa"  # ... and the shared base was not switched
    beam = make_beam(1, requires_grad=True)
    planner_feature = torch.randn(1, PLANNER_DIM, requires_grad=True)
    prompts = teacher.encode_prompts(QUESTIONS[:1], ANSWERS[:1])
    args = (beam, prompts, torch.tensor([2]), torch.randn(1, 6, 2), torch.ones(1, 6, dtype=torch.bool))

    def losses():  # a stage-2 call (no reference_attentions); the same BEV masking every time
        return teacher.losses(*args, planner_feature=planner_feature, generator=torch.Generator().manual_seed(0))

    # Step 0: a fresh LoRA (B = 0) adds exactly nothing, so the trained LLM is its own reference.
    total, terms, out = losses()
    assert set(terms) == {"vqa", "plan", "recon", "distill", "attention_distill"}
    assert terms["attention_distill"].item() == pytest.approx(0.0, abs=1e-12)
    assert torch.allclose(total, sum(terms.values()))  # weight 1.0
    base_maps = [a.detach() for a in out.attentions]
    # A trained LoRA moves the attention away from the base: the term becomes positive ...
    with torch.no_grad():
        g = torch.Generator().manual_seed(1)
        for name, p in teacher.llm.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    teacher.zero_grad(set_to_none=True)
    total, terms, out = losses()
    value = terms["attention_distill"]
    assert torch.isfinite(value) and value > 0 and torch.allclose(total, sum(terms.values()))
    # ... while the reference still is the base LLM's maps (LoRA disabled), kept only at the layers the loss reads.
    reference = teacher.reference_attention_maps(out.inputs_embeds, prompts.attention_mask, [0, -2])
    assert reference[1] is None and reference[-1] is None
    assert torch.allclose(reference[0], base_maps[0], atol=1e-6)
    assert torch.allclose(reference[-2], base_maps[-2], atol=1e-6)
    # Gradient projection gets a real row for it on the shared student (here its outputs: BEAM tokens, feature).
    rows = GradientProjector(["distill", "attention_distill"]).term_gradients(terms, [planner_feature, beam.bev])
    assert bool((rows.abs().sum(dim=1) > 0).all())
    # Its gradient trains LoRA up to the penultimate layer's attention, reaches the shared student through the
    # BEAM tokens, and never touches the frozen base or the planner feature.
    value.backward()
    _assert_base_untouched(teacher)
    lora = {n: p for n, p in teacher.llm.named_parameters() if "lora_" in n}
    assert all(p.requires_grad for p in lora.values())  # peft's disable_adapter() flags were restored
    for kind in ("lora_A", "lora_B"):
        assert sum(float(p.grad.abs().sum()) for n, p in lora.items() if kind in n and p.grad is not None) > 0
    assert all(p.grad is None for n, p in lora.items() if ".layers.29." in n)  # layer 29 cannot change 28's maps
    assert beam.bev.grad.abs().sum() > 0 and planner_feature.grad is None
    # The two-stage align stage keeps LoRA frozen through the reference pass.
    teacher.set_stage("align")
    try:
        with torch.no_grad():
            losses()
        assert not any(p.requires_grad for p in lora.values())
    finally:
        teacher.set_stage("finetune")
    # Layer pairs the LLM does not have are refused when the teacher is built.
    teacher.cfg.attention_distill.layers = [(0, 30)]
    with pytest.raises(ValueError, match=r"attention_distill.layers \[\(0, 30\)\]: this LLM has 30 decoder"):
        teacher._check_attention_layers()


def test_attention_distillation_config_needs_eager_attention_and_lora(tmp_path) -> None:
    from dima_core.training.stage2 import TaskSwitches, enabled_terms

    def load(section: dict) -> MllmConfig:  # the YAML loader's path: errors name the file and the key
        path = tmp_path / "teacher.yaml"
        path.write_text(yaml.safe_dump({"mllm": section}))
        return load_mllm_config(str(path))

    assert not load_mllm_config("smollm2_135m").attention_distill.enabled
    on = {"enabled": True}
    cases = [
        (
            {"attention_distill": on},
            r"teacher.yaml: key 'mllm': attention_distill.enabled needs llm.attn_implementation: eager .*got "
            r"llm.attn_implementation: sdpa",
        ),
        (
            {"attention_distill": on, "llm": {"attn_implementation": "eager", "lora": {"enabled": False}}},
            "needs llm.lora.enabled",
        ),
        (
            {"attention_distill": {"enabled": True, "layers": []}, "llm": {"attn_implementation": "eager"}},
            "key 'mllm.attention_distill': .*at least one",
        ),
        ({"attention_distill": {"reference": "llava"}}, "key 'mllm.attention_distill.reference'"),
    ]
    for section, message in cases:
        with pytest.raises(ConfigError, match=message):
            load(section)
    ok = load({"attention_distill": on, "llm": {"attn_implementation": "eager"}})
    assert ok.attention_distill.reference == "base"
    # Stage 2 logs the term (train/loss/mllm_attention_distill) whenever the option is on.
    assert "attention_distill" in enabled_terms(TaskSwitches(), ok)
    assert "attention_distill" not in enabled_terms(TaskSwitches(), MllmConfig())


def test_total_loss_weights() -> None:
    terms = {"vqa": torch.tensor(2.0), "recon": torch.tensor(3.0)}
    w = dataclasses.replace(LossWeights(), vqa=0.5, recon=2.0)
    assert total_loss(terms, w).item() == pytest.approx(7.0)
    with pytest.raises(ValueError):
        total_loss({}, LossWeights())


def test_answer_token_loss_equals_the_full_logits_loss_and_its_gradient():
    torch.manual_seed(0)
    head = torch.nn.Linear(8, 11, bias=False)
    hidden = torch.randn(2, 6, 8, requires_grad=True)
    labels = torch.full((2, 6), -100)
    labels[0, 2:5] = torch.tensor([3, 4, 5])
    labels[1, 4:] = torch.tensor([1, 7])
    full = vqa_loss(head(hidden), labels)
    (g_full,) = torch.autograd.grad(full, hidden)
    fast = answer_token_loss(hidden, labels, head)
    (g_fast,) = torch.autograd.grad(fast, hidden)
    assert torch.allclose(fast, full, atol=1e-6) and torch.allclose(g_fast, g_full, atol=1e-6)
    # Nothing supervised: a zero that still backpropagates.
    none = answer_token_loss(hidden, torch.full((2, 6), -100), head)
    assert none.item() == 0.0 and none.requires_grad
