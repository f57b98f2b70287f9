"""Smoke test of ``dima bench planner``: a 2-scene world, 2 training steps of a micro model, and the markdown section
it writes (table rows for every method, convention and split; throughput and latency lines)."""

from __future__ import annotations

from pathlib import Path

from benchmarks.planner import SECTION
from dima_core.cli import main
from training_fixtures import write_micro_model_config


def test_bench_planner_writes_its_section(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Synthetic world generation (`dima bench synth`)\n\n- kept\n")
    model_yaml = write_micro_model_config(tmp_path)
    rc = main(
        [
            "bench",
            "planner",
            "--scenes-train",
            "1",
            "--scenes-val",
            "1",
            "--scene-seconds",
            "6",
            "--model-config",
            str(model_yaml),
            "--steps",
            "2",
            "--batch-size",
            "1",
            "--threads",
            "1",
            "--admlp-epochs",
            "2",
            "--latency-frames",
            "2",
            "--latency-warmup",
            "1",
            "--vad-tiny-config",
            "",
            "--out",
            str(tmp_path / "bench"),
            "--doc",
            str(doc),
        ]
    )
    assert rc == 0
    text = doc.read_text()
    assert "- kept" in text and text.count(SECTION) == 1  # the other section survives, ours appears once
    ours = text[text.index(SECTION) :]
    assert "training throughput:" in ours and "samples/s" in ours and "inference latency" in ours
    assert "machine:" in ours and "command: `dima bench planner" in ours
    rows = [line for line in ours.splitlines() if line.startswith("| ") and not line.startswith("| split")]
    methods = {row.split("|")[3].strip() for row in rows}
    assert {"const_velocity", "ad_mlp"} <= methods and len(methods) == 3  # + the learned planner
    splits = {row.split("|")[1].strip() for row in rows}
    assert {"overall", "overtake", "three_point_turn", "resume_from_stop", "turning"} <= splits
    assert {row.split("|")[4].strip() for row in rows} == {"vad", "uniad"}
    assert (tmp_path / "bench" / "report.json").is_file()
