"""Plain helpers for the distillation-protocol tests (teacher warm-up, planner lr, diagnostics, control arm).

The stage-2 runs here use the micro planner (training_fixtures) and a seeded random 2-layer Llama with a small
byte-level BPE tokenizer trained in memory: the real transformers / tokenizers classes, through the same teacher
code (peft LoRA, prompts, heads), built in well under a second instead of the minute SmolLM2's GGUF tokenizer takes
to parse on a shared 2-core box. These tests check the protocol's mechanics, not what a pretrained LLM learns.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from dima_core.config import config_from_dict
from stage2_helpers import micro_mllm_config, write_stage2_yaml

_CORPUS = [
    "What should the ego vehicle do next? Keep the lane and follow the car ahead at a safe distance.",
    "Is there a pedestrian crossing in front of the ego car? No, the crossing is free.",
    "What are the important objects in the scene? A parked truck on the right and a car ahead.",
    "The ego vehicle turns left at the intersection, slows down and yields to oncoming traffic.",
    "Describe the scene. A two-lane road with a bus stop, cyclists and a traffic light.",
]


@functools.lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<pad>", "<s>", "</s>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS, trainer)
    return tok.to_str()


def tiny_tokenizer() -> Any:
    """A fresh byte-level BPE tokenizer (any text encodes) with pad/bos/eos and no chat template (Vicuna prompts)."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()), pad_token="<pad>", bos_token="<s>", eos_token="</s>"
    )


def tiny_llm(tokenizer: Any) -> Any:
    """A seeded random 2-layer Llama (hidden 64) sized to ``tokenizer``, in eval mode."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer) + 8,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config).eval()


def stage2_config(directory: Path, world: Any, model_yaml: Path, index: Path, epochs: int = 1, **joint: Any) -> Any:
    """A :class:`Stage2TrainConfig` for a few CPU steps of the micro planner on the session's synthetic world.

    ``joint`` overrides keys of the ``joint`` section (nested sections as dicts). Batch 1, no validation, no
    TensorBoard, checkpoints only at the end (tests ask for more with ``checkpoint_interval``).
    """
    from dima_core.training.stage2 import Stage2TrainConfig

    mllm = micro_mllm_config()
    mllm.llm.prompt_format = "vicuna"
    mllm.llm.max_answer_tokens = 16
    path = write_stage2_yaml(Path(directory) / "cfg", mllm, **joint)
    data = yaml.safe_load(path.read_text())
    data["model_config"] = str(model_yaml)
    data["data"]["dataset"].update(
        {"dataroot": str(world.dataroot), "version": world.version, "index_path": str(index)}
    )
    data["data"].update({"batch_size": 1, "val_split": None})
    data.update(
        {
            "epochs": epochs,
            "device": "cpu",
            "output_dir": str(Path(directory) / "run"),
            "tensorboard": False,
            "progress_bar": False,
            "validate_every_epochs": 0,
            "log_interval": 1,
            "checkpoint_interval": 0,
            "checkpoint_every_epoch": False,
        }
    )
    return config_from_dict(data, Stage2TrainConfig, source="distill_helpers.stage2_config")


def build_trainer(config: Any, record_history: bool = True) -> Any:
    """:func:`build_stage2_trainer` with a fresh tiny LLM and tokenizer."""
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage2 import build_stage2_trainer

    tokenizer = tiny_tokenizer()
    return build_stage2_trainer(
        config, DistContext(), record_history=record_history, llm=tiny_llm(tokenizer), tokenizer=tokenizer
    )


def metrics_records(run_dir: Path) -> tuple[list[dict], list[dict]]:
    """``(loss records, diagnostics records)`` of a run's metrics.jsonl."""
    import json

    lines = [json.loads(line) for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if "diag/phase" not in r], [r for r in lines if "diag/phase" in r]
