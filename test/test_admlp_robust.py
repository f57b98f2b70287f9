"""AD-MLP's standardisation is robust to features that did not vary in training: spreads floored at a physical scale,
inputs clipped to the fitted range, and out-of-range inputs warned about and reported (dima_core/eval/baselines.py).

The failure it guards against (issue 10): fitted on straight driving only, the yaw rate's spread was floored at 1e-6,
so a turning test sample arrived ~1e5 sigmas out and the planned trajectory was hundreds of metres long."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from dima_core.cli import main
from dima_core.eval.baselines import (
    ADMLP_FEATURE_NAMES,
    ADMLP_SPREAD_FLOOR,
    ADMLPBaseline,
    ADMLPConfig,
    admlp_features,
    robust_statistics,
)
from dima_core.eval.results_file import write_results
from eval_fixtures import make_sample, straight

YAW = ADMLP_FEATURE_NAMES.index("yaw_rate")
FAST = ADMLPConfig(hidden=32, layers=2, epochs=600, batch_size=64, lr=3e-3, seed=0)


@pytest.fixture(scope="module")
def straight_only() -> ADMLPBaseline:
    """Fitted on straight driving at 4..12 m/s: command always straight, a yaw rate of sensor noise only
    (~1e-3 rad/s: above the old 1e-6 floor, so the old standardisation divided by it)."""
    speeds = np.linspace(4.0, 12.0, 64)
    noise = np.random.default_rng(0).normal(0.0, 1e-3, len(speeds))
    samples = [
        make_sample(f"s{i}", straight(v), speed=v, yaw_rate=w, split="train")
        for i, (v, w) in enumerate(zip(speeds, noise, strict=True))
    ]
    return ADMLPBaseline.fit_samples(samples, FAST)


def test_constant_features_get_the_physical_floor_not_1e6() -> None:
    features = np.zeros((10, len(ADMLP_FEATURE_NAMES)), np.float32)
    features[:, 0] = np.linspace(0.0, 20.0, 10)  # the speed varies a lot, everything else is constant
    stats = robust_statistics(features)
    assert stats["std"][0] == pytest.approx(features[:, 0].std())
    assert np.array_equal(stats["std"][1:], ADMLP_SPREAD_FLOOR[1:])
    assert stats["std"][YAW] == pytest.approx(0.1)  # rad/s
    assert stats["lo"][0] == 0.0 and stats["hi"][0] == 20.0


def test_unseen_yaw_rate_is_clipped_warned_and_reported(
    straight_only: ADMLPBaseline, caplog: pytest.LogCaptureFixture
) -> None:
    hi = float(straight_only.fitted_range()[1][YAW])  # the largest (noise) yaw rate of the training split
    base = make_sample("t", straight(8.0), speed=8.0, yaw_rate=hi)
    turning = make_sample("u", straight(8.0), speed=8.0, yaw_rate=0.4)  # ~23 deg/s, never seen in training
    with caplog.at_level(logging.WARNING, logger="dima_core.eval.baselines"):
        plan_in_range = straight_only.plan(base)
        assert not caplog.records  # in range: silent
        plan_turning = straight_only.plan(turning)
    # Clipped to the fitted range: exactly the plan of the in-range sample at its edge, a sane 8 m/s trajectory.
    assert np.array_equal(plan_turning, plan_in_range)
    assert 20.0 < plan_turning[-1, 0] < 28.0 and abs(plan_turning[-1, 1]) < 2.0
    assert len(caplog.records) == 1 and "yaw_rate" in caplog.text and "4.0 spreads outside" in caplog.text
    straight_only.plan(turning)  # a second time: counted, not warned again
    assert len(caplog.records) == 1
    report = straight_only.input_report()
    assert report["planned_samples"] == 3 and report["samples_out_of_range"] == 2
    yaw = report["features_out_of_range"]["yaw_rate"]
    assert yaw["samples"] == 2 and yaw["max_spreads_outside"] == pytest.approx((0.4 - hi) / 0.1, abs=1e-3)
    assert yaw["fitted_range"][1] == pytest.approx(hi) and -0.01 < yaw["fitted_range"][0] < 0.0
    assert set(report["features_out_of_range"]) == {"yaw_rate"}


def test_without_the_floor_the_same_input_would_explode(straight_only: ADMLPBaseline) -> None:
    """What the old standardisation (spread floored at 1e-6) feeds the same network: the guard is not vacuous."""
    x = torch.as_tensor(admlp_features(make_sample("u", straight(8.0), speed=8.0, yaw_rate=0.4))[None])
    net = straight_only.model
    train_yaw_std = float(net.hi[YAW] - net.lo[YAW]) / 4  # noise of ~1e-3 rad/s: > 1e-6, so it was kept
    old_std = net.std.clone()
    old_std[YAW] = train_yaw_std
    old_z = (x - net.mean) / old_std
    assert float(old_z[0, YAW].abs()) > 50.0
    with torch.no_grad():
        exploded = net.net(old_z).view(-1, 6, 2)
        robust = net(x)
    assert float(exploded.abs().max()) > 3 * float(robust.abs().max())


def test_save_load_keeps_the_range_and_legacy_models_still_load(
    straight_only: ADMLPBaseline, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "admlp.pt"
    straight_only.save(path)
    loaded = ADMLPBaseline.load(path)
    sample = make_sample("u", straight(8.0), speed=8.0, yaw_rate=0.4)
    assert np.array_equal(loaded.plan(sample), straight_only.plan(sample))
    assert [r.tolist() for r in loaded.fitted_range()] == [r.tolist() for r in straight_only.fitted_range()]
    # A file written before the fitted range existed: loads, says so, clips nothing (and has no range to check).
    blob = torch.load(path, weights_only=True)
    del blob["state_dict"]["lo"], blob["state_dict"]["hi"]
    torch.save(blob, tmp_path / "legacy.pt")
    with caplog.at_level(logging.WARNING, logger="dima_core.eval.baselines"):
        legacy = ADMLPBaseline.load(tmp_path / "legacy.pt")
    assert "predates the fitted-range clipping" in caplog.text
    assert not np.array_equal(legacy.plan(sample), straight_only.plan(sample))  # not clipped
    assert legacy.input_report()["features_out_of_range"] == {}


def test_dima_eval_reports_the_input_range(eval_world, tmp_path: Path) -> None:
    results = {s.token: s.ego_future for s in eval_world.samples}
    results_path = tmp_path / "gt.json"
    write_results(results_path, results, meta={"method": "ground truth"})
    out = tmp_path / "report.json"
    assert (
        main(
            [
                "eval",
                "--results",
                str(results_path),
                "--dataroot",
                str(eval_world.dataroot),
                "--version",
                eval_world.version,
                "--out",
                str(out),
                "--admlp-epochs",
                "5",
            ]
        )
        == 0
    )
    report = json.loads(out.read_text())["baselines"]["ad_mlp"]["input_range"]
    assert report["planned_samples"] == json.loads(out.read_text())["num_samples"] > 0
    assert report["clipped_to_fitted_range"] is True and report["threshold_spreads"] == 1.0
    for entry in report["features_out_of_range"].values():
        assert entry["samples"] > 0 and entry["max_spreads_outside"] >= 1.0
