"""Results-file interface (round trip and errors) and the baselines (constant velocity, AD-MLP)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dima_core.eval.baselines import (
    ADMLP_INPUT_DIM,
    ADMLPBaseline,
    ADMLPConfig,
    ConstantVelocityBaseline,
    admlp_features,
    constant_velocity_plan,
)
from dima_core.eval.evaluate import baseline_planners, combine_reports, evaluate_planners, report_tables
from dima_core.eval.results_file import (
    ResultsFileError,
    load_results,
    match_tokens,
    write_results,
)
from eval_fixtures import TIMES, make_sample, straight

# ------------------------------------------------------------------------------------------------------------ results


def test_results_round_trip(tmp_path):
    trajs = {"tokA": straight(5.0), "tokB": straight(2.0, y=0.25)}
    path = tmp_path / "sub" / "results.json"
    write_results(path, trajs, convention_note="ego frame, positions", meta={"method": "test"})
    loaded = load_results(path, known_tokens=["tokA", "tokB", "tokC"])
    assert loaded.convention_note == "ego frame, positions"
    assert loaded.meta["method"] == "test"
    assert set(loaded.trajectories) == {"tokA", "tokB"}
    for tok, traj in trajs.items():
        np.testing.assert_array_equal(loaded.trajectories[tok], traj)
        assert loaded.trajectories[tok].shape == (6, 2)
    raw = json.loads(path.read_text())
    assert raw["results"]["tokA"]["trajectory"][0] == [2.5, 0.0]
    match = match_tokens(loaded, ["tokC", "tokA"])
    assert match.scored == ["tokA"] and match.missing == ["tokC"] and match.extra == ["tokB"]


def _write(tmp_path, text: str):
    path = tmp_path / "r.json"
    path.write_text(text)
    return path


def _good_traj() -> list:
    return straight(5.0).tolist()


def test_results_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_results(tmp_path / "absent.json")
    with pytest.raises(ResultsFileError, match="invalid JSON at line 1"):
        load_results(_write(tmp_path, '{"results": {'))
    with pytest.raises(ResultsFileError, match="'results'"):
        load_results(_write(tmp_path, '{"meta": {}}'))
    # Wrong shape: 5 waypoints; the message names the token.
    bad = {"results": {"tokX": {"trajectory": _good_traj()[:5]}}}
    with pytest.raises(ResultsFileError, match=r"tokX.*6 \[x, y\] points, got 5"):
        load_results(_write(tmp_path, json.dumps(bad)))
    bad = {"results": {"tokX": {"trajectory": [[1.0, 2.0, 3.0]] * 6}}}
    with pytest.raises(ResultsFileError, match=r"tokX.*waypoint 0 must be \[x, y\]"):
        load_results(_write(tmp_path, json.dumps(bad)))
    bad = {"results": {"tokX": {"traj": _good_traj()}}}
    with pytest.raises(ResultsFileError, match="tokX.*'trajectory' key"):
        load_results(_write(tmp_path, json.dumps(bad)))
    # NaN, as Python's json writes it (a bare NaN constant) and as a string.
    text = json.dumps({"results": {"tokN": {"trajectory": [[float("nan"), 0.0]] + _good_traj()[1:]}}})
    with pytest.raises(ResultsFileError, match="non-finite value NaN"):
        load_results(_write(tmp_path, text))
    bad = {"results": {"tokS": {"trajectory": [["1", 0.0]] + _good_traj()[1:]}}}
    with pytest.raises(ResultsFileError, match="tokS.*non-number"):
        load_results(_write(tmp_path, json.dumps(bad)))
    # Unknown token: named in the error.
    ok = {
        "meta": {"convention_note": ""},
        "results": {"tokA": {"trajectory": _good_traj()}, "nosuchtoken": {"trajectory": _good_traj()}},
    }
    with pytest.raises(ResultsFileError, match="unknown sample token 'nosuchtoken'"):
        load_results(_write(tmp_path, json.dumps(ok)), known_tokens=["tokA"])
    # Writing refuses what loading would refuse.
    with pytest.raises(ResultsFileError, match="NaN"):
        write_results(tmp_path / "w.json", {"t": np.full((6, 2), np.nan)})
    with pytest.raises(ResultsFileError, match=r"shape \(6, 2\)"):
        write_results(tmp_path / "w.json", {"t": np.zeros((3, 2))})


# ------------------------------------------------------------------------------------------------------------ baselines


def test_constant_velocity_baseline():
    sample = make_sample("s", straight(4.0), speed=4.0, yaw_rate=0.3)
    plan = ConstantVelocityBaseline().plan(sample)  # ego status speed, straight ahead; yaw rate unused
    np.testing.assert_allclose(plan, np.stack([4.0 * TIMES, np.zeros(6)], -1))
    # Constant turn rate: v = 1 m/s, w = pi/6 rad/s -> after 3 s a quarter circle of radius 6/pi.
    ctrv = constant_velocity_plan(1.0, np.pi / 6)
    np.testing.assert_allclose(ctrv[-1], [6 / np.pi, 6 / np.pi], atol=1e-12)
    s2 = make_sample("s2", straight(4.0), speed=1.0, yaw_rate=np.pi / 6)
    np.testing.assert_allclose(ConstantVelocityBaseline(use_yaw_rate=True).plan(s2), ctrv)
    # Past displacement: the previous keyframe 2 m behind and 0.5 m right -> v = (4, 1) m/s.
    past = np.array([[-8.0, -2.0], [-6.0, -1.5], [-4.0, -1.0], [-2.0, -0.5]])
    s3 = make_sample("s3", straight(4.0), speed=float("nan"), ego_past=past)
    expected = np.stack([4.0 * TIMES, 1.0 * TIMES], -1)
    np.testing.assert_allclose(ConstantVelocityBaseline(source="past_displacement").plan(s3), expected)
    # The ego-status source falls back to the past displacement when the speed is unknown.
    np.testing.assert_allclose(ConstantVelocityBaseline().plan(s3), expected)


def test_admlp_features_fit_save_load(tmp_path):
    rng = np.random.default_rng(0)
    samples = []
    for i in range(32):
        v = float(rng.uniform(0.0, 12.0))
        samples.append(make_sample(f"s{i}", straight(v), speed=v))
    feats = admlp_features(samples[0])
    assert feats.shape == (ADMLP_INPUT_DIM,) and feats.dtype == np.float32
    assert feats[-1] == 1.0  # straight command, VAD order (right, left, straight)
    # Small and full-batch so it trains in well under a second (the first optimizer in a process also pays a
    # one-off torch._dynamo import of a few seconds).
    config = ADMLPConfig(hidden=32, layers=2, epochs=120, batch_size=32, lr=1e-2)
    model = ADMLPBaseline.fit_samples(samples, config)
    errors = [np.abs(model.plan(s) - s.ego_future).max() for s in samples]
    # The future is a linear function of the speed input: the MLP fits it to well under a metre at 3 s
    # (targets reach 36 m; the untrained net is off by that much).
    assert max(errors) < 1.0, max(errors)
    again = ADMLPBaseline.fit_samples(samples, config)
    np.testing.assert_array_equal(again.plan(samples[3]), model.plan(samples[3]))  # seeded: deterministic
    model.save(tmp_path / "admlp.pt")
    loaded = ADMLPBaseline.load(tmp_path / "admlp.pt")
    assert loaded.config == config
    np.testing.assert_array_equal(loaded.plan(samples[5]), model.plan(samples[5]))
    with pytest.raises(ValueError, match="full 6-step"):
        ADMLPBaseline.fit_samples([make_sample("x", straight(1.0), ego_future_mask=[1, 1, 1, 0, 0, 0])])


def test_evaluate_planners_shares_samples_and_reports():
    samples = [
        make_sample(f"s{i}", straight(3.0 + i), speed=3.0 + i, tags=["overtake"] if i == 0 else []) for i in range(3)
    ]
    samples.append(make_sample("short", straight(1.0), ego_future_mask=[1, 1, 1, 1, 1, 0]))
    planners = {"gt": lambda s: s.ego_future, **baseline_planners()}
    reports = evaluate_planners(samples, planners)
    assert set(reports) == {"gt", "const_velocity"}
    for rep in reports.values():
        assert rep["num_samples"] == 3 and rep["num_skipped_incomplete_future"] == 1
    assert reports["gt"]["vad"]["l2"]["avg"] == 0.0
    # Constant velocity equals the GT here (straight lines at the current speed).
    assert reports["const_velocity"]["uniad"]["l2"]["3s"] == pytest.approx(0.0, abs=1e-6)
    combined = combine_reports("gt", reports, split="val")
    assert combined["method"] == "gt" and "const_velocity" in combined["baselines"]
    assert "formula" not in combined["baselines"]["const_velocity"]
    assert list(combined)[-1] == "formula" and combined["split"] == "val"
    text = report_tables(reports)
    assert "overall" in text and "split: overtake" in text and "const_velocity" in text
