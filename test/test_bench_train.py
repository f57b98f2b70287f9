"""``dima bench train`` and the step timer behind it: the loop and bare-step measurements on the micro planner, the
doc table it maintains, and the timer's accounting (nested sections, warm-up, the untouched default)."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from benchmarks.train import SECTION, update_doc
from dima_core.cli import main
from dima_core.training.profiling import NULL_TIMER, SECTIONS, StepTimer

pytestmark = pytest.mark.usefixtures("single_thread")


def test_step_timer_counts_nested_sections_once_and_skips_warmup() -> None:
    timer = StepTimer(warmup_steps=1)
    timer.restart()
    for step in range(3):
        with timer.section("forward"):
            time.sleep(0.02)
            with timer.section("loss"):
                time.sleep(0.03)
        with timer.section("backward"):
            time.sleep(0.01 if step else 0.2)  # the warm-up step is slow and must not count
        timer.end_step(samples=2)
    summary = timer.summary()
    assert summary.steps == 2 and summary.samples == 4
    # Exclusive times: the loss is not counted inside the forward as well (inclusive would be >= 0.1 s), and the
    # slow warm-up step is not counted at all (it alone would be >= 0.2 s of backward).
    assert 0.04 <= summary.sections["forward"] < 0.095
    assert 0.06 <= summary.sections["loss"]
    assert 0.02 <= summary.sections["backward"] < 0.2
    assert abs(sum(summary.sections.values()) - summary.wall_s) < 1e-9  # "other" closes the sum
    assert summary.samples_per_s == pytest.approx(4 / summary.wall_s)
    with pytest.raises(ValueError, match="unknown timing section"):
        with timer.section("dataloading"):
            pass
    # The trainer's default records nothing and hands out one shared no-op context.
    assert NULL_TIMER.section("forward") is NULL_TIMER.section("backward")


def test_update_doc_replaces_its_row_and_keeps_the_rest(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Other (`dima bench synth`)\n\n- kept\n")
    cells = ["a", "1.00", "2.00", "0.50"] + ["1 %"] * 7 + ["1", "0.1 / 0.2", "`cmd`", "cpu"]
    update_doc(str(doc), cells)
    update_doc(str(doc), ["b"] + cells[1:])
    text = doc.read_text()
    # Hand-written notes below the table survive the next update.
    doc.write_text(text.rstrip("\n") + "\n\nNotes written by hand.\n")
    update_doc(str(doc), ["a", "9.00"] + cells[2:])
    text = doc.read_text()
    assert "- kept" in text and "Notes written by hand." in text and text.count(SECTION) == 1
    rows = [line for line in text[text.index(SECTION) :].splitlines() if line.startswith("| ") and "label" not in line]
    assert [r.split("|")[1].strip() for r in rows] == ["b", "a"]
    assert rows[1].split("|")[2].strip() == "9.00"


def test_bench_train_measures_loop_and_bare_step(tmp_path: Path, synth_world, micro_model, micro_index) -> None:
    doc = tmp_path / "benchmarks.md"
    out = tmp_path / "bench"
    rc = main(
        [
            "bench",
            "train",
            "--config",
            "config/train/stage1_dima_cpu.yaml",
            "--dataroot",
            str(synth_world.dataroot),
            "--version",
            synth_world.version,
            "--index",
            str(micro_index),
            "--model-config",
            str(micro_model),
            "--batch-size",
            "1",
            "--steps",
            "2",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--profile-ops",
            "3",
            "--label",
            "micro",
            "--out",
            str(out),
            "--doc",
            str(doc),
        ]
    )
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    for part in ("loop", "bare"):
        assert report[part]["steps"] == 2 and report[part]["samples"] == 2
        sections = report[part]["sections_s"]
        assert set(sections) == {*SECTIONS, "other"}
        # A real step spends time in its forward, loss and backward; the numbers add up to the wall time.
        assert all(sections[name] > 0 for name in ("forward", "loss", "backward", "optimizer"))
        assert sum(sections.values()) == pytest.approx(report[part]["wall_s"], rel=1e-6)
    assert report["loop"]["sections_s"]["data"] > 0  # the loop decodes JPEGs; the bare step has its batch
    assert len(report["history"]) == 3 and all("total" in h for h in report["history"])
    assert len(report["ops"]) == 3 and report["ops"][0]["self_ms_per_step"] > 0
    text = doc.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| micro |"))
    assert "`dima bench train" in row and "logical cores" in row
