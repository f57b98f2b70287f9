"""Recovery demonstrations (EgoPerturbationConfig): bounded, consistent, deterministic, off by default."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from dima_core.config import ConfigError, config_from_dict
from dima_core.data.synth.config import EgoPerturbationConfig, SynthConfig
from dima_core.data.synth.perturbation import drift_offsets, perturb_ego_record
from dima_core.data.synth.world import SynthWorld


def _cfg(fraction: float) -> SynthConfig:
    base = SynthConfig(scene_seconds=12.0)
    return replace(
        base, ego_perturbation=replace(base.ego_perturbation, scene_fraction=fraction, events_per_minute=20.0)
    )


def test_offsets_are_bounded_smooth_and_return_to_zero():
    cfg = EgoPerturbationConfig(events_per_minute=30.0, max_offset_m=1.0, min_offset_m=0.5)
    times = np.arange(0, 30.0, 0.1)
    d, rate, events = drift_offsets(times, np.full_like(times, 8.0), cfg, np.random.default_rng(0))
    assert events, "30 events per minute over 30 s must produce some"
    assert np.abs(d).max() <= 1.0 + 1e-9
    for t0, t1, amp in events:
        assert 0.5 <= abs(amp) <= 1.0
        assert abs(d[np.argmin(np.abs(times - t0))]) < 0.05 and abs(d[np.argmin(np.abs(times - t1))]) < 0.05
    outside = np.ones_like(times, bool)
    for t0, t1, _ in events:
        outside &= ~((times >= t0) & (times <= t1))
    assert np.all(d[outside] == 0.0)
    # The rate is the derivative of the offset (finite differences agree).
    assert np.allclose(np.gradient(d, times)[5:-5], rate[5:-5], atol=0.08)


def test_no_events_when_slow_or_reversing():
    cfg = EgoPerturbationConfig(events_per_minute=60.0)
    times = np.arange(0, 20.0, 0.1)
    speed = np.where(times < 10, -1.5, 1.0)  # reversing, then creeping below min_speed_mps
    _, _, events = drift_offsets(times, speed, cfg, np.random.default_rng(1))
    assert events == []


def test_perturbed_drive_is_consistent():
    world = SynthWorld.generate(_cfg(1.0), seed=3, num_scenes=2, scenarios=["cruise"])
    plain = SynthWorld.generate(_cfg(0.0), seed=3, num_scenes=2, scenarios=["cruise"])
    for scene, ref in zip(world.scenes, plain.scenes, strict=True):
        assert "ego_drift" in scene.tags and "ego_drift" not in ref.tags
        a, b = scene.record.ego, ref.record.ego
        lateral = np.hypot(a[:, 0] - b[:, 0], a[:, 1] - b[:, 1])
        assert 0.2 < lateral.max() <= 1.2 + 1e-6
        np.testing.assert_array_equal(a[:, 3:], b[:, 3:])  # speed and acceleration are the expert's
        # Headings follow the perturbed path: direction of travel between steps vs the logged yaw.
        step = np.diff(a[:, :2], axis=0)
        moving = np.linalg.norm(step, axis=1) > 0.3
        travel = np.arctan2(step[moving, 1], step[moving, 0])
        mid_yaw = a[:-1][moving, 2]
        err = np.abs(np.angle(np.exp(1j * (travel - mid_yaw))))
        assert err.max() < 0.05, f"heading differs from the path direction by {err.max():.3f} rad"
        np.testing.assert_array_equal(scene.record.agents, ref.record.agents)  # the traffic is untouched


def test_deterministic_and_off_by_default():
    a = SynthWorld.generate(_cfg(0.5), seed=5, num_scenes=4)
    b = SynthWorld.generate(_cfg(0.5), seed=5, num_scenes=4)
    for x, y in zip(a.scenes, b.scenes, strict=True):
        np.testing.assert_array_equal(x.record.ego, y.record.ego)
    assert SynthConfig().ego_perturbation.scene_fraction == 0.0
    ego, events = perturb_ego_record(
        a.scenes[0].record.times,
        a.scenes[0].record.ego,
        replace(EgoPerturbationConfig(), events_per_minute=0.0),
        np.random.default_rng(0),
    )
    assert events == [] and np.array_equal(ego, a.scenes[0].record.ego)


def test_bad_config_is_a_clear_error():
    with pytest.raises(ConfigError, match="min_offset_m"):
        config_from_dict({"ego_perturbation": {"min_offset_m": 2.0, "max_offset_m": 1.0}}, SynthConfig)
    with pytest.raises(ConfigError, match="rise_s"):
        config_from_dict({"ego_perturbation": {"rise_s": [3.0, 1.0]}}, SynthConfig)
