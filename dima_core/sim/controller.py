"""Plan tracking for the closed-loop simulator: turns the planner's latest 2 Hz plan into acceleration and steering
commands for the :class:`~dima_core.sim.vehicle.KinematicBicycle` at the simulation rate.

A plan is ``FUTURE_STEPS`` (6) waypoints at 0.5 .. 3.0 s in the ego frame of the planning state (x forward, y left,
rear axle). :meth:`TrajectoryTracker.set_plan` puts them in the global frame behind the planning position (time
``plan_time``) and builds a reference in space and time:

* Points closer than ``still_distance_m`` to the previous kept point are that point: the plan stands still there.
* Each moving segment drives forward or in reverse: the first by the sign of its direction against the vehicle
  heading, the next ones by continuity (a segment that turns back by more than 90 degrees is a cusp, a change of
  direction). The plan splits into runs of one direction; a run that ends within ``stop_distance_m`` of its start
  next to another run (a few cm of overshoot before a cusp, noise around a standing point) stands instead.
* Progress along the plan over time is a monotone cubic Hermite curve (PCHIP) through the waypoint times, with zero
  slope at cusps, so the reference speed is continuous, never negative, exactly zero while the plan stands still,
  and zero at cusps. After the last waypoint the reference holds the last point.

:meth:`TrajectoryTracker.command` then controls, in the vehicle's current run:

* Lateral: pure pursuit on the run polyline with the look-ahead point ``max(min_lookahead_m, lookahead_time_s |v|)``
  ahead of the vehicle's projection, or the run's end point when that is nearer (on a circular plan the arc through
  it is the plan's own arc); the steering is held for the last ``min(min_lookahead_m, run length) / 2``. The circle
  through the rear axle tangent to the heading does not depend on the direction of travel, so the same law steers in
  reverse with the look-ahead point behind the car: the geometry is mirrored by construction.
* Longitudinal, along the run's direction of travel (u = gear * v): desired speed = reference speed +
  ``position_gain`` * along-track error to the reference point at time t (never below zero); acceleration =
  reference acceleration + ``speed_gain`` * (desired - u). Moving against the run's direction only brakes; a car at
  rest is never commanded against its run's direction.
* Run end (a cusp, or the plan's end once plans stop coming): when braking at b, built up at the vehicle's jerk limit
  from the present acceleration, would only just stop at the end by the next command, the car brakes until rest with
  the gentlest deceleration (<= b) that stops there, re-solved every command. b = ``stop_decel`` before a cusp and
  the vehicle's ``max_decel`` at the plan's end (with 2 Hz re-planning that braking would start only above ~32 m/s).
* Standing: when the reference stays within ``stop_distance_m`` of the car for ``hold_horizon_s`` and the speed is
  below ``stop_speed_mps``, brake to rest (at the standing point if it is still ahead) and hold, commanding exactly 0
  at rest: no creeping towards a standing point, and no reversing to correct an overshoot the plan does not ask to
  reverse. The wheels turn towards where the run leads later (steering in place at a cusp), not towards the
  scatter of a plan that only stands.
* A run ends once the reference has passed its end and the vehicle stands (within ``stop_distance_m``) there; the
  next run starts in the other direction. At rest the car waits for the steering to come within
  ``start_steer_tolerance_rad`` of its target before it moves off.

Measured tracking errors: docs/sim_vehicle.md (from test/test_sim_controller.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import pairwise

import numpy as np

from dima_core.config import ranged
from dima_core.constants import FUTURE_STEPS, STEP_SECONDS
from dima_core.sim.vehicle import KinematicBicycle, VehicleConfig, VehicleState, check_config_ranges


@dataclass
class ControllerConfig:
    """Gains and thresholds of the :class:`TrajectoryTracker`."""

    lookahead_time_s: float = ranged(0.6, lo=0.0, hi=5.0, help="pure-pursuit look-ahead per m/s of speed, seconds")
    min_lookahead_m: float = ranged(2.5, lo=0.3, hi=30.0, help="shortest pure-pursuit look-ahead distance, metres")
    speed_gain: float = ranged(3.0, lo=0.0, hi=20.0, help="m/s^2 of acceleration per m/s of speed error")
    position_gain: float = ranged(1.5, lo=0.0, hi=20.0, help="m/s of speed correction per m of along-track error")
    still_distance_m: float = ranged(
        0.05, lo=0.0, hi=1.0, help="a plan point closer than this to the previous one is the same point (standing)"
    )
    stop_speed_mps: float = ranged(0.3, lo=0.0, hi=3.0, help="below this speed a standing reference means: stop")
    stop_distance_m: float = ranged(
        0.3,
        lo=0.0,
        hi=3.0,
        help="a standing reference within this distance of the car is reached (hold, do not "
        "creep or shuffle); also the shortest run of a plan that is driven",
    )
    stop_decel: float = ranged(
        4.0,
        lo=0.1,
        hi=20.0,
        help="m/s^2, the most braking used to stop at a cusp and to come to rest at a standing "
        "reference (at the plan's end the car may brake up to the vehicle's max_decel); <= the vehicle's max_decel",
    )
    hold_horizon_s: float = ranged(1.0, lo=0.0, hi=3.0, help="how far ahead the reference is checked for standing")
    start_steer_tolerance_rad: float = ranged(
        0.1, lo=0.0, hi=1.0, help="at rest, move off only once the steering is this close to its target"
    )

    def validate(self) -> None:
        check_config_ranges(self)


@dataclass(frozen=True)
class _Run:
    """One direction of travel of a plan: ``xy`` (M, 2) vertices in travel order (M = 1: a standing plan), ``s``
    (M,) arc length from the run start, ``gear`` +1 forward / -1 reverse, ``sigma0`` the plan progress (metres) at
    the run start, ``start_dir`` (2,) unit direction of travel at the start."""

    xy: np.ndarray
    s: np.ndarray
    gear: int
    sigma0: float
    start_dir: np.ndarray

    @property
    def length(self) -> float:
        return float(self.s[-1])

    def point_at(self, s: float) -> np.ndarray:
        """(2,) point at arc length ``s``; beyond either end the run continues along its end segment."""
        if len(self.s) == 1:
            return self.xy[0] + s * self.start_dir
        i = int(np.clip(np.searchsorted(self.s, s, side="right") - 1, 0, len(self.s) - 2))
        seg = self.xy[i + 1] - self.xy[i]
        return self.xy[i] + (s - self.s[i]) / (self.s[i + 1] - self.s[i]) * seg

    def project(self, p: np.ndarray) -> float:
        """Arc length of the point of the run closest to ``p`` (2,), extended (< 0 or > length) past the ends."""
        if len(self.s) == 1:
            return float((p - self.xy[0]) @ self.start_dir)
        a, b = self.xy[:-1], self.xy[1:]
        seg = b - a
        seg_len2 = (seg**2).sum(1)
        raw = ((p - a) * seg).sum(1) / seg_len2
        tau = np.clip(raw, 0.0, 1.0)
        dist2 = ((a + tau[:, None] * seg - p) ** 2).sum(1)
        j = int(np.argmin(dist2))
        if j == 0 and raw[0] < 0.0:
            tau_j = raw[0]
        elif j == len(seg) - 1 and raw[j] > 1.0:
            tau_j = raw[j]
        else:
            tau_j = tau[j]
        return float(self.s[j] + tau_j * math.sqrt(seg_len2[j]))


def _validate_plan(plan_xy_ego: object, state_at_plan: VehicleState, plan_time: float) -> np.ndarray:
    try:
        plan = np.array(plan_xy_ego, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"plan must be a ({FUTURE_STEPS}, 2) array of numbers: {exc}") from None
    if plan.shape != (FUTURE_STEPS, 2):
        raise ValueError(f"plan must have shape ({FUTURE_STEPS}, 2) (waypoints x (x, y)), got {plan.shape}")
    bad = np.flatnonzero(~np.isfinite(plan).all(axis=1))
    if bad.size:
        raise ValueError(f"plan has non-finite values (NaN/inf) at waypoint(s) {bad.tolist()}: {plan[bad].tolist()}")
    if not isinstance(state_at_plan, VehicleState) or not state_at_plan.is_finite():
        raise ValueError(f"state_at_plan must be a finite VehicleState, got {state_at_plan!r}")
    if (
        isinstance(plan_time, bool)
        or not isinstance(plan_time, (int, float, np.number))
        or not math.isfinite(plan_time)
    ):
        raise ValueError(f"plan_time must be a finite number of seconds, got {plan_time!r}")
    return plan


def _directions(pts: np.ndarray, yaw: float) -> tuple[np.ndarray, list[int], set[int]]:
    """Segment lengths (K,), direction of travel of each segment (K,) (+1 forward, -1 reverse, 0 standing) and the
    cusp vertices (where the direction flips) of a polyline (K+1, 2) driven from heading ``yaw``.

    The first moving segment goes forward unless it points behind the heading; each next one keeps the direction
    unless it turns back by more than 90 degrees from the previous moving segment's vehicle heading."""
    seg = np.diff(pts, axis=0)
    seg_len = np.linalg.norm(seg, axis=1)
    heading = np.array([math.cos(yaw), math.sin(yaw)])
    gears = [0] * len(seg)
    cusps: set[int] = set()
    prev_gear = 0
    for k in range(len(seg)):
        if seg_len[k] <= 0.0:
            continue
        d = seg[k] / seg_len[k]
        gear = 1 if d @ heading >= 0.0 else -1
        if prev_gear and gear != prev_gear:
            cusps.add(k)
        prev_gear = gear
        gears[k] = gear
        heading = gear * d
    return seg_len, gears, cusps


