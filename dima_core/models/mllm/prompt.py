"""Prompt assembly: chat template, BEAM placeholders, LLaVA-style splicing, answer-only labels, padding.

A prompt is the tokenizer's chat template (or LLaVA-v1.5's Vicuna format when the tokenizer has none) around::

    <bev> x Q_bev  <ego> x Q_ego  <agent> x Q_agent  <map> x Q_map  <plan>
    {question}

The placeholders are added special tokens, so each is exactly one id. Their ids are never looked up in the LLM's
embedding table (they may lie past its vocabulary); :func:`splice_embeddings` writes the adapter outputs (and the
learned ``<plan>`` query) at their positions in ``inputs_embeds``. ``<plan>`` closes the scene block on purpose:
under causal attention its hidden state depends on the scene only, not on the question, so the planning feature is
the same whichever question rides along, and MLLM-only planning needs no question at all.

Labels are -100 everywhere except the answer tokens and the end-of-turn token after them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from dima_core.models.mllm.config import PLACEHOLDER_TOKENS, PLAN_TOKEN, TOKEN_TYPES

IGNORE_INDEX = -100
# LLaVA-v1.5's conversation format (Vicuna v1), used when a tokenizer has no chat template.
VICUNA_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)
SLOTS: tuple[str, ...] = TOKEN_TYPES + ("plan",)


@dataclass
class PromptBatch:
    """A padded batch of prompts (+ answers).

    input_ids: (B, L) token ids, placeholders included (never embedded directly).
    attention_mask: (B, L) 1 for real tokens, 0 for padding.
    labels: (B, L) answer token ids, IGNORE_INDEX elsewhere (all IGNORE_INDEX without answers).
    positions: ``{"bev"|"ego"|"agent"|"map"|"plan": (B, Q) long}`` sequence positions of each placeholder kind.
    """

    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    labels: torch.Tensor
    positions: dict[str, torch.Tensor]

    def to(self, device: torch.device | str) -> PromptBatch:
        return PromptBatch(
            self.input_ids.to(device),
            self.attention_mask.to(device),
            self.labels.to(device),
            {k: v.to(device) for k, v in self.positions.items()},
        )


class PromptBuilder:
    """Build :class:`PromptBatch` es for one tokenizer and one set of query counts.

    Args:
        tokenizer: a ``transformers`` tokenizer; the placeholder tokens are added to it (idempotent).
        query_counts: ``{"bev": Q_b, "ego": Q_e, "agent": Q_a, "map": Q_m}``.
        system_prompt: system message, or None for the template's default.
        max_answer_tokens: answers are cut to this many tokens (the end-of-turn token is always kept).
        use_chat_template: use the tokenizer's chat template when it has one (else the Vicuna v1 format).
    """

    def __init__(
        self,
        tokenizer,
        query_counts: dict[str, int],
        system_prompt: str | None = None,
        max_answer_tokens: int = 128,
        use_chat_template: bool = True,
    ):
        self.tokenizer = tokenizer
        self.query_counts = {name: int(query_counts[name]) for name in TOKEN_TYPES}
        self.query_counts["plan"] = 1
        self.system_prompt = system_prompt
        self.max_answer_tokens = max_answer_tokens
        self.slot_tokens = {**PLACEHOLDER_TOKENS, "plan": PLAN_TOKEN}
        tokenizer.add_tokens(list(self.slot_tokens.values()), special_tokens=True)
        self.slot_ids = {name: int(tokenizer.convert_tokens_to_ids(tok)) for name, tok in self.slot_tokens.items()}
        self.has_template = use_chat_template and bool(getattr(tokenizer, "chat_template", None))
        self.end_of_turn_id = int(tokenizer.eos_token_id)
        self.pad_id = int(tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id)

    @property
    def placeholder_ids(self) -> set[int]:
        return set(self.slot_ids.values())

    def scene_text(self) -> str:
        """The placeholder block: every BEAM slot repeated Q times, then ``<plan>``."""
        return "".join(self.slot_tokens[name] * self.query_counts[name] for name in SLOTS)

    def prompt_text(self, question: str) -> str:
        """The full prompt up to (and including) the assistant's turn opener."""
        content = f"{self.scene_text()}\n{question.strip()}"
        if self.has_template:
            messages = []
            if self.system_prompt is not None:
                messages.append({"role": "system", "content": self.system_prompt})
            messages.append({"role": "user", "content": content})
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        system = self.system_prompt if self.system_prompt is not None else VICUNA_SYSTEM
        return f"{system} USER: {content} ASSISTANT:"

    def _encode_prompt(self, question: str) -> list[int]:
        # Chat templates already contain their BOS/turn tokens; the Vicuna fallback needs the tokenizer's BOS.
        ids = self.tokenizer(self.prompt_text(question), add_special_tokens=not self.has_template)["input_ids"]
        for name in SLOTS:
            n = sum(1 for t in ids if t == self.slot_ids[name])
            if n != self.query_counts[name]:
                expected = self.query_counts[name]
                raise ValueError(f"prompt holds {n} {self.slot_tokens[name]} tokens, expected {expected}")
        return list(ids)

    def _encode_answer(self, answer: str) -> list[int]:
        text = answer.strip() if self.has_template else " " + answer.strip()
        ids = list(self.tokenizer(text, add_special_tokens=False)["input_ids"])[: self.max_answer_tokens]
        return ids + [self.end_of_turn_id]

    def encode(
        self,
        questions: Sequence[str],
        answers: Sequence[str] | None = None,
        padding_side: Literal["right", "left"] = "right",
    ) -> PromptBatch:
        """Tokenize, label and pad a batch.

        Args:
            questions: B questions.
            answers: B answers (training) or None (generation; then use ``padding_side="left"``).
            padding_side: right for training (positions stay left-aligned), left for batched generation.
        Returns:
            :class:`PromptBatch` with L = longest prompt(+answer) in the batch.
        """
        if answers is not None and len(answers) != len(questions):
            raise ValueError(f"{len(questions)} questions but {len(answers)} answers")
        seqs: list[list[int]] = []
        labs: list[list[int]] = []
        for i, q in enumerate(questions):
            prompt = self._encode_prompt(q)
            answer = self._encode_answer(answers[i]) if answers is not None else []
            seqs.append(prompt + answer)
            labs.append([IGNORE_INDEX] * len(prompt) + answer)
        length = max(len(s) for s in seqs)
        b = len(seqs)
        input_ids = torch.full((b, length), self.pad_id, dtype=torch.long)
        attention = torch.zeros((b, length), dtype=torch.long)
        labels = torch.full((b, length), IGNORE_INDEX, dtype=torch.long)
        for i, (s, lab) in enumerate(zip(seqs, labs, strict=True)):
            start = 0 if padding_side == "right" else length - len(s)
            input_ids[i, start : start + len(s)] = torch.tensor(s)
            attention[i, start : start + len(s)] = 1
            labels[i, start : start + len(s)] = torch.tensor(lab)
        positions = {
            name: torch.stack([(row == self.slot_ids[name]).nonzero().squeeze(1) for row in input_ids])
            for name in SLOTS
        }
        return PromptBatch(input_ids, attention, labels, positions)


