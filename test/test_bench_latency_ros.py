"""``dima bench latency``'s ``ros`` pipeline over real DDS: the planner node (own process, torch backend, micro model
with random weights) fed six JPEG cameras + CameraInfo, odometry, acceleration and command by a separate publisher
node; a few frames are timed and every reported field is consistent (pipeline >= model >= 0 per frame, overhead =
pipeline - model, the node's own numbers paired with the right frame), and the report table is written."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from ros_helpers.testing import require_ros
from training_fixtures import write_micro_model_config


@pytest.mark.ros
def test_ros_pipeline_reports_sane_per_frame_timings(tmp_path: Path) -> None:
    require_ros()
    from benchmarks import latency as bench_latency

    parser = argparse.ArgumentParser()
    bench_latency.add_parser(parser.add_subparsers())
    yaml_path = write_micro_model_config(tmp_path)
    args = parser.parse_args(
        [
            "latency",
            "--configs",
            str(yaml_path),
            "--backends",
            "torch",
            "--pipelines",
            "ros",
            "--iters",
            "3",
            "--warmup",
            "1",
            "--ros-rate",
            "2",
            "--ros-image-size",
            "320x180",
            "--doc",
            "",
        ]
    )
    case = bench_latency.BenchCase(
        yaml_path.stem, yaml_path, "torch", args.device, args.threads, args.warmup, None, "fp32", args.engine_dir
    )
    row = bench_latency._run_ros(case, args)
    res = row.result
    assert res is not None, row.note
    assert row.description == "node: torch on cpu"
    assert res.cameras == 6 and res.image_size == (320, 180) and res.jpeg_kib > 1.0
    assert 2 <= res.frames_planned <= res.frames_sent <= 9
    n = res.frames_planned
    assert len(res.model_ms) == len(res.processing_ms) == len(res.node_latency_ms) == len(res.overhead_ms) == n
    assert len(res.input_ms) == n
    for pipeline, inp, model, processing, node_latency, overhead in zip(
        res.pipeline_ms,
        res.input_ms,
        res.model_ms,
        res.processing_ms,
        res.node_latency_ms,
        res.overhead_ms,
        strict=True,
    ):
        # The trajectory is published after the model ran, and the model runs inside the node's processing, which
        # starts after the inputs arrived and ends when the node measures its own latency.
        assert pipeline >= model >= 0.0
        assert processing >= model
        assert pipeline >= inp >= 0.0
        assert node_latency >= inp + model
        assert overhead == pytest.approx(pipeline - model)
        assert pipeline < 60_000.0  # same clock on both sides: a sane magnitude, not an epoch offset
    summary = res.summary()
    assert summary["pipeline"]["p50"] >= summary["model"]["p50"] >= 0.0
    assert summary["overhead"]["p99"] >= summary["overhead"]["p50"] > 0.0
    assert res.node_counters.get("trajectories") not in (None, "0")

    table = "\n".join(bench_latency._ros_table(args, [row]))
    assert "### ROS overhead" in table and "| node: torch on cpu |" in table and "320x180" in table