def _stopping_distance(u: float, a0: float, b: float, j: float) -> float:
    """Distance to rest from speed ``u`` > 0 and acceleration ``a0`` (both along the direction of travel) when the
    braking builds up at jerk ``j`` to deceleration ``b`` and stays there."""
    t_ramp = max((a0 + b) / j, 0.0)
    # Speed during the ramp: u + a0 t - j t^2 / 2; it may reach zero before the ramp is complete.
    t_zero = (a0 + math.sqrt(a0 * a0 + 2.0 * j * u)) / j
    if t_zero <= t_ramp:
        return u * t_zero + 0.5 * a0 * t_zero**2 - j * t_zero**3 / 6.0
    u_ramp = u + a0 * t_ramp - 0.5 * j * t_ramp**2
    return u * t_ramp + 0.5 * a0 * t_ramp**2 - j * t_ramp**3 / 6.0 + u_ramp * u_ramp / (2.0 * b)


def _braking_to_stop(u: float, a0: float, remaining: float, b_max: float, j: float) -> float:
    """The smallest deceleration (m/s^2, > 0) whose jerk-limited stop from speed ``u`` and acceleration ``a0``
    ends within ``remaining`` metres; when even ``b_max`` is too little, the constant deceleration that would stop
    there (at least ``b_max``; the car's own limit then clips it)."""
    if remaining <= 1e-3:
        return max(b_max, u * u / 2e-3)
    if _stopping_distance(u, a0, b_max, j) >= remaining:
        return max(b_max, u * u / (2.0 * remaining))
    lo, hi = 0.0, b_max  # the stopping distance decreases with the deceleration: bisect
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        if mid > 0.0 and _stopping_distance(u, a0, mid, j) <= remaining:
            hi = mid
        else:
            lo = mid
    return hi


