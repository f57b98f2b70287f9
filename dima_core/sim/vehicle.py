"""The ego vehicle of the closed-loop simulator: a rear-axle kinematic bicycle with steering and longitudinal
actuator limits.

Frames: the global map frame of the scene (x, y metres, yaw radians counter-clockwise from +x). The reference point
is the ego-pose origin (rear axle), as in :mod:`dima_core.sim.episode_log`. Speeds are signed along the heading
(negative: reversing); ``a`` is the longitudinal acceleration, the rate of change of that signed speed.

One :meth:`KinematicBicycle.step` over ``dt``:

1. Steering: the command is clipped to +/- ``max_steer_rad``; the road-wheel angle moves towards it by at most
   ``max_steer_rate_rad_s * dt``, linearly during the step.
2. Longitudinal: the command is clipped to the limits of the current direction of motion (traction up to
   ``max_accel``, braking up to ``max_decel``; a car at rest starts in the direction of the command's sign), then
   the acceleration moves towards it by at most ``max_jerk * dt`` and is held over the step.
3. Speed: ``v + a t``, stopped at zero and at the speed limit of the direction of motion. The sign of motion changes
   only through standstill: braking that would carry the speed through zero within the step ends it at rest, and
   a car at rest has no acceleration (the brakes hold it), so it only leaves rest by a command that asks to. Coming
   to rest or reaching the speed limit ends the acceleration at once: the two events where the jerk limit does not
   apply.
4. Pose: the signed distance travelled (exact for the piecewise constant acceleration of 3) along a circular arc
   whose curvature is the mean of the start and end curvatures tan(steer) / L. Exact when the steering is constant
   over the step (a circle of radius L / tan(steer)); for a steering ramp the heading is exact at constant speed if
   the curvature ramps linearly, and the error is second order in dt otherwise.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from dima_core.config import ranged
from dima_core.data.geometry import wrap_angle
from dima_core.data.synth.can_bus import WHEELBASE_M


def check_config_ranges(cfg: object) -> None:
    """Check every numeric field of a config dataclass against its :func:`~dima_core.config.ranged` bounds and
    for being finite, so a config built in code fails like one loaded from YAML. Raises ValueError naming the field.
    """
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        if not math.isfinite(value):
            raise ValueError(f"{f.name} must be finite, got {value!r}")
        lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
        if lo is not None and value < lo:
            raise ValueError(f"{f.name} = {value!r} is out of range: must be >= {lo}")
        if hi is not None and value > hi:
            raise ValueError(f"{f.name} = {value!r} is out of range: must be <= {hi}")


@dataclass
class VehicleConfig:
    """Geometry and actuator limits of the ego (defaults: the nuScenes Renault Zoe, a fast electric steering)."""

    wheelbase_m: float = ranged(WHEELBASE_M, lo=0.5, hi=10.0, help="rear axle to front axle, metres")
    max_steer_rad: float = ranged(
        0.6, lo=0.01, hi=1.2, help="largest road-wheel angle; L / tan(0.6) = 3.8 m rear-axle turning radius"
    )
    max_steer_rate_rad_s: float = ranged(
        1.0,
        lo=0.01,
        hi=20.0,
        help="road-wheel angle rate, rad/s; 1.0 is ~860 deg/s at the steering wheel with a 15:1 "
        "ratio, a fast by-wire steering: lock to lock at a three-point turn's cusp takes ~1 s",
    )
    max_accel: float = ranged(3.0, lo=0.1, hi=20.0, help="largest traction acceleration, m/s^2 (either direction)")
    max_decel: float = ranged(8.0, lo=0.1, hi=20.0, help="hardest braking, m/s^2 (a positive number)")
    max_jerk: float = ranged(8.0, lo=0.1, hi=1000.0, help="rate limit of the longitudinal acceleration, m/s^3")
    max_speed: float = ranged(25.0, lo=0.1, hi=100.0, help="forward speed limit, m/s")
    max_reverse_speed: float = ranged(5.0, lo=0.0, hi=30.0, help="reverse speed limit, m/s (0: no reverse gear)")

    def validate(self) -> None:
        check_config_ranges(self)

    @property
    def min_turn_radius_m(self) -> float:
        """Rear-axle turning radius at full lock."""
        return self.wheelbase_m / math.tan(self.max_steer_rad)


@dataclass(frozen=True)
class VehicleState:
    """The ego at one instant: rear-axle position x, y (m) and yaw (rad) in the global frame, signed speed v (m/s),
    longitudinal acceleration a (m/s^2) and road-wheel steering angle steer (rad, positive turns left).

    Immutable: derive a changed state with ``dataclasses.replace``.
    """

    x: float
    y: float
    yaw: float
    v: float = 0.0
    a: float = 0.0
    steer: float = 0.0

    def as_array(self) -> np.ndarray:
        """(6,) x, y, yaw, v, a, steer: a row of ``EpisodeLog.ego`` (columns ``EGO_*``)."""
        return np.array([self.x, self.y, self.yaw, self.v, self.a, self.steer], dtype=float)

    def is_finite(self) -> bool:
        return all(math.isfinite(c) for c in (self.x, self.y, self.yaw, self.v, self.a, self.steer))


def _clip(value: float, lo: float, hi: float) -> float:
    return min(max(value, lo), hi)


def _sign(value: float) -> int:
    return 1 if value > 0.0 else (-1 if value < 0.0 else 0)


class KinematicBicycle:
    """Rear-axle kinematic bicycle: x' = v cos(yaw), y' = v sin(yaw), yaw' = v tan(steer) / L, with the limits of
    a :class:`VehicleConfig`. Stateless apart from the config: :meth:`step` maps a state to the next one."""

    def __init__(self, cfg: VehicleConfig | None = None):
        self.cfg = cfg if cfg is not None else VehicleConfig()
        self.cfg.validate()

    def step(self, state: VehicleState, accel_cmd: float, steer_cmd: float, dt: float) -> VehicleState:
        """The state ``dt`` seconds after ``state`` under the commands (m/s^2 for the signed speed, road-wheel rad).

        A state outside the limits (only a hand-made one) is first brought inside them. Raises ValueError for a
        non-finite command or state, or dt <= 0.
        """
        cfg = self.cfg
        accel_cmd, steer_cmd, dt = float(accel_cmd), float(steer_cmd), float(dt)
        if not (math.isfinite(dt) and dt > 0.0):
            raise ValueError(f"dt must be a positive finite number of seconds, got {dt!r}")
        if not (math.isfinite(accel_cmd) and math.isfinite(steer_cmd)):
            raise ValueError(f"commands must be finite, got accel_cmd={accel_cmd!r}, steer_cmd={steer_cmd!r}")
        if not state.is_finite():
            raise ValueError(f"vehicle state has non-finite values: {state}")

        # 1. Steering.
        lock = cfg.max_steer_rad
        steer0 = _clip(float(state.steer), -lock, lock)
        max_delta = cfg.max_steer_rate_rad_s * dt
        steer1 = steer0 + _clip(_clip(steer_cmd, -lock, lock) - steer0, -max_delta, max_delta)

        # 2. Longitudinal acceleration. At rest the brakes hold the car (no acceleration) and the command's sign
        # chooses the direction it leaves rest in.
        v0 = _clip(float(state.v), -cfg.max_reverse_speed, cfg.max_speed)
        direction = _sign(v0) if v0 != 0.0 else _sign(accel_cmd)
        if direction > 0:
            a_lo, a_hi, v_lo, v_hi = -cfg.max_decel, cfg.max_accel, 0.0, cfg.max_speed
        elif direction < 0:
            a_lo, a_hi, v_lo, v_hi = -cfg.max_accel, cfg.max_decel, -cfg.max_reverse_speed, 0.0
        else:
            a_lo = a_hi = v_lo = v_hi = 0.0
        a0 = float(state.a) if v0 != 0.0 else 0.0
        max_da = cfg.max_jerk * dt
        a1 = a0 + _clip(_clip(accel_cmd, a_lo, a_hi) - a0, -max_da, max_da)
        a1 = _clip(a1, a_lo, a_hi)

        # 3. Speed, cut at the bound it reaches first (zero when braking, the speed limit when accelerating).
        v_end = v0 + a1 * dt
        if v_end > v_hi:
            t_bound, v1 = (v_hi - v0) / a1 if a1 != 0.0 else 0.0, v_hi
        elif v_end < v_lo:
            t_bound, v1 = (v_lo - v0) / a1 if a1 != 0.0 else 0.0, v_lo
        else:
            t_bound, v1 = dt, v_end
        t_bound = _clip(t_bound, 0.0, dt)
        ds = v0 * t_bound + 0.5 * a1 * t_bound * t_bound + v1 * (dt - t_bound)
        bounded = t_bound < dt or v1 == 0.0
        a_out = 0.0 if bounded else a1

        # 4. Pose along a constant-curvature arc of signed length ds (chord form: stable for straight motion).
        L = cfg.wheelbase_m
        kappa = 0.5 * (math.tan(steer0) + math.tan(steer1)) / L
        dyaw = kappa * ds
        half = 0.5 * dyaw
        chord = ds * (math.sin(half) / half if abs(half) > 1e-6 else 1.0 - half * half / 6.0)
        heading = state.yaw + half
        return VehicleState(
            x=float(state.x + chord * math.cos(heading)),
            y=float(state.y + chord * math.sin(heading)),
            yaw=float(wrap_angle(state.yaw + dyaw)),
            v=float(v1),
            a=float(a_out),
            steer=float(steer1),
        )


__all__ = ["KinematicBicycle", "VehicleConfig", "VehicleState", "check_config_ranges"]
