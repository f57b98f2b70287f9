"""DriVLM general/domain QA mix: the file formats, clear errors for bad files, and the per-sample draw (ratio
honoured statistically, deterministic per seed/step/sample, different across seeds)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from dima_core.config import ConfigError, config_from_dict
from dima_core.data.general_qa import (
    GeneralQAConfig,
    GeneralQAFormatError,
    GeneralQAMix,
    load_general_qa,
)
from training_fixtures import REPO_ROOT

EXAMPLE = REPO_ROOT / "test" / "data" / "general_qa_example.jsonl"


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_example_reads_every_record_format() -> None:
    pairs = load_general_qa(EXAMPLE)
    assert pairs[0] == ("What is the capital of France?", "Paris.")
    assert ("What does a thermometer measure?", "Temperature.") in pairs  # LLaVA / ShareGPT conversations
    # Chat messages: the system turn is skipped, each (user, assistant) pair is one QA pair.
    assert ("What colour do you get by mixing blue and yellow?", "Green.") in pairs
    assert ("And red and white?", "Pink.") in pairs
    assert len(pairs) == 7


def test_json_list_and_blank_jsonl_lines(tmp_path: Path) -> None:
    records = [
        {"question": "Q1?", "answer": "A1."},
        {"conversations": [{"from": "user", "value": "Q2?"}, {"from": "assistant", "value": "A2."}]},
    ]
    assert load_general_qa(_write(tmp_path / "g.json", json.dumps(records))) == [("Q1?", "A1."), ("Q2?", "A2.")]
    text = json.dumps(records[0]) + "\n\n" + json.dumps(records[1]) + "\n"
    assert load_general_qa(_write(tmp_path / "g.jsonl", text)) == [("Q1?", "A1."), ("Q2?", "A2.")]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.jsonl", '{"question": "Q?", "answer": "A"}\n{"question": "Q2?"\n', r"a\.jsonl: line 2: not valid JSON"),
        ("b.jsonl", '{"question": "Q?", "answer": ""}\n', r"b\.jsonl: line 1: 'answer' is empty"),
        ("c.jsonl", '{"question": 3, "answer": "A"}\n', r"line 1: 'question' must be a string, got int"),
        (
            "d.json",
            '[{"question": "Q?", "answer": "A"}, {"text": "x"}]',
            r"d\.json: record 1: no 'question'/'answer', 'conversations' or 'messages' key",
        ),
        ("e.json", '{"question": "Q?", "answer": "A"}', r"e\.json: top level must be a list of records, got dict"),
        ("f.json", '[{"question": "Q?",\n "answer": }]', r"f\.json: line 2: not valid JSON"),
        (
            "g.jsonl",
            '{"messages": [{"role": "user", "content": "Q?"}]}\n',
            r"line 1: 'messages' ends with a user turn that has no answer",
        ),
        (
            "h.jsonl",
            '{"conversations": [{"from": "gpt", "value": "A"}]}\n',
            r"line 1: conversations\[0\]: an assistant turn without a user turn before it",
        ),
        ("i.jsonl", '{"messages": [{"role": "bot", "content": "A"}]}\n', r"messages\[0\]\.role is 'bot'"),
        ("j.jsonl", "\n\n", r"j\.jsonl: holds no QA pairs"),
        ("k.txt", "Q? A.", r"k\.txt: unknown suffix '\.txt'"),
    ],
)
def test_bad_files_name_file_line_and_problem(tmp_path: Path, name: str, text: str, message: str) -> None:
    with pytest.raises(GeneralQAFormatError, match=message):
        load_general_qa(_write(tmp_path / name, text))


def test_missing_file_and_config_errors(tmp_path: Path) -> None:
    with pytest.raises(GeneralQAFormatError, match=r"nope\.jsonl: file not found"):
        load_general_qa(tmp_path / "nope.jsonl")
    with pytest.raises(GeneralQAFormatError, match="file not found"):
        GeneralQAMix.from_config(GeneralQAConfig(path=str(tmp_path / "nope.jsonl"), ratio=0.2))
    with pytest.raises(ConfigError, match="ratio > 0 needs general_qa.path"):
        config_from_dict({"ratio": 0.2}, GeneralQAConfig, source="run.yaml")
    with pytest.raises(ConfigError, match="out of range"):
        config_from_dict({"path": str(EXAMPLE), "ratio": 1.5}, GeneralQAConfig, source="run.yaml")
    assert GeneralQAMix.from_config(GeneralQAConfig()) is None  # off by default: nothing is read


def test_ratio_is_honoured_and_draws_are_deterministic() -> None:
    pairs = load_general_qa(EXAMPLE)
    ratio, n = 0.2, 4000
    mix = GeneralQAMix(pairs, ratio)
    keys = [(step, f"token{i}") for step in range(40) for i in range(n // 40)]
    draws = [mix.draw(seed=0, step=step, token=token) for step, token in keys]
    general = sum(d is not None for d in draws)
    # Binomial(4000, 0.2): sd ~ 25; 5 sd is a fixed-seed bound that a wrong ratio (e.g. 0.25 -> +200) cannot pass.
    assert abs(general - ratio * n) < 5 * math.sqrt(n * ratio * (1 - ratio))
    assert {d for d in draws if d is not None} == set(pairs)  # every general pair gets used
    # Pure function of (seed, step, token): a rerun draws the same; another seed draws differently.
    assert draws == [mix.draw(seed=0, step=step, token=token) for step, token in keys]
    other = [mix.draw(seed=1, step=step, token=token) for step, token in keys]
    assert other != draws
    assert all(GeneralQAMix(pairs, 1.0).draw(3, s, t) is not None for s, t in keys[:50])
    assert all(GeneralQAMix(pairs, 0.0).draw(3, s, t) is None for s, t in keys[:50])
    with pytest.raises(ValueError, match="at least one general QA pair"):
        GeneralQAMix([], 0.5)
