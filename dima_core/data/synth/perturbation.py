"""Recovery demonstrations: sideways drift events applied to the expert ego's logged drive.

See :class:`~dima_core.data.synth.config.EgoPerturbationConfig` for why. An event moves the ego-pose origin along
the left normal of the expert's heading by ``d(t)``: a smoothstep drift to ``A`` over ``rise`` seconds, then a
smoothstep return to 0 over ``return`` seconds. The heading becomes the direction of the perturbed path,
``yaw + atan2(d'(t), v(t))``; speed and acceleration stay the expert's (the path is at most a few per cent longer).
Events happen only while the expert drives forward above ``min_speed_mps`` for the whole event, never overlap, and
are drawn from their own generator, so the rest of the world is unchanged.
"""

from __future__ import annotations

import numpy as np

from dima_core.data.synth.config import EgoPerturbationConfig


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3.0 - 2.0 * u)


def _smoothstep_rate(u: np.ndarray) -> np.ndarray:
    """d smoothstep / du."""
    inside = (u > 0.0) & (u < 1.0)
    return np.where(inside, 6.0 * u * (1.0 - u), 0.0)


def drift_offsets(
    times: np.ndarray, speed: np.ndarray, cfg: EgoPerturbationConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, list[tuple[float, float, float]]]:
    """Sideways offset d (K,) metres (left positive), its rate d' (K,) m/s, and the events (start s, end s, A m).

    ``times`` (K,) seconds, ``speed`` (K,) the expert's signed speed at those times.
    """
    d = np.zeros_like(times, dtype=float)
    rate = np.zeros_like(times, dtype=float)
    events: list[tuple[float, float, float]] = []
    if cfg.events_per_minute <= 0.0 or cfg.max_offset_m <= 0.0 or len(times) < 2:
        return d, rate, events
    fast = speed > cfg.min_speed_mps
    t, t_end = float(times[0]), float(times[-1])
    mean_gap = 60.0 / cfg.events_per_minute
    while True:
        t += float(rng.exponential(mean_gap))
        rise = float(rng.uniform(*cfg.rise_s))
        back = float(rng.uniform(*cfg.return_s))
        amp = float(rng.uniform(cfg.min_offset_m, cfg.max_offset_m)) * (1.0 if rng.random() < 0.5 else -1.0)
        if t + rise + back > t_end:
            break
        span = (times >= t) & (times <= t + rise + back)
        if not fast[span].all():
            continue  # slow, stopped or reversing somewhere in the event: skip it (the clock has moved on)
        u_rise = (times - t) / rise
        u_back = (times - t - rise) / back
        in_rise = span & (times < t + rise)
        in_back = span & (times >= t + rise)
        d = np.where(in_rise, amp * _smoothstep(u_rise), d)
        d = np.where(in_back, amp * (1.0 - _smoothstep(u_back)), d)
        rate = np.where(in_rise, amp * _smoothstep_rate(u_rise) / rise, rate)
        rate = np.where(in_back, -amp * _smoothstep_rate(u_back) / back, rate)
        events.append((t, t + rise + back, amp))
        t += rise + back
    return d, rate, events


def perturb_ego_record(
    times: np.ndarray, ego: np.ndarray, cfg: EgoPerturbationConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list[tuple[float, float, float]]]:
    """The perturbed copy of a simulation record's ego (K, 5) x, y, yaw, signed speed, acceleration, and the
    events. Columns 3 and 4 are unchanged."""
    d, rate, events = drift_offsets(times, ego[:, 3], cfg, rng)
    out = ego.copy()
    if not events:
        return out, events
    yaw = ego[:, 2]
    out[:, 0] = ego[:, 0] - d * np.sin(yaw)
    out[:, 1] = ego[:, 1] + d * np.cos(yaw)
    heading_change = np.arctan2(rate, np.maximum(ego[:, 3], 1e-3))
    out[:, 2] = np.arctan2(np.sin(yaw + heading_change), np.cos(yaw + heading_change))
    return out, events


__all__ = ["drift_offsets", "perturb_ego_record"]
