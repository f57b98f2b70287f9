"""`dima eval --results` end to end on a synthetic nuScenes-format world: GT trajectories score zero L2."""

from __future__ import annotations

import json

import pytest

from dima_core.cli import main
from dima_core.constants import COMMAND_STRAIGHT
from dima_core.eval.results_file import write_results
from eval_fixtures import EvalWorld


def _run(argv: list[str]) -> int:
    """`dima eval ...` through the real entry point (dima_core.cli.main), in this process."""
    return main(["eval", *argv])


def test_eval_gt_results_gives_zero_l2(eval_world: EvalWorld, tmp_path, capsys):  # noqa: F811
    val = [s for s in eval_world.samples if s.split == "val"]
    train = [s for s in eval_world.samples if s.split == "train"]
    assert val and train
    # GT for every sample but one val sample (reported as missing) and the train samples (outside the split).
    dropped = val[0].token
    results = {s.token: s.ego_future for s in eval_world.samples if s.token != dropped}
    results_path = tmp_path / "gt_results.json"
    write_results(results_path, results, meta={"method": "ground truth"})
    out = tmp_path / "report.json"
    common = ["--dataroot", str(eval_world.dataroot), "--version", eval_world.version]
    admlp_path = tmp_path / "admlp.pt"
    argv = ["--results", str(results_path), *common, "--out", str(out), "--admlp-epochs", "20"]
    assert _run([*argv, "--admlp-model", str(admlp_path)]) == 0
    assert admlp_path.is_file()  # fitted on the train split and saved for the next run

    report = json.loads(out.read_text())
    scored = [s for s in val if s.token != dropped and s.has_full_future]
    assert report["num_samples"] == len(scored) > 0
    assert report["num_missing_results"] == 1 and report["missing_result_tokens"] == [dropped]
    assert report["num_results_outside_split"] == len(train)
    assert report["num_skipped_incomplete_future"] == sum(not s.has_full_future for s in val if s.token != dropped)
    for conv in ("vad", "uniad"):
        assert all(v == pytest.approx(0.0, abs=1e-5) for v in report[conv]["l2"].values())
        # The GT can never score a collision: its own colliding steps are the ones that never count.
        assert all(v == 0.0 for v in report[conv]["collision"].values())
    assert set(report["baselines"]) == {"const_velocity", "ad_mlp"}
    for rep in report["baselines"].values():
        assert rep["num_samples"] == report["num_samples"]  # same samples for every row
        assert rep["vad"]["l2"]["3s"] > 0.0
    assert set(report["splits"]) >= {"overtake", "three_point_turn", "resume_from_stop", "turning"}
    # Split membership: the GT command (the reader derives it from the GT future, as the metric does) and tags.
    assert report["splits"]["turning"]["num_samples"] == sum(s.command != COMMAND_STRAIGHT for s in scored)
    for name in ("overtake", "three_point_turn", "resume_from_stop"):
        assert report["splits"][name]["num_samples"] == sum(name in s.tags for s in scored)
    assert "VAD/ST-P3 convention" in report["formula"] and "UniAD convention" in report["formula"]
    printed = capsys.readouterr().out
    assert "overall" in printed and "gt_results" in printed and "const_velocity" in printed


def test_eval_rejects_unknown_token(eval_world: EvalWorld, tmp_path, capsys):  # noqa: F811
    sample = eval_world.samples[0]
    path = tmp_path / "bad.json"
    write_results(path, {sample.token: sample.ego_future, "not-a-sample-token": sample.ego_future})
    rc = _run(
        ["--results", str(path), "--dataroot", str(eval_world.dataroot), "--version", eval_world.version, "--no-admlp"]
    )
    assert rc == 2  # dima's exit status for a user error
    assert "unknown sample token 'not-a-sample-token'" in capsys.readouterr().err
