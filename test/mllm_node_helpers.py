"""Plain helpers for the MLLM node tests: a stage-2 checkpoint of the micro planner whose teacher sits on a tiny
random Llama (2 layers, SmolLM2's tokenizer), written directly rather than trained: the node only needs a genuine
checkpoint that ``load_dima(mode="mllm")`` restores, not a good teacher. Building it takes seconds; only the GGUF
tokenizer parse (~15 s on the shared box) is paid once per session.
"""

from __future__ import annotations

from pathlib import Path

import torch

from stage2_helpers import micro_mllm_config, save_tiny_llama

MAX_QUESTION_TOKENS = 24


def write_tiny_llm_dir(directory: Path) -> Path:
    """SmolLM2's tokenizer (parsed from the package's GGUF, no weights loaded) + a random 2-layer Llama."""
    from dima_core.models.mllm.config import LLMConfig
    from dima_core.models.mllm.llm import load_tokenizer, resolve_source, shared_gguf_parsing

    cfg = LLMConfig()
    with shared_gguf_parsing():
        tokenizer = load_tokenizer(cfg, resolve_source(cfg))
    return save_tiny_llama(directory, tokenizer)


def write_stage2_checkpoint(path: Path, model_yaml: Path, llm_dir: Path) -> Path:
    """A stage-2 checkpoint file (untrained weights) of the micro planner + a teacher on ``llm_dir``."""
    from dima_core.io.checkpoint import save_checkpoint
    from dima_core.models import load_model_config
    from dima_core.models.dima import DimaJointModel, build_teacher, joint_model_config
    from dima_core.models.vision_planner import VisionPlanner

    torch.manual_seed(0)
    model_config = load_model_config(model_yaml)
    mllm = micro_mllm_config(source="local", path=str(llm_dir), gguf_file=None)
    joint = DimaJointModel(VisionPlanner(model_config), build_teacher(mllm))
    state = {
        "stage": 2,
        "epoch": 0,
        "epoch_step": 0,
        "step": 0,
        "model": joint.state_dict(),
        "optimizer": {},
        "scheduler": {},
        "scaler": {},
        "rng": {},
        "sampler": {},
        "config": {"joint": {"max_question_tokens": MAX_QUESTION_TOKENS}},
        "model_config": joint_model_config(model_config, mllm, joint.beam_tokens),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    return save_checkpoint(state, path)
