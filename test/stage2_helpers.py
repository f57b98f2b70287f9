"""Plain helpers for the stage-2 tests (no fixtures: those live in the modules registered by conftest.py).

The micro planner (training_fixtures.MICRO_MODEL_OVERRIDES: C 32, BEV 8x8, planner feature 32) gets a teacher
config of mllm_fixtures.tiny_config's size with matching scene sizes.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from dima_core.config import config_to_dict
from training_fixtures import REPO_ROOT

MICRO_SCENE_DIM, MICRO_BEV_TOKENS, MICRO_FEATURE_DIM = 32, 64, 32


def micro_mllm_config(**llm_overrides: Any) -> Any:
    """mllm_fixtures.tiny_config resized to the micro planner (its LLM section optionally overridden)."""
    from mllm_fixtures import tiny_config

    cfg = tiny_config()
    cfg.scene_dim = MICRO_SCENE_DIM
    cfg.planner_feature_dim = MICRO_FEATURE_DIM
    cfg.heads.bev_tokens = MICRO_BEV_TOKENS
    cfg.heads.plan_feature_dim = MICRO_FEATURE_DIM
    for key, value in llm_overrides.items():
        setattr(cfg.llm, key, value)
    return cfg


def write_stage2_yaml(directory: Path, mllm_cfg: Any, **joint: Any) -> Path:
    """A stage-2 training YAML (stage2_dima_tiny.yaml) pointing at a teacher YAML written next to it."""
    directory.mkdir(parents=True, exist_ok=True)
    mllm_path = directory / "mllm.yaml"
    mllm_path.write_text(yaml.safe_dump({"mllm": config_to_dict(mllm_cfg)}, sort_keys=False))
    data = yaml.safe_load((REPO_ROOT / "config" / "train" / "stage2_dima_tiny.yaml").read_text())
    data["joint"]["mllm_config"] = str(mllm_path)
    # Edit every sample: a 2-step run must exercise (e) whenever an edit is possible.
    data["joint"]["scene_edit_probability"] = 1.0
    data["joint"].update(joint)
    data["schedule"]["warmup_iters"] = 1
    data["optimizer"]["lr"] = 1e-3
    path = directory / "stage2.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def stage2_cli_args(world: Any, config: Path, model_yaml: Path, index: Path, out: Path, *extra: str) -> list[str]:
    """``train --stage 2`` arguments on the session's synthetic world with the micro planner."""
    return [
        "train",
        "--stage",
        "2",
        "--config",
        str(config),
        "--dataroot",
        str(world.dataroot),
        "--version",
        world.version,
        "--index",
        str(index),
        "--out",
        str(out),
        "--batch-size",
        "1",
        "--log-interval",
        "1",
        "--model-config",
        str(model_yaml),
        "--val-split",
        "none",
        "--epochs",
        "1",
        "--device",
        "cpu",
        *extra,
    ]


def cached_llm() -> tuple[Any, Any]:
    """A private copy of the session's SmolLM2 base (mllm_fixtures.base_llm, loaded once) and its tokenizer."""
    from mllm_fixtures import base_llm

    model, tokenizer = base_llm()
    return copy.deepcopy(model), tokenizer


def write_tiny_local_llm(directory: Path) -> Path:
    """A 2-layer random Llama with SmolLM2's tokenizer saved as a local Hugging Face directory.

    The DDP test's two processes each load their LLM; the real 135M GGUF would take ~40 s per process on a shared
    2-core box, this one a second, and it goes through the same code (``llm.source: local``, peft LoRA, prompts).
    """
    from mllm_fixtures import base_llm

    _, tokenizer = base_llm()
    return save_tiny_llama(directory, tokenizer)


def save_tiny_llama(directory: Path, tokenizer: Any) -> Path:
    """``tokenizer`` + a seeded random 2-layer Llama sized to it, saved as a local Hugging Face directory."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    directory.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(directory))
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=1024,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(str(directory))
    return directory
