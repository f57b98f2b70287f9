"""The stage-2 protocol end to end (micro planner, tiny random Llama, the session's synthetic world):

- a teacher warm-up leaves the planner bit-identical (weights and BatchNorm statistics) with no AdamW state while
  the teacher trains, and trains no distillation; at the handover the planner trains, the distillation ramps up;
- the diagnostics records in metrics.jsonl (phase, scale, both lrs, term sizes, gradient cosines, feature distance);
- stopping inside the warm-up and resuming reproduces the uninterrupted run bit for bit (losses, weights, records);
- the compute-matched planner-only control starts from the same stage-1 weights at the handover, sees the same
  batches in the same order and runs at the same planner lr as the DiMA arm's planner.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from distill_helpers import build_trainer, metrics_records, stage2_config

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.integration]

WARMUP, RAMP, STEPS = 2, 2, 4
JOINT = {
    "teacher_warmup": {"steps": WARMUP, "terms": ["vqa", "plan"]},
    "distill_ramp_steps": RAMP,
    "diagnostics": {"every": 1, "grad_cosine": True},
    "scene_edit_probability": 0.0,
    # Future BEV targets cost two extra encoder passes a step and nothing this test checks needs them.
    "tasks": {"vqa": True, "llm_plan": True, "distill": True, "recon": True, "future": False, "scene_edit": True},
}


def _planner_state(trainer) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in trainer.model.planner.state_dict().items()}


def _record_tokens(trainer, planner_at: int = -1) -> tuple[list[list[str]], dict]:
    """Instrument ``trainer.train_step`` to keep each step's sample tokens (the data order), and the planner's
    weights when step ``planner_at`` starts."""
    seen: list[list[str]] = []
    planner: dict = {}
    original = trainer.train_step
    module = trainer.model.planner if hasattr(trainer.model, "teacher") else trainer.model  # joint or planner

    def train_step(batch):
        seen.append(list(batch["token"]))
        if trainer.step == planner_at:
            planner.update({k: v.detach().clone() for k, v in module.state_dict().items()})
        return original(batch)

    trainer.train_step = train_step
    return seen, planner


@pytest.fixture(scope="module")
def runs(synth_world, micro_model, micro_index, tmp_path_factory):
    """The uninterrupted 5-step warm-up run and the same run stopped after 1 step, then resumed."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("warmup")
    full_cfg = dataclasses.replace(
        stage2_config(root / "full", synth_world, micro_model, micro_index, **JOINT), max_steps=STEPS
    )
    full = build_trainer(full_cfg)
    initial_planner = _planner_state(full)
    planner_at_handover = {}
    original = full.train_step

    def train_step(batch):  # snapshot the planner and AdamW when the warm-up is over
        if full.step == WARMUP:
            planner_at_handover["state"] = _planner_state(full)
            planner_at_handover["optimizer_params"] = {id(p) for p in full.optimizer.state}
        return original(batch)

    full.train_step = train_step
    full_result = full.fit()

    part_cfg = dataclasses.replace(full_cfg, output_dir=str(root / "part"), max_steps=1)
    part_result = build_trainer(part_cfg).fit()
    resumed = build_trainer(dataclasses.replace(part_cfg, max_steps=STEPS, resume=str(root / "part")))
    resumed_result = resumed.fit()
    return {
        "full": full,
        "full_result": full_result,
        "full_cfg": full_cfg,
        "initial": initial_planner,
        "handover": planner_at_handover,
        "part_result": part_result,
        "resumed": resumed,
        "resumed_result": resumed_result,
        "root": root,
    }


def test_warm_up_freezes_the_planner_and_trains_the_teacher(runs):
    full, handover = runs["full"], runs["handover"]
    initial = runs["initial"]
    assert set(handover["state"]) == set(initial)
    unchanged = [k for k in initial if torch.equal(initial[k], handover["state"][k])]
    assert unchanged == list(initial), "the warm-up changed planner weights or BatchNorm statistics"
    planner_ids = {id(p) for p in full.model.planner.parameters()}
    assert handover["optimizer_params"] and not handover["optimizer_params"] & planner_ids  # AdamW never saw them
    teacher_ids = {id(p) for p in full.model.teacher.adapters.parameters()}
    assert teacher_ids & handover["optimizer_params"]  # ... but the adapters trained
    final = _planner_state(full)
    assert any(not torch.equal(final[k], initial[k]) for k in initial)  # after the handover the planner trains
    history = runs["full_result"].history
    assert len(history) == STEPS
    for h in history[:WARMUP]:  # the planner's loss is measured, not trained; no distillation yet
        assert h["total"] == h["mllm_total"] and h["mllm_distill"] == 0.0 and h["planner_total"] > 0
    for h in history[WARMUP:]:
        assert h["mllm_distill"] > 0 and h["total"] == pytest.approx(h["planner_total"] + h["mllm_total"])