def _hermite_slopes(delta: np.ndarray, cusps: set[int]) -> np.ndarray:
    """Knot slopes (K+1,), K >= 2, of the monotone cubic Hermite curve (PCHIP) with secant slopes ``delta`` (K,)
    >= 0 on equal intervals: harmonic mean inside (Fritsch-Carlson), zero at ``cusps``, the one-sided three-point
    formula at the ends (the secant next to a cusp). Every interval has slopes within [0, 3 * secant], which keeps
    the curve monotone.

    The slopes come from the plan alone, not from the car's speed: a plan whose first waypoint disagrees a little
    with the car's speed then shifts the reference speed (answered by the speed gain) instead of bending the cubic
    into a large acceleration feed-forward; with noisy plans this is several times smoother (docs/sim_vehicle.md).
    """
    k = len(delta)
    m = np.zeros(k + 1)
    for i in range(1, k):
        if i not in cusps and delta[i - 1] > 0.0 and delta[i] > 0.0:
            m[i] = 2.0 / (1.0 / delta[i - 1] + 1.0 / delta[i])
    m[0] = delta[0] if 1 in cusps else min(max(0.5 * (3.0 * delta[0] - delta[1]), 0.0), 3.0 * delta[0])
    m[k] = (
        delta[k - 1] if k - 1 in cusps else min(max(0.5 * (3.0 * delta[k - 1] - delta[k - 2]), 0.0), 3.0 * delta[k - 1])
    )
    return m


