"""FSDP training (``distributed.strategy: fsdp``, dima_core/training/fsdp.py) with real torch.distributed on CPU/gloo.

- config: the typed ``distributed`` section, its validation, ``--strategy``, the 7B config's FSDP settings;
- units: only the language model's decoder layers become FSDP units (not the Q-former's blocks); mixed trainable
  dtypes in a unit are a clear error;
- one process (a one-rank process group): FSDP trains exactly like plain training on the tiny problem, writes the
  same checkpoint layout, and each resumes the other's checkpoint; a step that changes requires_grad is an error;
- two processes (torchrun, test/fsdp_worker.py): every sharding strategy (full, grad_op, hybrid) trains the tiny
  problem exactly like DDP; the real stage-2 model (micro planner + a bf16 tiny Llama with LoRA and gradient
  checkpointing, as the 7B configuration) trains its encoder, adapters and LoRA but not the frozen LLM base, clips
  its sharded gradients like torch's DTensor norm, writes a checkpoint with a DDP checkpoint's keys and layout that
  load_dima reads, and resumes it exactly.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from dima_core.config import ConfigError, config_from_dict, load_config
from dima_core.io.checkpoint import checkpoint_name, load_checkpoint
from dima_core.training.config import TrainConfig
from stage2_helpers import micro_mllm_config, stage2_cli_args, write_stage2_yaml, write_tiny_local_llm
from training_fixtures import (
    REPO_ROOT,
    build_tiny_trainer,
    free_port,
    run_checked,
    tiny_config,
    tiny_step,
    torchrun_command,
)

pytestmark = pytest.mark.usefixtures("single_thread")

WORKER = str(Path(__file__).resolve().parent / "fsdp_worker.py")
FSDP = {"strategy": "fsdp"}


@contextmanager
def one_rank_group() -> Iterator[object]:
    """The context ``dima train`` makes for a single-process FSDP run (a one-rank gloo group), torn down after."""
    from dima_core.training.config import DistributedConfig
    from dima_core.training.distributed import cleanup_distributed, init_distributed

    ctx = init_distributed("cpu", distributed=DistributedConfig(strategy="fsdp"))
    try:
        yield ctx
    finally:
        cleanup_distributed()


# ---------------------------------------------------------------------------------------------------- config
def test_distributed_config_is_typed_and_validated(tmp_path: Path) -> None:
    from dima_core.commands.train import add_parser, resolve_config
    from dima_core.training.config import train_config_class

    config = config_from_dict(
        {"distributed": {"strategy": "fsdp", "fsdp": {"sharding": "hybrid", "hybrid_shard_size": 8}}}, TrainConfig
    )
    assert config.distributed.fsdp.hybrid_shard_size == 8 and config.distributed.fsdp.param_dtype == "bf16"
    assert TrainConfig().distributed.strategy == "ddp"  # the default is unchanged
    with pytest.raises(ConfigError, match="hybrid_shard_size is set but sharding is 'full'"):
        config_from_dict({"distributed": {"fsdp": {"hybrid_shard_size": 8}}}, TrainConfig)
    with pytest.raises(ConfigError, match="distributed.strategy.*must be one of"):
        config_from_dict({"distributed": {"strategy": "zero3"}}, TrainConfig)
    with pytest.raises(ConfigError, match="distributed.fsdp.sharding.*must be one of"):
        config_from_dict({"distributed": {"fsdp": {"sharding": "shard_everything"}}}, TrainConfig)

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    base = ["train", "--stage", "1", "--config", "config/train/stage1_dima_tiny.yaml", "--out", str(tmp_path)]
    assert resolve_config(parser.parse_args(base + ["--strategy", "fsdp"])).distributed.strategy == "fsdp"

    llava = load_config(REPO_ROOT / "config" / "train" / "stage2_llava7b.yaml", train_config_class(2))
    fsdp = llava.distributed.fsdp
    assert llava.distributed.strategy == "fsdp" and llava.precision == "bf16" and llava.find_unused_parameters
    assert (fsdp.sharding, fsdp.param_dtype, fsdp.reduce_dtype, fsdp.wrap_llm_layers) == ("full", "bf16", "fp32", True)


# ---------------------------------------------------------------------------------------------------- units
def test_units_are_the_language_models_decoder_layers_only() -> None:
    from transformers import Blip2QFormerConfig, Blip2QFormerModel, LlamaConfig, LlamaForCausalLM

    from dima_core.models.mllm.config import LLMConfig, LoraSettings
    from dima_core.models.mllm.llm import add_lora, freeze
    from dima_core.training.fsdp import check_trainable_dtypes, decoder_layers

    torch.manual_seed(0)
    llm = LlamaForCausalLM(
        LlamaConfig(
            vocab_size=64,
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=3,
            num_attention_heads=2,
            num_key_value_heads=2,
        )
    ).to(torch.bfloat16)
    freeze(llm)
    lora = add_lora(llm, LLMConfig(lora=LoraSettings(rank=2, target_modules=["q_proj", "v_proj"])))
    qformer = Blip2QFormerModel(
        Blip2QFormerConfig(
            hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32, encoder_hidden_size=16
        )
    )
    # The Q-former lists its own blocks in _no_split_modules: they must stay in the root unit (fp32, trainable).
    assert qformer._no_split_modules
    model = torch.nn.ModuleDict({"llm": lora, "adapter": qformer})
    layers = decoder_layers(model)
    assert [type(m).__name__ for _, m in layers] == ["LlamaDecoderLayer"] * 3
    assert [name for name, _ in layers] == [f"llm.base_model.model.model.layers.{i}" for i in range(3)]

    check_trainable_dtypes(model, layers)  # bf16 frozen base + fp32 LoRA in one unit: fine (only trainables count)
    layers[0][1].self_attn.q_proj.lora_B.default.to(torch.bfloat16)
    with pytest.raises(
        ValueError,
        match=r"FSDP unit llm\.base_model\.model\.model\.layers\.0 has trainable "
        r"parameters of several dtypes",
    ):
        check_trainable_dtypes(model, layers)


# ---------------------------------------------------------------------------------------------------- 1 process
def _checkpoint(run_dir: Path) -> dict:
    return load_checkpoint(run_dir / (run_dir / "latest").read_text().strip())


def test_single_process_fsdp_trains_and_checkpoints_like_plain_training(tmp_path: Path) -> None:
    plain = build_tiny_trainer(tiny_config(tmp_path / "plain", max_steps=4)).fit()
    with one_rank_group() as ctx:
        trainer = build_tiny_trainer(tiny_config(tmp_path / "fsdp", max_steps=4, distributed=FSDP), ctx)
        assert trainer.fsdp is not None and trainer.fsdp.mesh.size() == 1
        sharded = trainer.fit()
    # Same losses: one rank's "shard" is the whole tensor and the root unit computes in fp32, as plain training.
    assert [h["total"] for h in sharded.history] == pytest.approx([h["total"] for h in plain.history], rel=1e-6)
    a, b = _checkpoint(tmp_path / "plain"), _checkpoint(tmp_path / "fsdp")
    assert list(a["model"]) == list(b["model"])
    for key in a["model"]:
        assert b["model"][key].dtype == a["model"][key].dtype and type(b["model"][key]) is torch.Tensor
        torch.testing.assert_close(b["model"][key], a["model"][key], rtol=1e-5, atol=1e-6)
    assert b["optimizer"]["param_groups"] == a["optimizer"]["param_groups"]
    assert sorted(b["optimizer"]["state"]) == sorted(a["optimizer"]["state"])
    for index, state in a["optimizer"]["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(b["optimizer"]["state"][index][key], value, rtol=1e-5, atol=1e-6)
    assert b["config"]["distributed"]["strategy"] == "fsdp"

    # Either strategy resumes the other's checkpoint and finishes the run like an uninterrupted plain run.
    full = build_tiny_trainer(tiny_config(tmp_path / "full")).fit()
    cross = build_tiny_trainer(tiny_config(tmp_path / "plain_from_fsdp", resume=str(tmp_path / "fsdp"))).fit()
    with one_rank_group() as ctx:
        back = build_tiny_trainer(
            tiny_config(tmp_path / "fsdp_from_plain", resume=str(tmp_path / "plain"), distributed=FSDP), ctx
        ).fit()
    assert cross.step == back.step == full.step == len(full.history) > 4
    tail = [h["total"] for h in full.history[4:]]
    assert [h["total"] for h in cross.history] == pytest.approx(tail, rel=1e-5)
    assert [h["total"] for h in back.history] == pytest.approx(tail, rel=1e-5)


def test_fsdp_refuses_a_step_that_changes_which_parameters_train(tmp_path: Path) -> None:
    def freezing_step(model: torch.nn.Module, batch: dict) -> dict:
        model.net[0].weight.requires_grad_(False)  # what the MLLM's two-stage schedule does to LoRA
        return tiny_step(model, batch)

    with one_rank_group() as ctx:
        trainer = build_tiny_trainer(tiny_config(tmp_path, distributed=FSDP), ctx)
        trainer.step_fn = freezing_step
        with pytest.raises(
            RuntimeError,
            match=r"changed which parameters train \(1, e.g. \['net.0.weight'\]\).*"
            r"need distributed.strategy ddp",
        ):
            trainer.fit()


# ---------------------------------------------------------------------------------------------------- 2 processes
def _run_worker(mode: str, root: Path, *train_args: str, timeout: float) -> dict:
    report = root / "report.json"
    extra = ["--", *train_args] if train_args else []
    run_checked(
        torchrun_command(2, free_port(), WORKER, mode, "--root", str(root), "--report", str(report), *extra),
        timeout=timeout,
    )
    return json.loads(report.read_text())


@pytest.mark.slow
@pytest.mark.integration
def test_two_process_fsdp_shardings_train_exactly_like_ddp(tmp_path: Path) -> None:
    report = _run_worker("tiny", tmp_path, timeout=300)
    assert report["world_size"] == 2
    ddp = report["ddp"]["losses"]
    assert len(ddp) == 6
    for sharding in ("full", "grad_op", "hybrid"):
        run = report[sharding]
        # Two ranks: every gradient reduction is one fp32 addition (and a halving), whichever collective does it.
        assert run["losses"] == ddp, sharding
        assert run["step"] == 6 and run["replicas_consistent"], sharding


@pytest.mark.slow
@pytest.mark.integration
def test_two_process_fsdp_stage2_trains_checkpoints_and_resumes(
    synth_world, micro_model, micro_index, tmp_path: Path
) -> None:
    from dima_core.models.dima import load_dima

    llm_dir = write_tiny_local_llm(tmp_path / "tiny_llm")
    # The 7B configuration's LLM settings at test size: bf16 frozen base, fp32 LoRA, gradient checkpointing.
    mllm = micro_mllm_config(
        source="local", path=str(llm_dir), gguf_file=None, dtype="bfloat16", gradient_checkpointing=True
    )
    config = write_stage2_yaml(tmp_path / "cfg", mllm)
    args = stage2_cli_args(synth_world, config, micro_model, micro_index, tmp_path / "unused", "--no-tensorboard")
    args = args[: args.index("--out")] + args[args.index("--out") + 2 :]  # the worker names each run's directory
    root = tmp_path / "runs"
    report = _run_worker("stage2", root, *args, timeout=500)

    # Sharded for real: the two Llama layers are units, every parameter is a DTensor; the run is finite.
    assert report["world_size"] == 2 and report["sharded"]
    assert report["layer_units"] == 2 and report["layer_classes"] == ["LlamaDecoderLayer"]
    assert len(report["fsdp_losses"]) == 2 and all(torch.isfinite(torch.tensor(report["fsdp_losses"])))
    assert report["replicas_consistent"]
    # What trains and what does not.
    assert report["counted"]["base"] > 0 and report["changed"]["base"] == 0, report["changed"]
    assert not report["base_trainable"]
    for group in ("encoder", "adapters", "lora"):
        assert report["changed"][group] > 0, f"no {group} parameter changed: {report['changed']}"
    # Clipping over the shards equals torch's norm of the DTensor gradients and scales every shard.
    clip = report["clip"]
    assert clip["num_grads"] > 0 and clip["our_norm"] == pytest.approx(clip["torch_norm"], rel=1e-5)
    assert clip["scaling_error"] < 1e-6
    # Same first step as DDP from the same initialisation (not bit-identical: on a CPU FSDP gathers the bf16 base
    # layers in fp32, the precision fallback, where DDP computes them in bf16).
    assert report["fsdp_losses"][0] == pytest.approx(report["ddp_losses"][0], rel=1e-3)
    # Resuming step 1's checkpoint reproduces step 2 exactly: loss, weights and AdamW state.
    assert report["resume_losses"] == report["fsdp_losses"][1:]
    assert report["resume_weights_equal"] and report["resume_optimizer_equal"]

    # The checkpoint has a DDP checkpoint's layout: keys (in order), shapes, dtypes, optimiser layout.
    fsdp_state = load_checkpoint(root / "fsdp" / checkpoint_name(2))
    ddp_state = load_checkpoint(root / "ddp" / checkpoint_name(1))
    assert fsdp_state["stage"] == 2 and fsdp_state["step"] == 2 and fsdp_state["world_size"] == 2
    assert fsdp_state["config"]["distributed"]["strategy"] == "fsdp"
    assert list(fsdp_state["model"]) == list(ddp_state["model"])
    for key, value in ddp_state["model"].items():
        assert (fsdp_state["model"][key].shape, fsdp_state["model"][key].dtype) == (value.shape, value.dtype), key
    assert not [n for n in fsdp_state["model"] if n.startswith("teacher.llm.") and "lora_" not in n]
    fsdp_groups, ddp_groups = fsdp_state["optimizer"]["param_groups"], ddp_state["optimizer"]["param_groups"]
    assert [g["params"] for g in fsdp_groups] == [g["params"] for g in ddp_groups]
    assert [sorted(g) for g in fsdp_groups] == [sorted(g) for g in ddp_groups]

    # load_dima reads it unchanged, teacher included, and its weights are the checkpoint's.
    loaded = load_dima(root / "fsdp", mode="mllm")
    assert loaded.stage == 2 and loaded.step == 2
    restored = loaded.model.state_dict()
    assert list(restored) == list(fsdp_state["model"])
    for key, value in fsdp_state["model"].items():
        assert torch.equal(restored[key], value), key
    # AdamW state indices are the trainable parameters in model order (over stage 2's planner and teacher param
    # groups), with their shapes.
    trainable = [p for p in loaded.model.parameters() if p.requires_grad]
    assert [i for g in fsdp_groups for i in g["params"]] == list(range(len(trainable)))
    for index, state in fsdp_state["optimizer"]["state"].items():
        assert state["exp_avg"].shape == trainable[index].shape
    assert load_dima(root / "fsdp", mode="vision").model.teacher is None
