"""The "GPT score" term: an LLM judge rating an answer against the ground truth on 0-100, with DriveLM's prompt.

DriveLM (``challenge/gpt_eval.py``) asks gpt-3.5-turbo (temperature 0.6) with a system message and one user message,
built by plain concatenation (no separators, exactly as below), and reads the reply as a number. This project never
calls a network API: the judge is pluggable and local. Use

* :class:`CallableJudge` around any ``f(answer, ground_truth) -> float | str`` (a number, or a reply to parse), or
* :class:`HFCausalLMJudge` for a local Hugging Face causal LM directory (or a ``.gguf`` file), loaded with
  ``local_files_only=True`` and prompted with DriveLM's messages through the tokenizer's chat template.

A local model is not gpt-3.5-turbo, so its scores are not comparable with DriveLM leaderboard numbers; the report
names the judge. Replies are parsed as the first number in the text, clamped to [0, 100]; a reply without a number
scores 0 and is counted (DriveLM would crash on it).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

DRIVELM_SYSTEM_MESSAGE = "an evaluator who rates my answer based on the correct answer"
DRIVELM_INSTRUCTION = (
    "Rate my answer based on the correct answer out of 100, with higher scores indicating that the answer is closer "
    "to the correct answer, and you should be accurate to single digits like 62, 78, 41,etc. Output the number only"
)

_NUMBER_RE = re.compile(r"-?\d+(?:\.\d+)?")


def drivelm_judge_prompt(answer: str, ground_truth: str) -> str:
    """DriveLM's user message, concatenated without separators as in ``gpt_eval.py``."""
    return DRIVELM_INSTRUCTION + "This is the correct answer: " + ground_truth + "This is my answer: " + answer


def drivelm_judge_messages(answer: str, ground_truth: str) -> list[dict[str, str]]:
    """The chat messages DriveLM sends: its system message, then :func:`drivelm_judge_prompt`."""
    return [
        {"role": "system", "content": DRIVELM_SYSTEM_MESSAGE},
        {"role": "user", "content": drivelm_judge_prompt(answer, ground_truth)},
    ]


def parse_judge_score(reply: str) -> float | None:
    """First number in ``reply`` clamped to [0, 100]; None when the reply holds no number."""
    match = _NUMBER_RE.search(reply)
    if match is None:
        return None
    return min(100.0, max(0.0, float(match.group())))


@runtime_checkable
class Judge(Protocol):
    """Scores an answer against the ground truth on 0-100. ``name`` goes into the report."""

    name: str

    def score(self, answer: str, ground_truth: str) -> float | None:
        """0-100, or None when the judge's reply could not be read as a number."""
        ...


@dataclass
class CallableJudge:
    """Wraps ``fn(answer, ground_truth)`` returning a 0-100 number or a reply string holding one."""

    fn: Callable[[str, str], float | int | str]
    name: str = "callable"

    def score(self, answer: str, ground_truth: str) -> float | None:
        value = self.fn(answer, ground_truth)
        if isinstance(value, str):
            return parse_judge_score(value)
        return min(100.0, max(0.0, float(value)))


@dataclass
class HFCausalLMJudge:
    """A local Hugging Face causal LM as judge, prompted with DriveLM's messages.

    ``temperature`` 0 (the default) decodes greedily so scores are reproducible; DriveLM sampled at 0.6.
    """

    model: Any
    tokenizer: Any
    name: str = "hf-causal-lm"
    max_new_tokens: int = 8
    temperature: float = 0.0
    _device: Any = field(default=None, repr=False)

    @classmethod
    def from_pretrained(
        cls, path: str | Path, device: str | None = None, max_new_tokens: int = 8, temperature: float = 0.0
    ) -> HFCausalLMJudge:
        """Load from a local model directory, or a ``.gguf`` file (its folder must hold the file); never downloads."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"judge model not found: {path}")
        kwargs: dict[str, Any] = {"local_files_only": True}
        source = path
        if path.is_file():
            if path.suffix != ".gguf":
                raise ValueError(f"judge model {path}: expected a model directory or a .gguf file")
            source, kwargs["gguf_file"] = path.parent, path.name
        tokenizer = AutoTokenizer.from_pretrained(str(source), **kwargs)
        model = AutoModelForCausalLM.from_pretrained(str(source), **kwargs)
        chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model.to(chosen).eval()
        return cls(
            model,
            tokenizer,
            name=f"local:{path}",
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            _device=chosen,
        )

    def _prompt_ids(self, answer: str, ground_truth: str) -> Any:
        messages = drivelm_judge_messages(answer, ground_truth)
        if getattr(self.tokenizer, "chat_template", None):
            text = self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        else:
            # Base models without a chat template get the two messages as plain paragraphs.
            text = messages[0]["content"] + "\n\n" + messages[1]["content"] + "\n"
        return self.tokenizer(text, return_tensors="pt", add_special_tokens=False)

    def reply(self, answer: str, ground_truth: str) -> str:
        """The judge's raw generated text for one pair."""
        import torch

        inputs = self._prompt_ids(answer, ground_truth)
        device = self._device or next(self.model.parameters()).device
        inputs = {k: v.to(device) for k, v in inputs.items()}
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
        )
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else self.tokenizer.eos_token_id
        with torch.no_grad():
            out = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, pad_token_id=pad, **sampling)
        return str(self.tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True))

    def score(self, answer: str, ground_truth: str) -> float | None:
        return parse_judge_score(self.reply(answer, ground_truth))


__all__ = [
    "DRIVELM_INSTRUCTION",
    "DRIVELM_SYSTEM_MESSAGE",
    "CallableJudge",
    "HFCausalLMJudge",
    "Judge",
    "drivelm_judge_messages",
    "drivelm_judge_prompt",
    "parse_judge_score",
]
