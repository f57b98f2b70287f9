"""`dima sim run` end to end on a tiny world: a real exported planner (random weights) beside the baselines,
the report, the table, the videos and summaries; bad input gets a clear error and exit code 2."""

from __future__ import annotations

import json

import pytest
import yaml

from dima_core.cli import main as dima_main
from dima_core.viz.compose import count_video_frames
from planner_node_helpers import export_micro_onnx


@pytest.fixture(scope="module")
def tiny_configs(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim_cli")
    world = root / "world.yaml"
    world.write_text(yaml.safe_dump({"scene_seconds": 20.0, "camera": {"width": 96, "height": 54}}))
    sim = root / "sim.yaml"
    sim.write_text(yaml.safe_dump({"world_config": str(world), "episode_seconds": 3.0}))
    onnx = export_micro_onnx(root)
    return root, sim, onnx


def test_sim_run_writes_report_table_and_videos(tiny_configs, capsys):
    root, sim, onnx = tiny_configs
    out = root / "run"
    code = dima_main(
        ["sim", "run", "--policy", f"onnx:{onnx}", "--scenarios", "cruise", "--sim-config", str(sim), "--out", str(out)]
    )
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    policies = {e["policy"] for e in report["episodes"]}
    planner = next(p for p in policies if p.startswith("planner"))
    assert {"expert", "log_replay", "const_velocity", planner} == policies
    assert "NC" in report["formula"] and report["command"].startswith("dima sim run")
    table = (out / "table.md").read_text()
    for name in ("expert", "log_replay", "const_velocity", planner):
        assert name in table and name in printed
    videos = sorted((out / "episodes").glob("*.mp4"))
    assert len(videos) == 1 and "planner" in videos[0].name  # baselines get PNG summaries only
    assert count_video_frames(videos[0]) == 5  # 3 s = keyframes 0 .. 2.5 s; plans at 0.0 .. 2.0 s (none at the end)
    assert len(list((out / "episodes").glob("*.png"))) == 4


def test_sim_run_refuses_bad_input(tiny_configs, capsys, tmp_path):
    root, sim, _ = tiny_configs
    assert dima_main(["sim", "run", "--scenarios", "flying", "--sim-config", str(sim), "--out", str(tmp_path)]) == 2
    assert "unknown scenario" in capsys.readouterr().out
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x00" * 64)
    assert (
        dima_main(
            [
                "sim",
                "run",
                "--policy",
                f"onnx:{broken}",
                "--scenarios",
                "cruise",
                "--sim-config",
                str(sim),
                "--out",
                str(tmp_path),
            ]
        )
        == 2
    )
    assert "does not load" in capsys.readouterr().out
    bad_cfg = tmp_path / "bad.yaml"
    bad_cfg.write_text("planning_hz: -3\n")
    assert dima_main(["sim", "run", "--scenarios", "cruise", "--sim-config", str(bad_cfg), "--out", str(tmp_path)]) == 2
    assert "planning_hz" in capsys.readouterr().err