def test_diagnostics_records_follow_the_phases(runs):
    losses, diag = metrics_records(runs["full_cfg"].output_dir)
    assert [r["step"] for r in diag] == list(range(1, STEPS + 1)) and len(losses) == STEPS
    assert [r["diag/phase"] for r in diag] == ["warmup", "warmup", "ramp", "joint"]
    assert [r["diag/distill_scale"] for r in diag] == [0.0, 0.0, 0.5, 1.0]
    assert [r["diag/lr_planner"] for r in diag[:WARMUP]] == [0.0, 0.0]
    assert all(r["diag/lr_planner"] > 0 and r["diag/lr_teacher"] > 0 for r in diag[WARMUP:])
    for r in diag:
        assert math.isfinite(r["diag/feature_l2"]) and -1.0 <= r["diag/feature_cosine"] <= 1.0
        assert r["diag/term/planner"] > 0 and r["diag/term/vqa"] > 0
    for r in diag[:WARMUP]:  # frozen encoder: no gradient to compare; nothing weighted on the planner
        assert not any(k.startswith("diag/grad_cosine") for k in r) and r["diag/weighted/planner"] == 0.0
        assert r["diag/weighted/distill"] == 0.0 and r["diag/weighted/recon"] == 0.0
    for r in diag[WARMUP:]:
        for pair in ("planner__distill", "planner__teacher", "distill__teacher"):
            assert -1.0 <= r[f"diag/grad_cosine/{pair}"] <= 1.0
        assert r["diag/grad_norm/planner"] > 0 and r["diag/grad_norm/distill"] > 0
        assert r["diag/weighted/distill"] == pytest.approx(r["diag/distill_scale"] * r["diag/term/distill"])
    # The ramp step's distillation weighs half its raw value.
    assert diag[WARMUP]["diag/weighted/distill"] == pytest.approx(0.5 * diag[WARMUP]["diag/term/distill"])


def test_resume_inside_the_warm_up_is_exact(runs):
    from dima_core.training.trainer import parameter_digest

    full, resumed = runs["full"], runs["resumed"]
    assert runs["part_result"].step == 1 and runs["resumed_result"].step == STEPS
    assert parameter_digest(resumed.model) == parameter_digest(full.model)
    full_history = runs["full_result"].history
    assert runs["part_result"].history + runs["resumed_result"].history == full_history
    _, full_diag = metrics_records(runs["full_cfg"].output_dir)
    _, part_diag = metrics_records(runs["root"] / "part")
    assert part_diag == full_diag  # the resumed run appended the same records to the same file
    for name, p in full.optimizer.state_dict()["state"].items():
        q = resumed.optimizer.state_dict()["state"][name]
        assert all(torch.equal(p[k], q[k]) for k in p)


def test_planner_only_control_matches_the_dima_arm_step_for_step(runs):
    from dima_core.io.checkpoint import load_checkpoint
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage1 import build_stage1_trainer
    from dima_core.training.stage2 import build_planner_only_trainer, planner_only_config

    root = runs["root"]
    # One stage-1 step of the micro planner: the checkpoint both arms start from.
    stage1_cfg = dataclasses.replace(
        planner_only_config(runs["full_cfg"]), output_dir=str(root / "stage1"), max_steps=1
    )
    stage1 = build_stage1_trainer(stage1_cfg, DistContext()).fit()
    stage1_planner = load_checkpoint(stage1.checkpoint)["model"]

    dima_cfg = dataclasses.replace(
        runs["full_cfg"], output_dir=str(root / "dima"), init=str(stage1.checkpoint), max_steps=4
    )
    dima_cfg.joint.planner_lr = dataclasses.replace(dima_cfg.joint.planner_lr, schedule="constant", multiplier=0.5)
    dima = build_trainer(dima_cfg)
    dima_tokens, dima_planner = _record_tokens(dima, planner_at=WARMUP)
    dima.fit()
    control = build_planner_only_trainer(
        dataclasses.replace(dima_cfg, output_dir=str(root / "control")), DistContext(), record_history=True
    )
    assert control.step == WARMUP and control.epoch_step == WARMUP
    control_tokens, control_planner = _record_tokens(control, planner_at=WARMUP)
    result = control.fit()
    assert result.step == 4 and len(result.history) == 4 - WARMUP  # the same planner updates ...
    assert control_tokens == dima_tokens[WARMUP:]  # ... on the same batches in the same order ...
    _, diag = metrics_records(root / "dima")
    dima_planner_lr = [r["diag/lr_planner"] for r in diag][WARMUP:]
    assert [h["lr"] for h in result.history] == dima_planner_lr == [0.5 * dima_cfg.optimizer.lr] * 2  # ... same lr
    # ... from the same weights: both planners start their updates at the stage-1 checkpoint.
    for start in (dima_planner, control_planner):
        assert set(start) == set(stage1_planner)
        assert all(torch.equal(start[k], stage1_planner[k]) for k in start)
    final = load_checkpoint(result.checkpoint)  # a stage-1 checkpoint of the planner
    assert final["stage"] == 1 and "joint" not in final["config"]
    assert final["step"] == 4 and any(not torch.equal(final["model"][k], stage1_planner[k]) for k in stage1_planner)
