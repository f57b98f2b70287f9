"""`dima bench distill`'s report section on hand-written per-seed reports (no training): the paired table of each
DiMA arm minus the compute-matched arm, the cost table, the teacher table with its references, the protocol line,
the few-seeds warning, and merging the new fields across per-seed reports."""

from __future__ import annotations

import argparse

import pytest

from benchmarks import distill as bench_distill
from benchmarks.distill_protocol import ARM_A
from benchmarks.distill_report import merge_reports, paired_table, section

B = "(B) DiMA: + scene editing (full DiMA)"


def _metrics(l2: float, col: float = 0.5) -> dict:
    return {
        "overall/vad/l2": l2,
        "overall/vad/collision": col,
        "overall/uniad/l2": 2 * l2,
        "overall/uniad/collision": col,
        "overall/n": 10.0,
        "overtake/vad/l2": l2 + 1.0,
        "overtake/vad/collision": 0.0,
        "overtake/n": 3.0,
    }


def _cost(wall_s: float, planner_steps: int, steps: int, flops: float) -> dict:
    return {
        "wall_s": wall_s,
        "steps": steps,
        "planner_steps": planner_steps,
        "samples": 2 * steps,
        "planner_samples": 2 * planner_steps,
        "flops": flops,
        "runs": {},
    }


def _teacher(l2_handover: float, l2_end: float, accuracy: float) -> dict:
    def at(step: int, l2: float) -> dict:
        return {
            "step": step,
            "planning": {"overall/vad/l2": l2, "overall/vad/collision": 1.0},
            "vqa": {"accuracy": accuracy, "language_score": 0.2, "match": 10.0, "final_score_without_gpt": 0.3},
        }

    return {"handover": at(100, l2_handover), "end": at(300, l2_end)}


def _report(seeds: list[int], a: list[float], b: list[float]) -> dict:
    args = {
        "dataroot": "/w",
        "version": "v1.0-synth",
        "stage1_config": "s1.yaml",
        "stage2_config": "s2.yaml",
        "model_config": None,
        "epochs": 4,
        "stage2_epochs": 1,
        "rungs": "full",
        "train_split": "train",
        "val_split": "val",
        "batch_size": None,
        "max_steps": None,
        "seeds": seeds,
        "teacher_warmup": 100,
        "warmup_terms": None,
        "distill_ramp": 50,
        "distill_loss": "l1",
        "planner_lr": "constant",
        "planner_lr_multiplier": 0.01,
        "vqa_frames": 8,
    }
    return {
        "args": args,
        "results": {ARM_A: [_metrics(v) for v in a], B: [_metrics(v) for v in b]},
        "costs": {ARM_A: [_cost(600.0, 250, 250, 1e12) for _ in a], B: [_cost(1200.0, 250, 350, 5e12) for _ in b]},
        "teacher": {ARM_A: [{} for _ in a], B: [_teacher(3.0, 2.0, 0.4) for _ in b]},
        "references": {
            "constant_velocity": _metrics(2.5),
            "blind_vqa": {"accuracy": 0.1, "language_score": 0.05, "match": 2.0, "final_score_without_gpt": 0.08},
        },
        "flop_method": "counted",
        "elapsed_s": 60.0,
        "command": "dima bench distill ...",
        "machine": "box",
    }


def test_paired_table_is_each_arm_minus_the_compute_matched_one_seed_by_seed():
    reports = [_report([0], [1.0], [0.75]), _report([1], [1.0], [1.25]), _report([2], [2.0], [1.5])]
    results = merge_reports(reports)
    table = paired_table(results, [0, 1, 2])
    row = next(line for line in table.splitlines() if line.startswith(f"| {B}"))
    # differences -0.25, +0.25, -0.5: mean -1/6, sample std sqrt(((-1/12)^2 + (5/12)^2 + (-1/3)^2) / 2) = 0.382
    assert "-0.167 ± 0.382 (2/3 better; -0.250, +0.250, -0.500)" in row
    assert "Δ overtake L2 VAD" in table.splitlines()[0]
    assert ARM_A not in "".join(table.splitlines()[2:])  # the baseline is not compared with itself


def test_section_has_the_costs_the_teacher_and_the_protocol():
    reports = [_report([0], [1.0], [0.75]), _report([1], [1.0], [1.25]), _report([2], [2.0], [1.5])]
    text = section(reports)
    assert (
        "Teacher warm-up: 100 steps (terms the config's); distillation ramp: 50 steps; distillation loss: l1; "
        "planner lr: constant x 0.01" in text
    )
    assert f"| {ARM_A} | 10.0 ± 0.0 | 250 | 500 | 250 | 1e+12 |" in text
    assert f"| {B} | 20.0 ± 0.0 | 250 | 500 | 350 | 5e+12 |" in text  # same planner updates and samples as (A)
    assert f"| {B} | handover (step 100) | 3.000 ± 0.000 | 1.000 ± 0.000 | 0.400 ± 0.000 |" in text
    assert f"| {B} | end (step 300) | 2.000 ± 0.000 |" in text
    assert "| reference: constant velocity / blind answers | - | 2.500 | 0.500 | 0.100 |" in text
    assert "Only" not in text  # three seeds: no warning
    assert "Only 1 seed(s)" in section(reports[:1])


def test_merging_keeps_costs_and_teacher_aligned_with_the_seeds_and_refuses_other_protocols():
    a, b = _report([0], [1.0], [0.5]), _report([1], [2.0], [1.0])
    assert [c["wall_s"] for c in merge_reports([a, b], "costs")[B]] == [1200.0, 1200.0]
    assert len(merge_reports([a, b], "teacher")[B]) == 2
    other = _report([2], [1.0], [1.0])
    other["args"]["distill_loss"] = "kl"
    with pytest.raises(ValueError, match="distill_loss 'kl' != 'l1'"):
        merge_reports([a, other])
    old = {"args": {**a["args"], "seeds": [3]}, "results": a["results"]}  # a report without costs or teacher
    assert merge_reports([a, old], "costs")[B][1] is None


def test_protocol_arguments_become_joint_overrides():
    parser = bench_distill.add_parser(argparse.ArgumentParser().add_subparsers())
    args = parser.parse_args(
        [
            "--dataroot",
            "/w",
            "--teacher-warmup",
            "200",
            "--distill-ramp",
            "50",
            "--distill-loss",
            "cosine",
            "--planner-lr",
            "cosine",
            "--warmup-terms",
            "vqa",
            "plan",
        ]
    )
    assert bench_distill.joint_overrides(args) == {
        "teacher_warmup": {"steps": 200, "terms": ["vqa", "plan"]},
        "distill_ramp_steps": 50,
        "distill_loss": "cosine",
        "planner_lr": {"schedule": "cosine"},
    }
    assert bench_distill.joint_overrides(parser.parse_args(["--dataroot", "/w"])) == {}
