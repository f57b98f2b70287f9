"""`dima bench distill --from-reports`: merging per-seed runs into one table (no training here)."""

from __future__ import annotations

import json

import pytest

from benchmarks import distill as bench_distill


def _report(seeds: list[int], l2: dict[str, list[float]], epochs: int = 4) -> dict:
    args = {
        "dataroot": "/w",
        "version": "v1.0-synth",
        "stage1_config": "s1.yaml",
        "stage2_config": "s2.yaml",
        "model_config": None,
        "epochs": epochs,
        "stage2_epochs": 1,
        "rungs": "full",
        "train_split": "train",
        "val_split": "val",
        "batch_size": None,
        "max_steps": None,
        "seeds": seeds,
    }
    results = {}
    for method, values in l2.items():
        results[method] = [
            {
                "overall/vad/l2": v,
                "overall/vad/collision": 0.1,
                "overall/uniad/l2": 2 * v,
                "overall/uniad/collision": 0.2,
                "overall/n": 10.0,
                "three_point_turn/vad/l2": v + 1,
                "three_point_turn/vad/collision": 0.0,
                "three_point_turn/n": 4.0,
                "overtake/vad/l2": None,
                "overtake/vad/collision": None,
                "overtake/n": 0.0,
            }
            for v in values
        ]
    return {
        "args": args,
        "results": results,
        "elapsed_s": 600.0,
        "command": "dima bench distill ...",
        "machine": "test box",
    }


def test_merge_concatenates_seeds_and_table_reports_mean_and_sample_std():
    a = _report([0], {"(A) stage 1 only": [1.0], "(B) DiMA: full": [0.5]})
    b = _report([1], {"(A) stage 1 only": [2.0], "(B) DiMA: full": [0.7]})
    merged = bench_distill.merge_reports([a, b])
    assert [r["overall/vad/l2"] for r in merged["(A) stage 1 only"]] == [1.0, 2.0]
    section = bench_distill.section([a, b])
    # mean 1.5, sample std sqrt(0.5) = 0.707; B: 0.6 +- 0.141
    assert "| (A) stage 1 only | 1.500 ± 0.707 |" in section
    assert "| (B) DiMA: full | 0.600 ± 0.141 |" in section
    assert "three_point_turn L2 VAD / Col VAD" in section and "(n=4)" in section
    assert "overtake" not in section  # no val sample carries that tag: no empty column
    assert "Seeds: [0, 1]" in section and "10.0 + 10.0 min" in section


def test_merge_refuses_different_protocols_and_repeated_seeds():
    a = _report([0], {"(A) stage 1 only": [1.0]})
    with pytest.raises(ValueError, match="epochs 8 != 4"):
        bench_distill.merge_reports([a, _report([1], {"(A) stage 1 only": [1.0]}, epochs=8)])
    with pytest.raises(ValueError, match=r"repeats seeds \[0\]"):
        bench_distill.merge_reports([a, _report([0], {"(A) stage 1 only": [1.0]})])


def test_from_reports_replaces_only_its_section_of_the_doc(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        "# Benchmarks\n\n## Other\n\nkeep me\n\n" + bench_distill.SECTION_TITLE + "\n\nold\n\n## Tail\n\nx\n"
    )
    paths = []
    for seed, value in ((0, 1.0), (1, 3.0)):
        path = tmp_path / f"report{seed}.json"
        path.write_text(json.dumps(_report([seed], {"(A) stage 1 only": [value]})))
        paths.append(str(path))
    parser = bench_distill.add_parser(__import__("argparse").ArgumentParser().add_subparsers())
    args = parser.parse_args(["--from-reports", *paths, "--doc", str(doc)])
    assert args.func(args) == 0
    text = doc.read_text()
    assert "keep me" in text and "## Tail" in text and "old" not in text
    assert "| (A) stage 1 only | 2.000 ± 1.414 |" in text
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ValueError, match="cannot read bench distill report"):
        args.func(parser.parse_args(["--from-reports", str(bad), "--doc", ""]))
