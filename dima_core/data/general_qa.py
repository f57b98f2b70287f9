"""General-purpose (non-driving) QA for stage 2's domain/general data mix (DriVLM option, off by default).

Fine-tuning a small LLM on driving QA alone narrows it: it forgets how to follow ordinary instructions. DriVLM
mixes general instruction data into the driving data at a fixed ratio. Here each training sample's QA pair comes
from the general set with probability ``ratio`` and from the driving (DriveLM / synthetic / rule-based) set
otherwise; the draw is a pure function of ``(seed, step, sample token)``, so reruns, resumed runs and every DDP rank
make the same choices. The scene tokens stay in the prompt either way (the prompt layout never changes); a general
question simply does not depend on them.

The file is the user's own, local (nothing is downloaded): ``.json`` holding a list of records, or ``.jsonl`` with
one record per line (blank lines allowed). A record is one of

- ``{"question": str, "answer": str}``;
- ``{"conversations": [{"from": "human", "value": str}, {"from": "gpt", "value": str}, ...]}`` (LLaVA / ShareGPT;
  ``user`` / ``assistant`` are accepted as ``from`` too);
- ``{"messages": [{"role": "user", "content": str}, {"role": "assistant", "content": str}, ...]}`` (chat format).

A conversation gives one QA pair per (user, assistant) turn pair; ``system`` turns are skipped. Text-only data is
expected: an image-grounded record (LLaVA's ``<image>`` placeholder) would ask about a picture the model never sees.
Any problem is a :class:`GeneralQAFormatError` naming the file, the line (JSONL) or record (JSON) and the problem.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dima_core.config import ranged

QAPair = tuple[str, str]
# The RNG stream of the general/domain choice; Stage2Step uses 0 (domain pair) and 1 (scene edit) with the same key.
MIX_PURPOSE = 2
_USER_ROLES = {"human", "user"}
_ASSISTANT_ROLES = {"gpt", "assistant"}


@dataclass
class GeneralQAConfig:
    """``joint.general_qa`` of a stage-2 config."""

    path: str | None = ranged(
        None,
        help="local .json (list of records) or .jsonl file of general QA; ~ and $VARS expand; relative paths "
        "resolve against the working directory, then the repository",
    )
    ratio: float = ranged(0.0, lo=0.0, hi=1.0, help="probability that a sample's QA pair comes from the general set")

    def validate(self) -> None:
        if self.ratio > 0.0 and not self.path:
            raise ValueError("general_qa.ratio > 0 needs general_qa.path (a local JSON/JSONL file)")


class GeneralQAFormatError(ValueError):
    """A missing or malformed general QA file: ``<file>: line 3: <problem>`` (or ``record 3`` for JSON)."""

    def __init__(self, source: str, where: str, problem: str) -> None:
        self.source = source
        self.where = where
        self.problem = problem
        super().__init__(f"{source}: {where + ': ' if where else ''}{problem}")


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{what} must be a string, got {type(value).__name__}")
    if not value.strip():
        raise ValueError(f"{what} is empty")
    return value.strip()


def _turn_pairs(turns: Any, key: str, role_key: str, text_key: str) -> list[QAPair]:
    if not isinstance(turns, list) or not turns:
        raise ValueError(f"'{key}' must be a non-empty list of turns")
    pairs: list[QAPair] = []
    question: str | None = None
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise ValueError(f"{key}[{i}] must be an object, got {type(turn).__name__}")
        role = turn.get(role_key)
        if role == "system":
            continue
        text = _text(turn.get(text_key), f"{key}[{i}].{text_key}")
        if role in _USER_ROLES:
            if question is not None:
                raise ValueError(f"{key}[{i}]: two user turns in a row (turns must alternate user, assistant)")
            question = text
        elif role in _ASSISTANT_ROLES:
            if question is None:
                raise ValueError(f"{key}[{i}]: an assistant turn without a user turn before it")
            pairs.append((question, text))
            question = None
        else:
            known = sorted(_USER_ROLES | _ASSISTANT_ROLES | {"system"})
            raise ValueError(f"{key}[{i}].{role_key} is {role!r}: expected one of {known}")
    if question is not None:
        raise ValueError(f"'{key}' ends with a user turn that has no answer")
    return pairs


def record_pairs(record: Any) -> list[QAPair]:
    """The QA pairs of one record (module docstring for the formats). Raises ValueError describing the problem."""
    if not isinstance(record, dict):
        raise ValueError(f"a record must be an object, got {type(record).__name__}")
    if "question" in record or "answer" in record:
        return [(_text(record.get("question"), "'question'"), _text(record.get("answer"), "'answer'"))]
    if "conversations" in record:
        return _turn_pairs(record["conversations"], "conversations", "from", "value")
    if "messages" in record:
        return _turn_pairs(record["messages"], "messages", "role", "content")
    raise ValueError(f"no 'question'/'answer', 'conversations' or 'messages' key (keys: {sorted(record)[:8]})")


def load_general_qa(path: str | os.PathLike) -> list[QAPair]:
    """All QA pairs of a general QA file, in file order.

    Raises:
        GeneralQAFormatError: missing file, unknown suffix, invalid JSON, a bad record, or no pairs at all.
    """
    path = Path(os.path.expandvars(str(path))).expanduser()
    source = str(path)
    if not path.is_file():
        raise GeneralQAFormatError(source, "", "file not found (joint.general_qa.path)")
    suffix = path.suffix.lower()
    if suffix not in (".json", ".jsonl"):
        raise GeneralQAFormatError(source, "", f"unknown suffix {path.suffix!r}: expected .json or .jsonl")
    pairs: list[QAPair] = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise GeneralQAFormatError(source, "", f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            where = f"line {number}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise GeneralQAFormatError(source, where, f"not valid JSON: {exc.msg} (column {exc.colno})") from None
            try:
                pairs.extend(record_pairs(record))
            except ValueError as exc:
                raise GeneralQAFormatError(source, where, str(exc)) from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise GeneralQAFormatError(
                source, f"line {exc.lineno}", f"not valid JSON: {exc.msg} (column {exc.colno})"
            ) from None
        if not isinstance(data, list):
            raise GeneralQAFormatError(source, "", f"top level must be a list of records, got {type(data).__name__}")
        for index, record in enumerate(data):
            try:
                pairs.extend(record_pairs(record))
            except ValueError as exc:
                raise GeneralQAFormatError(source, f"record {index}", str(exc)) from None
    if not pairs:
        raise GeneralQAFormatError(source, "", "holds no QA pairs")
    return pairs


def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


class GeneralQAMix:
    """The per-sample general/domain choice.

    Args:
        pairs: the general QA pairs (:func:`load_general_qa`); may be empty only with ``ratio`` 0.
        ratio: probability of a general pair per sample, in [0, 1].
        source: where the pairs came from (logs).
    """

    def __init__(self, pairs: list[QAPair], ratio: float, source: str = "") -> None:
        if not 0.0 <= ratio <= 1.0:
            raise ValueError(f"general QA ratio must be in [0, 1], got {ratio}")
        if ratio > 0.0 and not pairs:
            raise ValueError("a general QA ratio > 0 needs at least one general QA pair")
        self.pairs = pairs
        self.ratio = float(ratio)
        self.source = source

    @classmethod
    def from_config(cls, cfg: GeneralQAConfig, resolve: Any = None) -> GeneralQAMix | None:
        """None when the option is off (ratio 0); else the loaded file. ``resolve`` maps the configured path to a
        file (e.g. against the repository root)."""
        if cfg.ratio <= 0.0:
            return None
        if not cfg.path:
            raise GeneralQAFormatError("joint.general_qa", "path", "ratio > 0 needs a path")
        path = resolve(cfg.path) if resolve is not None else Path(cfg.path)
        return cls(load_general_qa(path), cfg.ratio, source=str(path))

    def draw(self, seed: int, step: int, token: str) -> QAPair | None:
        """A general pair with probability ``ratio``, else None (use the domain pair); a pure function of
        ``(seed, step, token)``."""
        if self.ratio <= 0.0:
            return None
        rng = np.random.default_rng([seed, step, _stable_hash(token), MIX_PURPOSE])
        if rng.random() >= self.ratio:
            return None
        return self.pairs[int(rng.integers(len(self.pairs)))]


__all__ = [
    "GeneralQAConfig",
    "GeneralQAFormatError",
    "GeneralQAMix",
    "MIX_PURPOSE",
    "QAPair",
    "load_general_qa",
    "record_pairs",
]