class TrajectoryTracker:
    """Follows the latest plan in space and time (see the module docstring for the control law).

    ``set_plan`` replaces the plan (a rejected plan leaves the tracker as it was); ``command`` returns
    (accel_cmd, steer_cmd) for :meth:`KinematicBicycle.step`. Keeps which run of the plan the vehicle is in.
    """

    def __init__(self, controller_cfg: ControllerConfig | None = None, vehicle_cfg: VehicleConfig | None = None):
        self.cfg = controller_cfg if controller_cfg is not None else ControllerConfig()
        self.vehicle_cfg = vehicle_cfg if vehicle_cfg is not None else VehicleConfig()
        self.cfg.validate()
        self.vehicle_cfg.validate()
        if self.cfg.stop_decel > self.vehicle_cfg.max_decel:
            raise ValueError(
                f"stop_decel ({self.cfg.stop_decel}) must be <= the vehicle's max_decel ({self.vehicle_cfg.max_decel})"
            )
        self._points: np.ndarray | None = None
        self._times: np.ndarray | None = None
        self._sigma: np.ndarray | None = None
        self._slopes: np.ndarray | None = None
        self._runs: list[_Run] = []
        self._run = 0
        self._braking = False  # braking to rest at the end of the current run
        self._last_t: float | None = None  # time of the previous command

    # ---- plan -------------------------------------------------------------------------------------------------
    @property
    def has_plan(self) -> bool:
        return self._points is not None

    @property
    def plan_points(self) -> np.ndarray:
        """(7, 2) global reference points: the planning position, then the 6 waypoints."""
        self._require_plan()
        return self._points.copy()

    @property
    def plan_times(self) -> np.ndarray:
        """(7,) times of ``plan_points``: plan_time + 0.5 k."""
        self._require_plan()
        return self._times.copy()

    @property
    def run_gears(self) -> list[int]:
        """Direction of travel of each run of the plan (+1 forward, -1 reverse), in order."""
        return [r.gear for r in self._runs]

    def set_plan(self, plan_xy_ego: np.ndarray, state_at_plan: VehicleState, plan_time: float) -> None:
        """Take a new plan: ``plan_xy_ego`` (6, 2) waypoints at plan_time + 0.5 .. 3.0 s in the ego frame of
        ``state_at_plan``. Raises ValueError (tracker unchanged) for a wrong shape or non-finite values."""
        plan = _validate_plan(plan_xy_ego, state_at_plan, plan_time)
        st = state_at_plan
        c, s = math.cos(st.yaw), math.sin(st.yaw)
        rot = np.array([[c, -s], [s, c]])
        raw = np.vstack([[st.x, st.y], plan @ rot.T + np.array([st.x, st.y])])
        times = plan_time + STEP_SECONDS * np.arange(FUTURE_STEPS + 1)

        # Standing: points within still_distance_m of the previous kept point are that point.
        pts = raw.copy()
        for k in range(1, len(pts)):
            if np.linalg.norm(raw[k] - pts[k - 1]) < self.cfg.still_distance_m:
                pts[k] = pts[k - 1]
        # A run that ends within stop_distance_m of where it starts, next to another run, is a sliver (the car
        # stopped a few cm from where the plan turns back, or beside it, or noise around a standing point): it
        # stands instead, so the car does not shuffle back and forth.
        while True:  # each pass removes a moving segment or stops, so it ends
            seg_len, gears, cusps = _directions(pts, st.yaw)
            bounds = [0, *sorted(cusps), len(pts) - 1]
            if len(bounds) == 2:
                break
            # Net displacement, not path length: a zig-zag of noisy points around one place is a sliver too.
            lengths = [float(np.linalg.norm(pts[i1] - pts[i0])) for i0, i1 in pairwise(bounds)]
            sliver = int(np.argmin(lengths))
            if lengths[sliver] >= self.cfg.stop_distance_m:
                break
            i0, i1 = bounds[sliver], bounds[sliver + 1]
            pts[i0 + 1 : i1 + 1] = pts[i0]
        sigma = np.concatenate([[0.0], np.cumsum(seg_len)])
        runs = self._build_runs(pts, sigma, gears, seg_len > 0.0, cusps, st)
        slopes = _hermite_slopes(seg_len / STEP_SECONDS, cusps)

        self._points, self._times, self._sigma, self._slopes = pts, times, sigma, slopes
        self._runs, self._run, self._braking = runs, 0, False

    @staticmethod
    def _build_runs(
        pts: np.ndarray, sigma: np.ndarray, gears: list[int], moving: np.ndarray, cusps: set[int], st: VehicleState
    ) -> list[_Run]:
        bounds = [0, *sorted(cusps), len(pts) - 1]
        heading = np.array([math.cos(st.yaw), math.sin(st.yaw)])
        first_gear = next((g for g in gears if g != 0), 1 if st.v >= 0.0 else -1)
        runs = []
        for i0, i1 in pairwise(bounds):
            gear = next((gears[k] for k in range(i0, i1) if moving[k]), first_gear)
            keep = [i0] + [k + 1 for k in range(i0, i1) if moving[k]]
            xy = pts[keep]
            s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(xy, axis=0), axis=1))])
            start_dir = (xy[1] - xy[0]) / s[1] if len(xy) > 1 else gear * heading
            runs.append(_Run(xy=xy, s=s, gear=gear, sigma0=float(sigma[i0]), start_dir=start_dir))
        return runs

    def _require_plan(self) -> None:
        if self._points is None:
            raise RuntimeError("TrajectoryTracker has no plan: call set_plan() before command()")

    # ---- reference --------------------------------------------------------------------------------------------
    def _progress(self, t: float) -> tuple[float, float, float]:
        """Plan progress (m), its rate (m/s) and its second derivative (m/s^2) at time ``t``."""
        times, sigma, m = self._times, self._sigma, self._slopes
        if t < times[0]:
            return 0.0, 0.0, 0.0
        if t >= times[-1]:
            return float(sigma[-1]), 0.0, 0.0
        h = STEP_SECONDS
        k = min(int((t - times[0]) / h), len(times) - 2)
        tau = (t - times[k]) / h
        p0, p1, m0, m1 = sigma[k], sigma[k + 1], m[k] * h, m[k + 1] * h
        t2, t3 = tau * tau, tau * tau * tau
        pos = (2 * t3 - 3 * t2 + 1) * p0 + (t3 - 2 * t2 + tau) * m0 + (-2 * t3 + 3 * t2) * p1 + (t3 - t2) * m1
        vel = ((6 * t2 - 6 * tau) * (p0 - p1) + (3 * t2 - 4 * tau + 1) * m0 + (3 * t2 - 2 * tau) * m1) / h
        acc = ((12 * tau - 6) * (p0 - p1) + (6 * tau - 4) * m0 + (6 * tau - 2) * m1) / (h * h)
        return float(pos), float(vel), float(acc)

    def reference(self, t: float) -> tuple[np.ndarray, float]:
        """The reference point (2,) in the global frame at time ``t`` and its speed along the plan (m/s, >= 0)."""
        self._require_plan()
        sig, vel, _ = self._progress(t)
        run = next((r for r in reversed(self._runs) if sig >= r.sigma0), self._runs[0])
        return run.point_at(min(sig - run.sigma0, run.length)), vel

    # ---- control ----------------------------------------------------------------------------------------------
    def command(self, state: VehicleState, t: float) -> tuple[float, float]:
        """(accel_cmd m/s^2, steer_cmd rad) for the vehicle in ``state`` at time ``t`` (seconds, same clock as
        ``plan_time``)."""
        self._require_plan()
        if not state.is_finite() or not math.isfinite(t):
            raise ValueError(f"command() needs a finite state and time, got {state!r} at t={t!r}")
        cfg = self.cfg
        # Command period: the time since the previous command (the simulation step), at most one plan interval.
        period = min(max(t - self._last_t, 0.0), STEP_SECONDS) if self._last_t is not None else 0.0
        self._last_t = t
        p = np.array([state.x, state.y])
        sig_ref, vel_ref, acc_ref = self._progress(t)

        # Leave a run once the reference has passed its end and the vehicle stands there.
        while self._run < len(self._runs) - 1:
            run = self._runs[self._run]
            at_end = run.length - run.project(p) <= cfg.stop_distance_m
            if sig_ref >= run.sigma0 + run.length and at_end and abs(state.v) < cfg.stop_speed_mps:
                self._run += 1
                self._braking = False
            else:
                break
        run = self._runs[self._run]
        gear = run.gear
        s_v = run.project(p)
        steer_cmd = self._steer(run, state, s_v)

        # Reference in this run's coordinates (it stands at the run's end once it has moved past it).
        s_ref = min(max(sig_ref - run.sigma0, 0.0), run.length)
        inside = run.sigma0 <= sig_ref < run.sigma0 + run.length
        u_ref, a_ref = (vel_ref, acc_ref) if inside else (0.0, 0.0)
        u = gear * state.v

        if abs(state.v) < cfg.stop_speed_mps and self._standing(run, p, t):
            # Standing reference reached: brake to rest (the model stops exactly at zero), at the standing point if
            # it is still ahead, and hold there. The wheels already turn towards where the run leads later (at a
            # cusp: steering in place while standing), but not towards the scatter of a plan that only stands.
            if np.linalg.norm(run.xy - p, axis=1).max() < cfg.stop_distance_m:
                steer_cmd = state.steer
            if state.v == 0.0:
                return 0.0, steer_cmd
            ahead = s_ref - s_v
            decel = cfg.stop_decel
            if u > 0.0 and ahead > 0.0:
                decel = _braking_to_stop(u, gear * state.a, ahead, cfg.stop_decel, self.vehicle_cfg.max_jerk)
            return -math.copysign(min(decel, self.vehicle_cfg.max_decel), state.v), steer_cmd

        remaining = run.length - s_v
        u_des = max(u_ref + cfg.position_gain * (s_ref - s_v), 0.0)
        # The feed-forward of a plan the car cannot follow (it lags far behind) is bounded by what the car can do.
        a_ff = min(max(a_ref, -self.vehicle_cfg.max_decel), self.vehicle_cfg.max_accel)
        a_u = a_ff + cfg.speed_gain * (u_des - u)
        # Stop at the run's end. Once braking at b (built up at the jerk limit from the present acceleration) would
        # only just stop there by the next command, brake until rest with the gentlest deceleration (<= b) that
        # stops there, re-solved at every command. b is stop_decel before a cusp and the hardest braking at the
        # plan's end, which the car only reaches when plans stop coming.
        last_run = self._run == len(self._runs) - 1
        b = self.vehicle_cfg.max_decel if last_run else cfg.stop_decel
        jerk = self.vehicle_cfg.max_jerk
        if state.v == 0.0:
            self._braking = False
        elif u > 0.0 and (self._braking or _stopping_distance(u, gear * state.a, b, jerk) + u * period >= remaining):
            self._braking = True
            a_u = min(a_u, -_braking_to_stop(u, gear * state.a, remaining, b, jerk))
        if u <= 0.0:
            a_u = max(a_u, 0.0)  # at rest or moving against the run: only towards the run's direction
        if state.v == 0.0 and abs(steer_cmd - state.steer) > cfg.start_steer_tolerance_rad:
            a_u = 0.0  # steer in place before moving off
        a_u = min(max(a_u, -self.vehicle_cfg.max_decel), self.vehicle_cfg.max_accel)
        return gear * a_u, steer_cmd

    def _standing(self, run: _Run, p: np.ndarray, t: float) -> bool:
        """The reference stays within stop_distance_m of the car's position ``p`` from ``t`` to t + hold_horizon_s
        (checked at t, at every waypoint time in between and at the end of the horizon)."""
        horizon = t + self.cfg.hold_horizon_s
        times = [t, *[float(x) for x in self._times if t < x < horizon], horizon]
        for x in times:
            sig = self._progress(x)[0] - run.sigma0
            if sig > run.length:  # the reference leaves this run: where it goes next, the car has to drive
                return False
            if np.linalg.norm(run.point_at(max(sig, 0.0)) - p) >= self.cfg.stop_distance_m:
                return False
        return True

    def _steer(self, run: _Run, state: VehicleState, s_v: float) -> float:
        """Pure pursuit on the run (mirrored behind the car in reverse); holds the steering on a standing plan."""
        if run.length <= 0.0:
            return state.steer
        vcfg = self.vehicle_cfg
        lookahead = max(self.cfg.min_lookahead_m, self.cfg.lookahead_time_s * abs(state.v))
        # Near the run's end aim at the end point itself: the arc through it tangent to the heading is the plan's
        # own arc when the car is on it (2 y / d^2 is exact on a circle at any distance). Close to that point the
        # arc is dominated by the lateral error, so the steering is held for the last metre or so.
        target = run.point_at(min(s_v + lookahead, run.length))
        dx, dy = target[0] - state.x, target[1] - state.y
        c, s = math.cos(state.yaw), math.sin(state.yaw)
        x_l, y_l = c * dx + s * dy, -s * dx + c * dy
        d2 = x_l * x_l + y_l * y_l
        if s_v + lookahead >= run.length and d2 < (0.5 * min(self.cfg.min_lookahead_m, run.length)) ** 2:
            return state.steer
        if d2 < 1e-6:
            return state.steer
        curvature = 2.0 * y_l / d2
        steer = math.atan(vcfg.wheelbase_m * curvature)
        return min(max(steer, -vcfg.max_steer_rad), vcfg.max_steer_rad)


def track(
    vehicle: KinematicBicycle, tracker: TrajectoryTracker, state: VehicleState, t0: float, t1: float, dt: float
) -> list[VehicleState]:
    """Drive ``state`` from ``t0`` to ``t1`` under ``tracker``'s current plan: the states at t0, t0 + dt, ..,
    t0 + n dt with n = round((t1 - t0) / dt) (n + 1 states)."""
    if not (math.isfinite(dt) and dt > 0.0):
        raise ValueError(f"dt must be a positive finite number of seconds, got {dt!r}")
    n = int(round((t1 - t0) / dt))
    if n < 0:
        raise ValueError(f"t1 ({t1}) must not be before t0 ({t0})")
    states = [state]
    for k in range(n):
        accel, steer = tracker.command(state, t0 + k * dt)
        state = vehicle.step(state, accel, steer, dt)
        states.append(state)
    return states


__all__ = ["ControllerConfig", "TrajectoryTracker", "track"]
