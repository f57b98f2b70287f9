"""`dima bench distill`'s protocol for one seed, end to end on the session's synthetic world (micro planner, tiny
random Llama, every stage capped at 4 steps): the compute-matched control makes exactly the DiMA arm's planner
updates on the same samples, each run's cost is recorded, and the teacher is scored at the handover and at the end
through the `dima eval --mode mllm` and `dima eval-vqa` code paths."""

from __future__ import annotations

import math

import pytest
import torch

from benchmarks import distill as bench_distill
from benchmarks.distill_protocol import ARM_A, Protocol, run_seed, rung_name
from distill_helpers import stage2_config as helper_stage2_config
from distill_helpers import tiny_llm, tiny_tokenizer

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.integration]


class TinyLLM:
    """The :class:`~benchmarks.distill_protocol.SharedLLM` interface around the tests' tiny random Llama."""

    def __init__(self) -> None:
        self.tokenizer = tiny_tokenizer()

    def copy(self):
        return tiny_llm(self.tokenizer), self.tokenizer


def test_one_seed_of_the_compute_matched_protocol(synth_world, micro_model, micro_index, tmp_path):
    torch.set_num_threads(1)
    # The tests' stage-2 YAML (micro teacher) and the tiny stage-1 YAML, both on the micro planner.
    stage2_yaml = tmp_path / "stage2.yaml"
    cfg = helper_stage2_config(tmp_path / "s2", synth_world, micro_model, micro_index)
    from dima_core.config import save_config

    save_config(cfg, stage2_yaml)
    common = {
        "device": "cpu",
        "max_steps": 4,
        "model_config": str(micro_model),
        "tensorboard": False,
        "progress_bar": False,
        "validate_every_epochs": 0,
        "checkpoint_interval": 0,
        "data": {
            "train_split": "train",
            "val_split": None,
            "batch_size": 1,
            "dataset": {
                "dataroot": str(synth_world.dataroot),
                "version": synth_world.version,
                "index_path": str(micro_index),
            },
        },
    }
    protocol = Protocol(
        stage1_config="config/train/stage1_dima_tiny.yaml",
        stage2_config=str(stage2_yaml),
        common=common,
        stage1_epochs=1,
        stage2_epochs=1,
        val_split="val",
        device="cpu",
        joint={
            "teacher_warmup": {"steps": 2},
            "distill_ramp_steps": 2,
            "distill_loss": "l1",
            "planner_lr": {"schedule": "constant", "multiplier": 0.5},
            "diagnostics": {"every": 0},
        },
        teacher_eval="last",
        vqa_frames=1,
        vqa_max_new_tokens=3,
        flop_steps=1,
        shared_llm=TinyLLM(),
    )
    name, tokens, tasks = bench_distill.LADDER[-1]
    out = run_seed(protocol, seed=0, seed_dir=tmp_path / "seed0", rungs=[(name, tokens, tasks)], work=tmp_path)
    a, b = out[ARM_A], out[rung_name(name)]

    # Compute-matched: the same planner updates on the same number of samples.
    assert a["cost"]["planner_steps"] == b["cost"]["planner_steps"] == 4 + (4 - 2)
    assert a["cost"]["planner_samples"] == b["cost"]["planner_samples"] == 6
    assert b["cost"]["steps"] == 8 and b["cost"]["samples"] == 8  # + the two warm-up steps of the teacher
    runs_b = b["cost"]["runs"]
    assert runs_b["stage2"]["steps_by_phase"] == {"warmup": 2, "joint": 2}
    assert runs_b["stage1"] == a["cost"]["runs"]["stage1"]  # one shared stage-1 run
    for cost in (a["cost"], b["cost"]):
        assert cost["flops"] > 0 and cost["wall_s"] > 0
    assert runs_b["stage2"]["flops_per_step"]["joint"] > runs_b["stage2"]["flops_per_step"]["warmup"] > 0

    # Both arms evaluated vision-only in both conventions.
    for arm in (a, b):
        assert math.isfinite(arm["metrics"]["overall/vad/l2"]) and arm["metrics"]["overall/n"] > 0
    # The teacher at the handover (step 2) and at the end (step 4): MLLM-only planning and VQA scores.
    teacher = b["teacher"]
    assert teacher["handover"]["step"] == 2 and teacher["end"]["step"] == 4
    for when in ("handover", "end"):
        assert math.isfinite(teacher[when]["planning"]["overall/vad/l2"])
        vqa = teacher[when]["vqa"]
        assert vqa["n_frames"] == 1 and vqa["n_questions"] > 0 and 0.0 <= vqa["accuracy"] <= 1.0
    assert teacher["handover"]["planning"] != teacher["end"]["planning"]  # the teacher trained in between
    assert (tmp_path / "seed0" / "B_stage2_rung0" / "teacher_handover" / "teacher_quality.json").is_file()
    assert a["teacher"] == {}
    refs = protocol.references
    assert math.isfinite(refs["constant_velocity"]["overall/vad/l2"]) and 0.0 <= refs["blind_vqa"]["accuracy"] <= 1


