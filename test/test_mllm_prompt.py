"""Prompt assembly: placeholders, LLaVA-style splicing at exactly those positions, answer-only labels, padding;
adapters' shapes and token masks."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dima_core.models.mllm.adapters import BeamAdapters
from dima_core.models.mllm.config import AdapterConfig
from dima_core.models.mllm.prompt import IGNORE_INDEX, SLOTS, splice_embeddings
from mllm_fixtures import SCENE_DIM, make_beam


def test_placeholders_and_answer_only_labels(teacher) -> None:
    pb = teacher.prompts
    questions = ["Is there a car ahead?", "What should the ego vehicle do at the next intersection?"]
    answers = ["Yes.", "Slow down and turn left after the pedestrian crosses."]
    batch = pb.encode(questions, answers)
    b, length = batch.input_ids.shape
    for name in SLOTS:
        pos = batch.positions[name]
        assert pos.shape == (b, pb.query_counts[name])
        assert (batch.input_ids.gather(1, pos) == pb.slot_ids[name]).all()
    # The scene block is contiguous, in B, E, A, M, plan order.
    order = torch.cat([batch.positions[n] for n in SLOTS], dim=1)
    assert (order.diff(dim=1) == 1).all()
    for i, answer in enumerate(answers):
        supervised = batch.labels[i] != IGNORE_INDEX
        ids = batch.labels[i][supervised]
        assert ids[-1].item() == pb.end_of_turn_id
        assert teacher.tokenizer.decode(ids[:-1]) == answer
        # Labels sit exactly on the answer tokens, at the end of the real sequence.
        real = int(batch.attention_mask[i].sum())
        assert supervised.nonzero().max().item() == real - 1
        assert torch.equal(batch.input_ids[i][supervised], ids)
        assert (batch.labels[i, real:] == IGNORE_INDEX).all() and (batch.attention_mask[i, real:] == 0).all()
    assert (batch.attention_mask.sum(dim=1) < length).any()  # the shorter one is right-padded
    # Without answers everything is ignored; left padding keeps positions on the placeholders.
    left = pb.encode(questions, padding_side="left")
    assert (left.labels == IGNORE_INDEX).all()
    assert left.attention_mask[:, -1].all()
    for name in SLOTS:
        assert (left.input_ids.gather(1, left.positions[name]) == pb.slot_ids[name]).all()


def test_splice_writes_exactly_at_placeholders() -> None:
    embeds = torch.randn(2, 12, 5)
    positions = {"bev": torch.tensor([[2, 3], [4, 5]]), "plan": torch.tensor([[7], [9]])}
    values = {"bev": torch.randn(2, 2, 5, requires_grad=True), "plan": torch.randn(2, 1, 5)}
    out = splice_embeddings(embeds, positions, values)
    touched = torch.zeros(2, 12, dtype=torch.bool)
    for name, pos in positions.items():
        for b in range(2):
            assert torch.equal(out[b, pos[b]], values[name][b])
            touched[b, pos[b]] = True
    assert torch.equal(out[~touched], embeds[~touched])
    out.sum().backward()
    assert torch.equal(values["bev"].grad, torch.ones(2, 2, 5))


def test_llm_receives_adapter_outputs_at_the_placeholders(teacher) -> None:
    beam = make_beam(2)
    prompts = teacher.encode_prompts(["Q one?", "A longer question two?"], ["a", "b c"])
    captured = {}

    def grab(module, args, kwargs):
        captured["embeds"] = kwargs["inputs_embeds"].detach().clone()

    inner = teacher.llm.get_base_model().model  # the LlamaModel under the LoRA wrapper
    handle = inner.register_forward_pre_hook(grab, with_kwargs=True)
    try:
        with torch.no_grad():
            teacher.eval()
            teacher(beam, prompts)
            values, _ = teacher.scene_embeddings(beam)
    finally:
        handle.remove()
        teacher.train()
    embeds = captured["embeds"]
    text = teacher.llm.get_input_embeddings()(prompts.input_ids.clamp_max(teacher.llm.config.vocab_size - 1))
    placeholder = torch.zeros_like(prompts.input_ids, dtype=torch.bool)
    for name in SLOTS:
        rows = torch.arange(2).unsqueeze(1)
        assert torch.allclose(embeds[rows, prompts.positions[name]], values[name], atol=1e-6)
        placeholder[rows, prompts.positions[name]] = True
    assert torch.allclose(embeds[~placeholder], text[~placeholder])


@pytest.mark.parametrize("backend", ["blip2_qformer", "transformer_decoder"])
def test_adapters_shapes_and_token_masks(backend: str) -> None:
    torch.manual_seed(0)
    cfg = dataclasses.replace(
        AdapterConfig(),
        backend=backend,
        hidden_size=32,
        num_layers=1,
        num_heads=4,
        intermediate_size=64,
        dropout=0.0,
        queries={"bev": 5, "ego": 1, "agent": 3, "map": 2},
    )
    adapters = BeamAdapters(SCENE_DIM, 24, cfg).eval()
    beam = make_beam(2, num_agents=6)
    tokens = {"bev": beam.bev, "ego": beam.ego, "agent": beam.agents, "map": beam.map}
    valid = torch.ones(2, 6, dtype=torch.bool)
    valid[0, 3:] = False
    out = adapters(tokens, {"agent": valid})
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "bev": (2, 5, 24),
        "ego": (2, 1, 24),
        "agent": (2, 3, 24),
        "map": (2, 2, 24),
    }
    # Masked tokens are ignored: changing them changes nothing.
    changed = dict(tokens, agent=tokens["agent"].clone())
    changed["agent"][0, 3:] += 100.0
    assert torch.allclose(adapters(changed, {"agent": valid})["agent"], out["agent"], atol=1e-5)
    # A row with no valid token still yields finite outputs.
    empty = torch.zeros(2, 6, dtype=torch.bool)
    assert torch.isfinite(adapters(tokens, {"agent": empty})["agent"]).all()


def test_vicuna_format_for_llava(teacher) -> None:
    from dima_core.models.mllm.prompt import VICUNA_SYSTEM, PromptBuilder

    pb = PromptBuilder(teacher.tokenizer, teacher.cfg.adapters.queries, None, use_chat_template=False)
    text = pb.prompt_text("Is the road clear?")
    assert text.startswith(VICUNA_SYSTEM + " USER: <bev>") and text.endswith("Is the road clear? ASSISTANT:")
    batch = pb.encode(["Is the road clear?"], ["Yes."])
    ids = batch.labels[0][batch.labels[0] != IGNORE_INDEX]
    assert teacher.tokenizer.decode(ids[:-1]).strip() == "Yes." and ids[-1].item() == pb.end_of_turn_id
    for name in SLOTS:
        assert (batch.input_ids.gather(1, batch.positions[name]) == pb.slot_ids[name]).all()