def splice_embeddings(
    token_embeds: torch.Tensor, positions: dict[str, torch.Tensor], values: dict[str, torch.Tensor]
) -> torch.Tensor:
    """Write adapter outputs into the embedded sequence at their placeholder positions (LLaVA-style).

    Args:
        token_embeds: (B, L, D) text embeddings (placeholder rows hold anything; they are overwritten).
        positions: ``{name: (B, Q) long}`` from :class:`PromptBatch`.
        values: ``{name: (B, Q, D)}`` adapter outputs (a name missing here keeps its embedding).
    Returns:
        (B, L, D) a new tensor; gradients flow into ``values`` (index_put is differentiable in the values).
    """
    out = token_embeds.clone()
    b = token_embeds.shape[0]
    for name, value in values.items():
        pos = positions[name]
        if value.shape[:2] != pos.shape:
            raise ValueError(f"{name}: {tuple(value.shape[:2])} values for {tuple(pos.shape)} placeholders")
        rows = torch.arange(b, device=pos.device).unsqueeze(1).expand_as(pos)
        out[rows, pos] = value.to(out.dtype)
    return out


def embed_prompt(embedding: torch.nn.Module, batch: PromptBatch, placeholder_ids: set[int]) -> torch.Tensor:
    """Look up text embeddings, with placeholder ids (maybe past the vocabulary) replaced by the pad id first.

    Returns:
        (B, L, D) embeddings whose placeholder rows are meaningless until :func:`splice_embeddings`.
    """
    ids = batch.input_ids.clone()
    for pid in placeholder_ids:
        ids[ids == pid] = 0
    return embedding(ids)


__all__ = ["IGNORE_INDEX", "PromptBatch", "PromptBuilder", "SLOTS", "embed_prompt", "splice_embeddings"]