def test_protocol_from_a_given_planner_with_closed_loop_scores(synth_world, micro_model, micro_index, tmp_path):
    """``--init``: no stage-1 run, both arms start from the given planner; ``--stage2-steps`` caps stage 2 only;
    ``--teacher-plan-frames`` scores the teacher's planning on a few frames; every arm drives the simulator."""
    from benchmarks.distill_closed_loop import ClosedLoopSpec
    from benchmarks.distill_protocol import train_stage1
    from benchmarks.distill_report import section
    from dima_core.config import save_config

    torch.set_num_threads(1)
    stage2_yaml = tmp_path / "stage2.yaml"
    save_config(helper_stage2_config(tmp_path / "s2", synth_world, micro_model, micro_index), stage2_yaml)
    common = {
        "device": "cpu",
        "max_steps": 2,
        "model_config": str(micro_model),
        "tensorboard": False,
        "progress_bar": False,
        "validate_every_epochs": 0,
        "checkpoint_interval": 0,
        "data": {
            "train_split": "train",
            "val_split": None,
            "batch_size": 1,
            "dataset": {
                "dataroot": str(synth_world.dataroot),
                "version": synth_world.version,
                "index_path": str(micro_index),
            },
        },
    }
    protocol = Protocol(
        stage1_config="config/train/stage1_dima_tiny.yaml",
        stage2_config=str(stage2_yaml),
        common=common,
        stage1_epochs=1,
        stage2_epochs=1,
        val_split="val",
        device="cpu",
        joint={"teacher_warmup": {"steps": 1}, "diagnostics": {"every": 0}},
        teacher_eval="last",
        vqa_frames=1,
        vqa_max_new_tokens=2,
        flop_steps=1,
        shared_llm=TinyLLM(),
        stage2_max_steps=3,
        teacher_plan_frames=2,
        closed_loop=ClosedLoopSpec(episodes=1, seed=1000, scenarios=("cruise",), seconds=4.0),
    )
    given, _ = train_stage1(protocol, 0, tmp_path / "given")  # stands in for a shipped planner
    protocol.init = str(given)
    name, tokens, tasks = bench_distill.LADDER[2]  # "+ distillation": one LLM pass per step
    out = run_seed(protocol, seed=0, seed_dir=tmp_path / "seed0", rungs=[(name, tokens, tasks)], work=tmp_path)
    a, b = out[ARM_A], out[rung_name(name)]

    assert not (tmp_path / "seed0" / "stage1" / "latest").exists()  # no stage-1 run of its own
    assert "stage1" not in a["cost"]["runs"] and "stage1" not in b["cost"]["runs"]
    # Stage 2 capped at 3 steps (common max_steps=2 applies to stage 1 only), 1 of them the teacher's warm-up.
    assert b["cost"]["steps"] == 3 and a["cost"]["planner_steps"] == b["cost"]["planner_steps"] == 2
    assert b["teacher"]["end"]["planning"]["overall/n"] == 2  # --teacher-plan-frames
    for arm in (a, b):
        closed = arm["closed_loop"]
        assert closed["seeds"] == [1000] and set(closed["groups"]) == {"cruise"}
        assert closed["overall"]["num_episodes"] == 1 and 0.0 <= closed["overall"]["score"] <= 1.0
    assert list((tmp_path / "seed0" / "A_planner_only" / "closed_loop" / "episodes").glob("cruise_s1000_*.png"))

    args = {
        "seeds": [0],
        "epochs": 1,
        "stage2_epochs": 1,
        "val_split": "val",
        "init": str(given),
        "stage2_steps": 3,
        "teacher_warmup": 1,
        "closed_loop_episodes": 1,
        "closed_loop_seed": 1000,
    }
    text = section(
        [
            {
                "args": args,
                "results": {k: [v["metrics"]] for k, v in out.items()},
                "closed_loop": {k: [v["closed_loop"]] for k, v in out.items()},
            }
        ]
    )
    assert "Closed loop" in text and "cruise score" in text and "Δ score vs (A), paired" in text
    assert f"start from the trained planner `{given}`" in text and "Stage 2 stops after 3 steps" in text
