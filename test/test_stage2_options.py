"""Stage 2 with the Drive-KD and DriVLM options on (micro planner, SmolLM2, the session's synthetic world): two
training steps with gradient projection over the planner, (f), two multi-teacher terms and the attention
distillation against the frozen base LLM, and the general QA mix at ratio 1. The student (scene encoder + planner)
moves, the frozen LLM base never gets a gradient, every new term and the projection's statistics are logged, the
attention term is 0 with the fresh LoRA and positive once LoRA has moved, and the QA pairs come from the general
file in training only."""

from __future__ import annotations

import argparse
import math

import pytest
import torch

from dima_core.models.mllm.config import (
    AttentionDistillConfig,
    GradientProjectionConfig,
    HiddenStateTeacher,
    MultiTeacherConfig,
)
from stage2_helpers import cached_llm, micro_mllm_config, stage2_cli_args, write_stage2_yaml
from training_fixtures import REPO_ROOT

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.integration]

GENERAL_QA = REPO_ROOT / "test" / "data" / "general_qa_example.jsonl"
PROJECTED = ["planner", "distill", "distill_perception", "distill_reasoning", "attention_distill"]


def test_projected_step_moves_the_student_not_the_llm_base(synth_world, micro_model, micro_index, tmp_path) -> None:
    from dima_core.commands.train import add_parser, resolve_config
    from dima_core.data.general_qa import load_general_qa
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage2 import build_stage2_trainer, stage2_collate

    mllm = micro_mllm_config(attn_implementation="eager")  # the attention maps need eager attention
    mllm.attention_distill = AttentionDistillConfig(enabled=True)
    mllm.multi_teacher = MultiTeacherConfig(
        enabled=True,
        teachers=[HiddenStateTeacher(name="perception", layer=1), HiddenStateTeacher(name="reasoning", layer=-16)],
    )
    mllm.gradient_projection = GradientProjectionConfig(enabled=True, terms=list(PROJECTED), modules=["planner"])
    config_yaml = write_stage2_yaml(
        tmp_path / "cfg", mllm, general_qa={"path": str(GENERAL_QA), "ratio": 1.0}, scene_edit_probability=0.0
    )
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = parser.parse_args(
        stage2_cli_args(synth_world, config_yaml, micro_model, micro_index, tmp_path / "run", "--no-tensorboard")
    )
    llm, tokenizer = cached_llm()
    trainer = build_stage2_trainer(resolve_config(args), DistContext(), llm=llm, tokenizer=tokenizer)
    model = trainer.model
    model.train()  # as Trainer.fit does: the mix and the projection apply to training steps only
    before = {n: p.detach().clone() for n, p in model.planner.named_parameters()}

    # The general QA mix: every training sample's pair comes from the file at ratio 1; evaluation keeps driving QA.
    step = trainer.step_fn
    batch = stage2_collate([trainer.dataset[0]])
    general_questions = {q for q, _ in load_general_qa(GENERAL_QA)}
    assert set(step.select_qa(batch)[0]) <= general_questions
    assert not set(step.select_qa(batch, mix_general=False)[0]) & general_questions

    logged, _ = trainer.train_step(batch)  # one optimiser step (no checkpoint: fit() is tested elsewhere)
    for key in (
        "mllm_distill",
        "mllm_distill_perception",
        "mllm_distill_reasoning",
        "mllm_attention_distill",
        "gradproj_conflicts",
        "gradproj_min_cosine",
        "gradproj_skipped",
    ):
        assert key in logged and math.isfinite(logged[key]), key
    assert logged["gradproj_skipped"] == 0.0 and -1.0 <= logged["gradproj_min_cosine"] <= 1.0
    assert logged["mllm_distill_perception"] > 0 and logged["mllm_distill_reasoning"] > 0
    # The fresh LoRA (B = 0) leaves the LLM equal to its base, the attention reference; once the step has moved
    # LoRA, the trained LLM's text->vision attention differs from the base's and the term is live.
    assert logged["mllm_attention_distill"] == 0.0
    second, _ = trainer.train_step(batch)
    assert second["mllm_attention_distill"] > 0 and math.isfinite(second["mllm_attention_distill"])

    changed = [n for n, p in model.planner.named_parameters() if not torch.equal(p, before[n])]
    assert any(n.startswith("backbone.") for n in changed) and any(n.startswith("planner.") for n in changed)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.teacher.multi_teacher.parameters())
    for name, p in model.teacher.llm.named_parameters():
        if "lora_" not in name:
            assert not p.requires_grad and p.grad is None, f"frozen LLM base weight {name} got a gradient"
