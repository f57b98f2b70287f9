"""Closed-loop episode metrics in the style of nuPlan's closed-loop score (CLS) and NAVSIM's PDM score (PDMS),
computed from one :class:`~dima_core.sim.episode_log.EpisodeLog` (docs/closed_loop_metrics.md has the full
definitions and how they differ from nuPlan and NAVSIM).

Per episode:

- **NC** (no at-fault collision): the ego footprint against every present agent's box at every step; each agent
  counts once, at its first contact, classified nuPlan-style (stopped ego / stopped track / active rear / active
  front / active lateral). Not at fault: the ego was stopped, the agent ran into the ego's rear, or a lateral
  contact while the whole ego footprint stayed inside one lane. NC = 0 after an at-fault collision with a vehicle,
  pedestrian or cyclist, 0.5 after at-fault collisions with static objects only, else 1.
- **DAC** (drivable-area compliance): 1 when every footprint corner stays within DRIVABLE_TOLERANCE_M of
  ``drivable_area`` at every step, else 0.
- **DDC** (driving-direction compliance): the largest progress made against the travel direction of the
  (non-connector) lane under the ego centre over any DDC_WINDOW_S window; 1 below 2 m, 0.5 below 6 m, else 0.
  Reversing inside a ``route_reverse_segments`` interval of the route is exempt.
- **EP** (ego progress): arc length gained along ``route`` (monotone, windowed projection, so routes that come back
  on themselves are matched in order) divided by the expert's progress, clipped to [0, 1]; 1 when the expert
  covered less than EP_MIN_REFERENCE_PROGRESS_M.
- **TTC**: 0 if at any step where the ego moves, a constant-velocity projection of the ego and the agents ahead of
  or beside it over TTC_HORIZON_S (TTC_STEP_S steps) overlaps, else 1.
- **C** (comfort): 1 if the Savitzky-Golay-smoothed longitudinal acceleration, lateral acceleration, longitudinal
  jerk, yaw rate and yaw acceleration stay within nuPlan's bounds (COMFORT_BOUNDS) at every step, else 0.
- **stuck / timeout** flags, route completion, and the success flag (SUCCESS_RULE).

The episode score is SCORE_FORMULA. Frames and units follow ``episode_log``: global map frame, metres, radians,
seconds; the ego's reference point is the rear axle, its footprint is centred ``ego_centre_offset`` ahead.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import shapely
from scipy.signal import savgol_filter
from shapely.geometry import LineString, Polygon

from dima_core.data.geometry import box_corners_2d
from dima_core.sim.episode_log import EGO_ACCEL, EGO_SPEED, EGO_YAW, EpisodeLog

# ----------------------------------------------------------------------------------------------------- constants

STOPPED_SPEED_MPS = 0.05  # nuPlan's stationary threshold: below it a vehicle counts as stopped
DRIVABLE_TOLERANCE_M = 0.1  # a footprint corner may lie this far outside the drivable area
DDC_WINDOW_S = 1.0
DDC_COMPLIANT_M = 2.0  # wrong-way progress per window below this: DDC 1
DDC_VIOLATION_M = 6.0  # below this: DDC 0.5, else 0
REVERSE_SEGMENT_MARGIN_M = 1.0  # slack around a route reverse interval (the cusp is matched to either side)
EP_MIN_REFERENCE_PROGRESS_M = 5.0  # NAVSIM's floor: with less reference progress than this, EP is 1
TTC_HORIZON_S = 1.0
TTC_STEP_S = 0.1
# nuPlan's comfort bounds (ego_is_comfortable), also NAVSIM's: (min, max).
COMFORT_BOUNDS: dict[str, tuple[float, float]] = {
    "lon_accel": (-4.05, 2.40),  # m/s^2
    "lat_accel": (-4.89, 4.89),  # m/s^2
    "lon_jerk": (-4.13, 4.13),  # m/s^3
    "yaw_rate": (-0.95, 0.95),  # rad/s
    "yaw_accel": (-1.93, 1.93),  # rad/s^2
}
# Savitzky-Golay windows (seconds, turned into odd sample counts): values (accelerations) are smoothed with a
# quadratic over ~0.9 s, derivatives (jerk, yaw rate, yaw acceleration) are fitted over 1.5 s, nuPlan's 15 samples
# at 10 Hz. Without smoothing, one simulation step of a 10 Hz log turns any change of acceleration into a jerk spike.
COMFORT_VALUE_WINDOW_S = 0.9
COMFORT_DERIVATIVE_WINDOW_S = 1.5
STUCK_WINDOW_S = 10.0
STUCK_MIN_PROGRESS_M = 0.5  # the ego covering less than this in a window ...
STUCK_REFERENCE_MOVING_M = 2.0  # ... while the expert covered at least this much in the same window: stuck
# EpisodeLog.ended_early values (or their prefix before ':') that mean the ego did not get there: a timeout.
TIMEOUT_REASONS: tuple[str, ...] = ("timeout", "stuck", "lost")
SUCCESS_MIN_PROGRESS_RATIO = 0.8
# Route matching: at each step the ego is projected onto the route between (last - back) and (last + ahead),
# both widened by the distance it moved in that step; a route segment pointing against the ego's motion costs
# ROUTE_DIRECTION_PENALTY_M extra, so that at a cusp (three-point turn) the branch being driven wins.
ROUTE_WINDOW_AHEAD_M = 5.0
ROUTE_WINDOW_BACK_M = 0.5
ROUTE_DIRECTION_PENALTY_M = 1.0
# The first match searches the whole route, where a route that comes back on itself passes near the start twice:
# a segment pointing against the ego's heading must then be this much nearer to win.
ROUTE_INITIAL_DIRECTION_PENALTY_M = 10.0

FRONT_EDGE_INSET_M = 0.3  # the leading edge used to tell front from lateral contacts stops this short of the corners

AGENT_TYPES: tuple[str, ...] = ("vehicle", "pedestrian", "cyclist", "static")
CYCLIST_CATEGORIES = ("vehicle.bicycle", "vehicle.motorcycle")
STATIC_CATEGORY_PREFIXES = ("movable_object.", "static_object.")
ROAD_USER_PREFIXES = ("vehicle.", "human.")
COLLISION_KINDS: tuple[str, ...] = ("stopped_ego", "stopped_track", "active_rear", "active_front", "active_lateral")

SCORE_FORMULA = (
    "score = NC * DAC * DDC * (5*EP + 5*TTC + 2*C) / 12, in [0, 1]. "
    "NC = 0 after an at-fault collision with a vehicle, pedestrian or cyclist, 0.5 after at-fault collisions with "
    "static objects only, else 1. DAC = 0 if a footprint corner leaves the drivable area by more than "
    f"{DRIVABLE_TOLERANCE_M:g} m at any step, else 1. DDC = 1 if the largest progress against the lane direction "
    f"over any {DDC_WINDOW_S:g} s is below {DDC_COMPLIANT_M:g} m, 0.5 below {DDC_VIOLATION_M:g} m, else 0. "
    "EP = clip(route progress / expert progress, 0, 1), 1 when the expert covered less than "
    f"{EP_MIN_REFERENCE_PROGRESS_M:g} m. TTC = 0 if a constant-velocity projection over {TTC_HORIZON_S:g} s "
    f"({TTC_STEP_S:g} s steps) of the moving ego overlaps an agent ahead of or beside it, else 1. C = 1 if "
    "longitudinal acceleration in [-4.05, 2.40] m/s^2, |lateral acceleration| <= 4.89 m/s^2, |longitudinal jerk| "
    "<= 4.13 m/s^3, |yaw rate| <= 0.95 rad/s and |yaw acceleration| <= 1.93 rad/s^2 at every step "
    f"(Savitzky-Golay: values over {COMFORT_VALUE_WINDOW_S:g} s, derivatives over {COMFORT_DERIVATIVE_WINDOW_S:g} s)."
)
SUCCESS_RULE = (
    "success = no at-fault collision (any agent type) and DAC = 1 and not stuck/timed out and route progress >= "
    f"{SUCCESS_MIN_PROGRESS_RATIO:g} x the expert's progress. Stuck: the ego covered < {STUCK_MIN_PROGRESS_M:g} m of "
    f"route in some {STUCK_WINDOW_S:g} s window in which the expert covered >= {STUCK_REFERENCE_MOVING_M:g} m."
)


# ----------------------------------------------------------------------------------------------------- results


@dataclass
class CollisionRecord:
    """The first contact between the ego footprint and one agent.

    ``agent_type`` one of AGENT_TYPES; ``kind`` one of COLLISION_KINDS (nuPlan's collision types); speeds are the
    signed speeds (m/s) at the contact step.
    """

    agent_id: int
    category: str
    agent_type: str
    step: int
    time: float
    kind: str
    at_fault: bool
    ego_speed: float
    agent_speed: float


@dataclass
class EpisodeMetrics:
    """Every closed-loop metric of one episode (see the module docstring and SCORE_FORMULA).

    Multipliers and terms: ``nc``, ``dac``, ``ddc``, ``ep``, ``ttc``, ``comfort`` and ``score`` (the values used in
    the score, after any reference waiver listed in ``waived``). Evidence behind them: the collision records and
    counts, the drivable-area excess, the wrong-way distance, the progress numbers, the TTC violation steps and
    the comfort peaks (largest |value| of each signal).
    """

    scenario: str
    seed: int
    policy: str
    num_steps: int
    duration_s: float
    score: float
    success: bool
    nc: float
    dac: float
    ddc: float
    ep: float
    ttc: float
    comfort: float
    collisions: list[CollisionRecord]
    num_collisions: int
    num_at_fault_collisions: int
    at_fault_by_type: dict[str, int]
    max_outside_drivable_m: float
    frac_steps_outside_drivable: float
    max_wrong_way_m: float
    progress_m: float
    expert_progress_m: float
    progress_ratio: float | None
    route_length_m: float
    route_completion: float
    num_ttc_violation_steps: int
    first_ttc_violation_time: float | None
    comfort_peaks: dict[str, float]
    comfort_violations: list[str]
    stuck: bool
    timeout: bool
    ended_early: str
    rejected_plans: int
    waived: list[str] = field(default_factory=list)

    @property
    def at_fault_collision(self) -> bool:
        return self.num_at_fault_collisions > 0

    def to_dict(self) -> dict:
        """JSON-serialisable copy (collision records as dicts)."""
        out = asdict(self)
        out["at_fault_collision"] = self.at_fault_collision
        return out


# ----------------------------------------------------------------------------------------------------- validation


def _shape_error(name: str, expected: tuple, got: tuple) -> ValueError:
    return ValueError(f"EpisodeLog.{name} must have shape {expected}, got {got}")


def validate_episode_log(log: EpisodeLog) -> None:
    """Raise ValueError naming the first field of ``log`` with a wrong shape, a NaN or an impossible value."""
    times = np.asarray(log.times, np.float64)
    if times.ndim != 1 or times.shape[0] < 2:
        raise ValueError(f"EpisodeLog.times must be a (K,) array with K >= 2 steps, got shape {times.shape}")
    k = times.shape[0]
    if not np.isfinite(times).all() or not (np.diff(times) > 0).all():
        raise ValueError("EpisodeLog.times must be finite and strictly increasing")
    if not (math.isfinite(log.dt) and log.dt > 0):
        raise ValueError(f"EpisodeLog.dt must be a positive number of seconds, got {log.dt}")
    ego = np.asarray(log.ego, np.float64)
    if ego.shape != (k, 6):
        raise _shape_error("ego", (k, 6), ego.shape)
    bad = ~np.isfinite(ego).all(axis=1)
    if bad.any():
        raise ValueError(
            f"EpisodeLog.ego has NaN or infinite values in {int(bad.sum())} rows (first at step {int(np.argmax(bad))})"
        )
    for name in ("ego_length", "ego_width"):
        value = getattr(log, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"EpisodeLog.{name} must be a positive number of metres, got {value}")
    if not math.isfinite(log.ego_centre_offset):
        raise ValueError(f"EpisodeLog.ego_centre_offset must be finite, got {log.ego_centre_offset}")
    ids = np.asarray(log.agent_ids)
    if ids.ndim != 1:
        raise ValueError(f"EpisodeLog.agent_ids must be a (A,) array, got shape {ids.shape}")
    a = ids.shape[0]
    if len(log.agent_categories) != a:
        raise ValueError(f"EpisodeLog.agent_categories has {len(log.agent_categories)} entries for {a} agents")
    sizes = np.asarray(log.agent_sizes, np.float64)
    if sizes.shape != (a, 2):
        raise _shape_error("agent_sizes", (a, 2), sizes.shape)
    if a and not (np.isfinite(sizes).all() and (sizes > 0).all()):
        raise ValueError("EpisodeLog.agent_sizes must be positive finite lengths and widths")
    if np.asarray(log.agent_static).shape != (a,):
        raise _shape_error("agent_static", (a,), np.asarray(log.agent_static).shape)
    agents = np.asarray(log.agents, np.float64)
    if agents.shape != (a, k, 4):
        raise _shape_error("agents", (a, k, 4), agents.shape)
    present = np.asarray(log.agent_present)
    if present.shape != (a, k):
        raise _shape_error("agent_present", (a, k), present.shape)
    present = present.astype(bool)
    if not np.isfinite(agents[present]).all():
        raise ValueError("EpisodeLog.agents has NaN or infinite states at steps where the agent is present")
    route = np.asarray(log.route, np.float64)
    if route.ndim != 2 or route.shape[1] != 2 or route.shape[0] < 2 or not np.isfinite(route).all():
        raise ValueError(f"EpisodeLog.route must be a finite (R, 2) polyline with R >= 2, got shape {route.shape}")
    if np.linalg.norm(np.diff(route, axis=0), axis=1).sum() <= 0:
        raise ValueError("EpisodeLog.route has zero length")
    if not (math.isfinite(log.expert_progress) and log.expert_progress >= 0):
        raise ValueError(f"EpisodeLog.expert_progress must be >= 0 metres, got {log.expert_progress}")
    for seg in log.route_reverse_segments:
        if len(seg) != 2 or not seg[0] <= seg[1]:
            raise ValueError(f"EpisodeLog.route_reverse_segments entries must be (s0, s1) with s0 <= s1, got {seg}")
    curve = log.expert_route_progress
    if curve is not None:
        curve = np.asarray(curve, np.float64)
        if curve.shape != (k,) or not np.isfinite(curve).all():
            raise ValueError(f"EpisodeLog.expert_route_progress must be a finite ({k},) array, got {curve.shape}")
    area = log.drivable_area
    if not isinstance(area, shapely.Geometry) or area.is_empty or area.area <= 0:
        raise ValueError("EpisodeLog.drivable_area must be a non-empty shapely (Multi)Polygon")
    for lane in log.lanes:
        cl = np.asarray(lane.centerline, np.float64)
        poly = np.asarray(lane.polygon, np.float64)
        if cl.ndim != 2 or cl.shape[1] != 2 or cl.shape[0] < 2 or not np.isfinite(cl).all():
            raise ValueError(f"lane {lane.id}: centerline must be a finite (N, 2) polyline, got shape {cl.shape}")
        if poly.ndim != 2 or poly.shape[1] != 2 or poly.shape[0] < 3 or not np.isfinite(poly).all():
            raise ValueError(f"lane {lane.id}: polygon must be a finite (P, 2) outline with P >= 3, got {poly.shape}")


# ----------------------------------------------------------------------------------------------------- geometry


def box_corners(
    centres: np.ndarray, yaws: np.ndarray, length: np.ndarray | float, width: np.ndarray | float
) -> np.ndarray:
    """(..., 4, 2) corners of boxes centred at ``centres`` (..., 2) with heading ``yaws`` (...), in the order of
    :func:`dima_core.data.geometry.box_corners_2d` (front-left, rear-left, rear-right, front-right)."""
    c, s = np.cos(yaws)[..., None], np.sin(yaws)[..., None]
    hl = np.broadcast_to(np.asarray(length, np.float64) / 2.0, np.shape(yaws))[..., None]
    hw = np.broadcast_to(np.asarray(width, np.float64) / 2.0, np.shape(yaws))[..., None]
    signs = np.array([[1.0, 1.0], [-1.0, 1.0], [-1.0, -1.0], [1.0, -1.0]])
    lx = signs[:, 0] * hl  # (..., 4)
    ly = signs[:, 1] * hw
    x = centres[..., 0:1] + lx * c - ly * s
    y = centres[..., 1:2] + lx * s + ly * c
    return np.stack([x, y], axis=-1)


def boxes_overlap(
    c1: np.ndarray,
    yaw1: np.ndarray,
    hl1: np.ndarray,
    hw1: np.ndarray,
    c2: np.ndarray,
    yaw2: np.ndarray,
    hl2: np.ndarray,
    hw2: np.ndarray,
) -> np.ndarray:
    """Whether oriented rectangles overlap (separating-axis test; touching edges do not count).

    Args: centres (..., 2), yaws (...), half lengths and half widths (...), all broadcast together.
    Returns: (...) bool. Exact for rectangles, so it stands in for shapely's ``intersects`` on large batches.
    """
    u1 = np.stack([np.cos(yaw1), np.sin(yaw1)], axis=-1)
    v1 = np.stack([-u1[..., 1], u1[..., 0]], axis=-1)
    u2 = np.stack([np.cos(yaw2), np.sin(yaw2)], axis=-1)
    v2 = np.stack([-u2[..., 1], u2[..., 0]], axis=-1)
    d = c2 - c1
    hl1, hw1, hl2, hw2 = (np.asarray(x, np.float64) for x in (hl1, hw1, hl2, hw2))
    separated = np.zeros(np.broadcast_shapes(d.shape[:-1], np.shape(hl1), np.shape(hl2)), bool)
    for axis in (u1, v1, u2, v2):
        r1 = hl1 * np.abs((u1 * axis).sum(-1)) + hw1 * np.abs((v1 * axis).sum(-1))
        r2 = hl2 * np.abs((u2 * axis).sum(-1)) + hw2 * np.abs((v2 * axis).sum(-1))
        separated |= np.abs((d * axis).sum(-1)) >= r1 + r2 - 1e-9
    return ~separated


def _odd_window(seconds: float, dt: float, n: int, poly: int) -> int:
    w = max(int(round(seconds / dt)), poly + 2)
    w = w if w % 2 else w + 1
    w = min(w, n if n % 2 else n - 1)
    return w


class _Route:
    """The route polyline with arc length, and the windowed projection that matches the ego onto it in order."""

    def __init__(self, route: np.ndarray):
        pts = np.asarray(route, np.float64)
        seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
        pts = pts[np.concatenate([[True], seg > 1e-9])]  # drop repeated vertices (zero-length segments)
        self.pts = pts
        self.vec = np.diff(pts, axis=0)
        self.len = np.linalg.norm(self.vec, axis=1)
        self.tan = self.vec / self.len[:, None]
        self.s = np.concatenate([[0.0], np.cumsum(self.len)])
        self.length = float(self.s[-1])

    def locate(
        self,
        q: np.ndarray,
        lo: float,
        hi: float,
        direction: np.ndarray | None,
        penalty: float = ROUTE_DIRECTION_PENALTY_M,
    ) -> float:
        """Arc length of the point of the route within [lo, hi] nearest to ``q`` (2,), a segment pointing against
        ``direction`` (unit (2,) or None) costing ``penalty`` metres extra."""
        n_seg = len(self.len)
        i0 = int(np.clip(np.searchsorted(self.s, lo, side="right") - 1, 0, n_seg - 1))
        i1 = int(np.clip(np.searchsorted(self.s, hi, side="left"), i0 + 1, n_seg))
        s_i, l_i, p_i, v_i = self.s[i0:i1], self.len[i0:i1], self.pts[i0:i1], self.vec[i0:i1]
        t_lo = np.clip((lo - s_i) / l_i, 0.0, 1.0)
        t_hi = np.clip((hi - s_i) / l_i, 0.0, 1.0)
        t = np.clip(((q - p_i) * v_i).sum(1) / (l_i * l_i), t_lo, t_hi)
        cost = np.linalg.norm(p_i + t[:, None] * v_i - q, axis=1)
        if direction is not None:
            cost = cost + penalty * ((self.tan[i0:i1] @ direction) < 0.0)
        j = int(np.argmin(cost))
        return float(s_i[j] + t[j] * l_i[j])

    def _clipped(self, q: np.ndarray, i: int, lo: float, hi: float) -> tuple[float, float]:
        """Distance from ``q`` to the part of segment ``i`` inside [lo, hi], and the arc length of that point."""
        s_i, length = self._s[i], self._len[i]
        (px, py), (vx, vy) = self._pts[i], self._vec[i]
        t_lo = min(max((lo - s_i) / length, 0.0), 1.0)
        t_hi = min(max((hi - s_i) / length, 0.0), 1.0)
        t = min(max(((q[0] - px) * vx + (q[1] - py) * vy) / (length * length), t_lo), t_hi)
        return math.hypot(px + t * vx - q[0], py + t * vy - q[1]), s_i + t * length

    def match(self, xy: np.ndarray, speed: np.ndarray, yaw: np.ndarray) -> np.ndarray:
        """(K,) arc length of the ego reference point at every step, matched in order of travel."""
        n_steps, n_seg = len(xy), len(self.len)
        heading = np.array([math.cos(yaw[0]), math.sin(yaw[0])]) * (-1.0 if speed[0] < 0 else 1.0)
        s = np.empty(n_steps)
        s[0] = self.locate(xy[0], -math.inf, math.inf, heading, ROUTE_INITIAL_DIRECTION_PENALTY_M)
        if n_steps == 1:
            return s
        # Cost of every later step against every whole segment, at once; the window only decides which segments
        # are eligible (the two at its ends are recomputed, being only partly inside it).
        rel = xy[1:, None, :] - self.pts[None, :-1, :]  # (K-1, S, 2)
        t_full = np.clip((rel * self.vec[None]).sum(-1) / (self.len * self.len)[None], 0.0, 1.0)
        dist = np.linalg.norm(rel - t_full[..., None] * self.vec[None], axis=-1)
        steps = np.diff(xy, axis=0)
        moved = np.linalg.norm(steps, axis=1)
        against = ((steps @ self.tan.T) < 0.0) & (moved > 1e-3)[:, None]  # segment points against the motion
        cost_all = dist + ROUTE_DIRECTION_PENALTY_M * against
        s_at = self.s[:-1][None] + t_full * self.len[None]
        self._s, self._len = self.s.tolist(), self.len.tolist()
        self._pts, self._vec = self.pts.tolist(), self.vec.tolist()
        for r in range(n_steps - 1):
            lo = s[r] - ROUTE_WINDOW_BACK_M - moved[r]
            hi = s[r] + ROUTE_WINDOW_AHEAD_M + moved[r]
            i0 = min(max(bisect.bisect_right(self._s, lo) - 1, 0), n_seg - 1)
            i1 = min(max(bisect.bisect_left(self._s, hi), i0 + 1), n_seg)
            cost = cost_all[r, i0:i1].copy()
            s_cand = s_at[r, i0:i1].copy()
            for i in {i0, i1 - 1}:
                c, s_i = self._clipped(xy[r + 1], i, lo, hi)
                cost[i - i0] = c + ROUTE_DIRECTION_PENALTY_M * against[r, i]
                s_cand[i - i0] = s_i
            s[r + 1] = s_cand[int(np.argmin(cost))]
        return s


def _point_segment_tangents(points: np.ndarray, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distance (M,) from each point (M, 2) to the polyline ``line`` (N, 2) and the unit tangent (M, 2) of the
    nearest segment."""
    a = line[:-1]
    v = np.diff(line, axis=0)
    l2 = np.maximum((v * v).sum(1), 1e-12)
    rel = points[:, None, :] - a[None]
    t = np.clip((rel * v[None]).sum(-1) / l2, 0.0, 1.0)
    dist = np.linalg.norm(rel - t[..., None] * v[None], axis=-1)
    j = np.argmin(dist, axis=1)
    tan = v[j] / np.sqrt(l2[j])[:, None]
    return dist[np.arange(len(points)), j], tan


# ----------------------------------------------------------------------------------------------------- components


def agent_type(category: str, static: bool) -> str:
    """One of AGENT_TYPES: ``static`` for nuScenes object categories (barriers, cones, debris) and for agents
    flagged static that are not road users; pedestrians (``human.*``); cyclists (bicycles, motorcycles); else
    vehicle. A parked or stopped car is a vehicle, as in nuPlan: running into it is a full collision (NC 0)."""
    if category.startswith(STATIC_CATEGORY_PREFIXES) or (static and not category.startswith(ROAD_USER_PREFIXES)):
        return "static"
    if category.startswith("human."):
        return "pedestrian"
    if category in CYCLIST_CATEGORIES:
        return "cyclist"
    return "vehicle"


@dataclass
class _Scene:
    """Arrays of one log, in float64, shared by the metric components."""

    k: int
    dt: float
    times: np.ndarray  # (K,)
    rear: np.ndarray  # (K, 2) ego reference point
    centre: np.ndarray  # (K, 2) ego box centre
    yaw: np.ndarray  # (K,)
    speed: np.ndarray  # (K,)
    accel: np.ndarray  # (K,)
    hl: float
    hw: float
    ag_xy: np.ndarray  # (A, K, 2)
    ag_yaw: np.ndarray  # (A, K)
    ag_speed: np.ndarray  # (A, K)
    ag_hl: np.ndarray  # (A,)
    ag_hw: np.ndarray  # (A,)
    present: np.ndarray  # (A, K) bool

    @classmethod
    def from_log(cls, log: EpisodeLog) -> _Scene:
        ego = np.asarray(log.ego, np.float64)
        agents = np.asarray(log.agents, np.float64)
        present = np.asarray(log.agent_present, bool)
        # Absent agents may carry NaN: zero them so arithmetic stays finite; every use is masked by ``present``.
        agents = np.where(present[..., None], agents, 0.0)
        sizes = np.asarray(log.agent_sizes, np.float64).reshape(-1, 2)
        return cls(
            k=ego.shape[0],
            dt=float(log.dt),
            times=np.asarray(log.times, np.float64),
            rear=ego[:, :2],
            centre=log.ego_box_centres().astype(np.float64),
            yaw=ego[:, EGO_YAW],
            speed=ego[:, EGO_SPEED],
            accel=ego[:, EGO_ACCEL],
            hl=log.ego_length / 2.0,
            hw=log.ego_width / 2.0,
            ag_xy=agents[..., :2],
            ag_yaw=agents[..., 2],
            ag_speed=agents[..., 3],
            ag_hl=sizes[:, 0] / 2.0,
            ag_hw=sizes[:, 1] / 2.0,
            present=present,
        )

    @property
    def ego_dir(self) -> np.ndarray:
        return np.stack([np.cos(self.yaw), np.sin(self.yaw)], axis=1)


def _contacts(sc: _Scene) -> np.ndarray:
    """(A, K) bool: the ego footprint overlaps agent a at step k (distance prefilter, then exact rectangles)."""
    out = np.zeros(sc.present.shape, bool)
    if not out.size:
        return out
    reach = math.hypot(sc.hl, sc.hw) + np.hypot(sc.ag_hl, sc.ag_hw)  # (A,)
    dist = np.linalg.norm(sc.ag_xy - sc.centre[None], axis=-1)
    a_idx, k_idx = np.nonzero(sc.present & (dist < reach[:, None]))
    if len(a_idx):
        out[a_idx, k_idx] = boxes_overlap(
            sc.centre[k_idx],
            sc.yaw[k_idx],
            sc.hl,
            sc.hw,
            sc.ag_xy[a_idx, k_idx],
            sc.ag_yaw[a_idx, k_idx],
            sc.ag_hl[a_idx],
            sc.ag_hw[a_idx],
        )
    return out


def _footprint_polygon(sc: _Scene, k: int) -> Polygon:
    return Polygon(box_corners_2d(sc.centre[k, 0], sc.centre[k, 1], sc.yaw[k], 2 * sc.hl, 2 * sc.hw))


def _classify(sc: _Scene, log: EpisodeLog, a: int, k: int, static: bool, lane_polys: list[Polygon]) -> tuple[str, bool]:
    """nuPlan-style collision type of the first contact with agent ``a`` at step ``k``, and whether the ego is at
    fault. ``lane_polys`` caches the lane outlines (buffered by DRIVABLE_TOLERANCE_M) across calls."""
    v_ego = float(sc.speed[k])
    v_ag = float(sc.ag_speed[a, k])
    if abs(v_ego) < STOPPED_SPEED_MPS:
        return "stopped_ego", False
    if static or abs(v_ag) < STOPPED_SPEED_MPS:
        return "stopped_track", True
    u = sc.ego_dir[k]
    agent_dir = np.array([math.cos(sc.ag_yaw[a, k]), math.sin(sc.ag_yaw[a, k])])
    behind_rear_axle = float((sc.ag_xy[a, k] - sc.rear[k]) @ u) < 0.0
    if v_ego > 0 and behind_rear_axle and v_ag * float(agent_dir @ u) > v_ego:
        return "active_rear", False  # it ran into us from behind while we drove forward
    corners = box_corners_2d(sc.centre[k, 0], sc.centre[k, 1], sc.yaw[k], 2 * sc.hl, 2 * sc.hw)
    # The edge leading in the direction of motion (the front when driving forward, the rear when reversing), less
    # FRONT_EDGE_INSET_M at each end: a side contact with a longer vehicle that reaches past the corner stays
    # lateral instead of touching the corner point of the edge.
    p, q = corners[[0, 3]] if v_ego > 0 else corners[[1, 2]]
    inset = min(FRONT_EDGE_INSET_M, 0.25 * 2 * sc.hw) / (2 * sc.hw)
    edge = LineString([p + inset * (q - p), q - inset * (q - p)])
    agent_poly = Polygon(
        box_corners_2d(sc.ag_xy[a, k, 0], sc.ag_xy[a, k, 1], sc.ag_yaw[a, k], 2 * sc.ag_hl[a], 2 * sc.ag_hw[a])
    )
    if edge.intersects(agent_poly):
        return "active_front", True
    # nuPlan: a side contact is the ego's fault only when it was not keeping to a single lane.
    if not lane_polys:
        lane_polys.extend(Polygon(np.asarray(ln.polygon, np.float64)).buffer(DRIVABLE_TOLERANCE_M) for ln in log.lanes)
    ego_poly = _footprint_polygon(sc, k)
    in_one_lane = any(p.contains(ego_poly) for p in lane_polys)
    return "active_lateral", not in_one_lane


def _collisions(sc: _Scene, log: EpisodeLog, contact: np.ndarray) -> list[CollisionRecord]:
    records = []
    lane_polys: list[Polygon] = []  # built on the first lateral contact only
    static = np.asarray(log.agent_static, bool)
    ids = np.asarray(log.agent_ids)
    for a in np.nonzero(contact.any(axis=1))[0]:
        k = int(np.argmax(contact[a]))
        kind, at_fault = _classify(sc, log, int(a), k, bool(static[a]), lane_polys)
        records.append(
            CollisionRecord(
                agent_id=int(ids[a]),
                category=str(log.agent_categories[a]),
                agent_type=agent_type(str(log.agent_categories[a]), bool(static[a])),
                step=k,
                time=float(sc.times[k]),
                kind=kind,
                at_fault=at_fault,
                ego_speed=float(sc.speed[k]),
                agent_speed=float(sc.ag_speed[a, k]),
            )
        )
    records.sort(key=lambda r: (r.step, r.agent_id))
    return records


def _drivable(sc: _Scene, area) -> tuple[float, float]:
    """Largest distance (m) of a footprint corner outside the drivable area, and the fraction of steps with a
    corner beyond the tolerance."""
    corners = box_corners(sc.centre, sc.yaw, 2 * sc.hl, 2 * sc.hw).reshape(-1, 2)
    dist = np.zeros(len(corners))
    shapely.prepare(area)  # in place: caches an index on the log's geometry, its value is unchanged
    inside = shapely.contains_xy(area, corners[:, 0], corners[:, 1])
    if not inside.all():
        out = ~inside
        dist[out] = shapely.distance(area, shapely.points(corners[out]))
    per_step = dist.reshape(sc.k, 4).max(axis=1)
    return float(per_step.max()), float((per_step > DRIVABLE_TOLERANCE_M).mean())


def _wrong_way(sc: _Scene, log: EpisodeLog, route_s: np.ndarray) -> float:
    """Largest progress (m) against the direction of the lane under the ego centre over any DDC_WINDOW_S."""
    pts = sc.centre[:-1]  # step k covers the motion from k to k + 1
    disp = np.diff(sc.centre, axis=0)
    best = np.full(len(pts), np.inf)
    tangent = np.zeros((len(pts), 2))
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    for lane in log.lanes:
        if lane.is_connector:
            continue  # any heading along a junction connector is legal
        poly = np.asarray(lane.polygon, np.float64)
        if (poly.max(axis=0) < lo).any() or (poly.min(axis=0) > hi).any():
            continue
        outline = Polygon(poly)
        shapely.prepare(outline)  # ~30x faster point-in-polygon for a few hundred points
        inside = shapely.contains_xy(outline, pts[:, 0], pts[:, 1])
        if not inside.any():
            continue
        idx = np.nonzero(inside)[0]
        dist, tan = _point_segment_tangents(pts[idx], np.asarray(lane.centerline, np.float64))
        closer = dist < best[idx]
        best[idx[closer]] = dist[closer]
        tangent[idx[closer]] = tan[closer]
    against = np.maximum(-(disp * tangent).sum(axis=1), 0.0)  # zero where no lane (tangent 0)
    # Reversing along a reverse interval of the route (three-point turn) follows the route: not wrong-way.
    reversing = sc.speed[:-1] < 0
    for s0, s1 in log.route_reverse_segments:
        in_seg = (route_s[:-1] >= s0 - REVERSE_SEGMENT_MARGIN_M) & (route_s[:-1] <= s1 + REVERSE_SEGMENT_MARGIN_M)
        against[reversing & in_seg] = 0.0
    n = max(1, int(round(DDC_WINDOW_S / sc.dt)))
    if len(against) <= n:
        return float(against.sum())
    csum = np.concatenate([[0.0], np.cumsum(against)])
    return float((csum[n:] - csum[:-n]).max())


def ddc_from_wrong_way(metres: float) -> float:
    """nuPlan's driving-direction score from the largest wrong-way progress over a window."""
    if metres < DDC_COMPLIANT_M:
        return 1.0
    return 0.5 if metres < DDC_VIOLATION_M else 0.0


def _ttc_violations(sc: _Scene, contact: np.ndarray) -> np.ndarray:
    """(K,) bool: a constant-velocity projection of the moving ego over TTC_HORIZON_S overlaps an agent that is
    ahead of or beside it (agents already in contact are left to the collision metric)."""
    viol = np.zeros(sc.k, bool)
    if not sc.present.size:
        return viol
    taus = TTC_STEP_S * np.arange(1, int(round(TTC_HORIZON_S / TTC_STEP_S)) + 1)  # (T,)
    u = sc.ego_dir
    moving = np.abs(sc.speed) >= STOPPED_SPEED_MPS
    motion = u * np.sign(sc.speed)[:, None]  # (K, 2)
    rel = sc.ag_xy - sc.centre[None]  # (A, K, 2)
    ahead_or_beside = (rel * motion[None]).sum(-1) > -sc.hl  # centre not behind the ego's trailing edge
    reach = (
        math.hypot(sc.hl, sc.hw)
        + np.hypot(sc.ag_hl, sc.ag_hw)[:, None]
        + (np.abs(sc.speed)[None] + np.abs(sc.ag_speed)) * TTC_HORIZON_S
    )
    cand = sc.present & moving[None] & ahead_or_beside & ~contact & (np.linalg.norm(rel, axis=-1) < reach)
    a_idx, k_idx = np.nonzero(cand)
    if not len(a_idx):
        return viol
    ego_vel = (u * sc.speed[:, None])[k_idx]  # (N, 2)
    ag_dir = np.stack([np.cos(sc.ag_yaw[a_idx, k_idx]), np.sin(sc.ag_yaw[a_idx, k_idx])], axis=-1)
    ag_vel = ag_dir * sc.ag_speed[a_idx, k_idx][:, None]
    ego_c = sc.centre[k_idx][:, None] + ego_vel[:, None] * taus[None, :, None]  # (N, T, 2)
    ag_c = sc.ag_xy[a_idx, k_idx][:, None] + ag_vel[:, None] * taus[None, :, None]
    hit = boxes_overlap(
        ego_c,
        sc.yaw[k_idx][:, None],
        sc.hl,
        sc.hw,
        ag_c,
        sc.ag_yaw[a_idx, k_idx][:, None],
        sc.ag_hl[a_idx][:, None],
        sc.ag_hw[a_idx][:, None],
    ).any(axis=1)
    viol[k_idx[hit]] = True
    return viol


def _smooth(y: np.ndarray, dt: float, window_s: float, poly: int, deriv: int = 0) -> np.ndarray:
    n = len(y)
    if n < poly + 2:  # too short to fit: plain finite differences
        out = y.copy()
        for _ in range(deriv):
            out = np.gradient(out, dt) if len(out) > 1 else np.zeros_like(out)
        return out
    w = _odd_window(window_s, dt, n, poly)
    return savgol_filter(y, window_length=w, polyorder=poly, deriv=deriv, delta=dt)


def comfort_signals(sc_or_log: EpisodeLog | _Scene) -> dict[str, np.ndarray]:
    """(K,) smoothed signals checked by the comfort metric: ``lon_accel``, ``lat_accel``, ``lon_jerk``,
    ``yaw_rate``, ``yaw_accel`` (units as COMFORT_BOUNDS)."""
    sc = sc_or_log if isinstance(sc_or_log, _Scene) else _Scene.from_log(sc_or_log)
    dt = float(np.mean(np.diff(sc.times)))
    yaw = np.unwrap(sc.yaw)
    lon_accel = _smooth(sc.accel, dt, COMFORT_VALUE_WINDOW_S, 2)
    yaw_rate = _smooth(yaw, dt, COMFORT_DERIVATIVE_WINDOW_S, 2, deriv=1)
    return {
        "lon_accel": lon_accel,
        "lat_accel": _smooth(sc.speed, dt, COMFORT_VALUE_WINDOW_S, 2) * yaw_rate,
        "lon_jerk": _smooth(lon_accel, dt, COMFORT_DERIVATIVE_WINDOW_S, 2, deriv=1),
        "yaw_rate": yaw_rate,
        "yaw_accel": _smooth(yaw, dt, COMFORT_DERIVATIVE_WINDOW_S, 3, deriv=2),
    }


def _stuck(sc: _Scene, log: EpisodeLog, route_s: np.ndarray) -> bool:
    """The ego covered < STUCK_MIN_PROGRESS_M of route in a STUCK_WINDOW_S window (the whole episode when it is
    shorter) in which the expert covered >= STUCK_REFERENCE_MOVING_M."""
    n = min(int(round(STUCK_WINDOW_S / sc.dt)), sc.k - 1)
    ego_window = route_s[n:] - route_s[:-n]
    if log.expert_route_progress is not None:
        curve = np.asarray(log.expert_route_progress, np.float64)
        expert_window = curve[n:] - curve[:-n]
    else:  # only the total is known: assume the expert moved at its mean speed
        duration = float(sc.times[-1] - sc.times[0])
        expert_window = np.full(len(ego_window), log.expert_progress * (sc.times[n] - sc.times[0]) / duration)
    return bool(((ego_window < STUCK_MIN_PROGRESS_M) & (expert_window >= STUCK_REFERENCE_MOVING_M)).any())


def ego_progress_score(progress: float, expert_progress: float) -> float:
    """EP: progress over the expert's, clipped to [0, 1]; 1 when the expert covered too little to normalise by
    (NAVSIM: a waiting reference makes a waiting policy fully efficient)."""
    if expert_progress < EP_MIN_REFERENCE_PROGRESS_M:
        return 1.0
    return float(np.clip(progress / expert_progress, 0.0, 1.0))


def combine_score(nc: float, dac: float, ddc: float, ep: float, ttc: float, comfort: float) -> float:
    """SCORE_FORMULA."""
    return float(nc * dac * ddc * (5.0 * ep + 5.0 * ttc + 2.0 * comfort) / 12.0)


# ----------------------------------------------------------------------------------------------------- episode


def score_episode(log: EpisodeLog, reference: EpisodeMetrics | None = None) -> EpisodeMetrics:
    """All closed-loop metrics of one episode.

    Args:
        log: the episode (validated first: ValueError naming the bad field).
        reference: optionally the expert's metrics on the same scenario and seed. As in NAVSIM v2's human filter,
            a map-rule multiplier (DAC, DDC) that the reference also fails is waived (set to 1) and listed in
            ``waived``: e.g. the expert's overtake through the oncoming lane must not zero every policy that does
            the same. Collisions, TTC, comfort and progress are never waived.
    """
    validate_episode_log(log)
    sc = _Scene.from_log(log)

    contact = _contacts(sc)
    collisions = _collisions(sc, log, contact)
    at_fault = [c for c in collisions if c.at_fault]
    by_type = {t: sum(1 for c in at_fault if c.agent_type == t) for t in AGENT_TYPES}
    if by_type["vehicle"] or by_type["pedestrian"] or by_type["cyclist"]:
        nc = 0.0
    elif by_type["static"]:
        nc = 0.5
    else:
        nc = 1.0

    max_out, frac_out = _drivable(sc, log.drivable_area)
    dac = 0.0 if max_out > DRIVABLE_TOLERANCE_M else 1.0

    route = _Route(log.route)
    route_s = route.match(sc.rear, sc.speed, sc.yaw)
    wrong_way = _wrong_way(sc, log, route_s)
    ddc = ddc_from_wrong_way(wrong_way)

    waived: list[str] = []
    if reference is not None:
        if dac < 1.0 and reference.dac < 1.0:
            dac, waived = 1.0, waived + ["dac"]
        if ddc < 1.0 and reference.ddc < 1.0:
            ddc, waived = 1.0, waived + ["ddc"]

    progress = float(route_s[-1] - route_s[0])
    expert = float(log.expert_progress)
    ep = ego_progress_score(progress, expert)
    remaining = route.length - float(route_s[0])
    completion = float(np.clip(progress / remaining, 0.0, 1.0)) if remaining > 1e-6 else 1.0

    ttc_viol = _ttc_violations(sc, contact)
    ttc = 0.0 if ttc_viol.any() else 1.0

    signals = comfort_signals(sc)
    peaks = {name: float(np.abs(sig).max()) for name, sig in signals.items()}
    violations = [
        name
        for name, sig in signals.items()
        if (sig < COMFORT_BOUNDS[name][0]).any() or (sig > COMFORT_BOUNDS[name][1]).any()
    ]
    comfort = 0.0 if violations else 1.0

    stuck = _stuck(sc, log, route_s)
    timeout = log.ended_early.split(":")[0].strip() in TIMEOUT_REASONS
    score = combine_score(nc, dac, ddc, ep, ttc, comfort)
    success = (
        not at_fault
        and dac == 1.0
        and not stuck
        and not timeout
        and progress >= SUCCESS_MIN_PROGRESS_RATIO * expert - 1e-9
    )
    return EpisodeMetrics(
        scenario=log.scenario,
        seed=int(log.seed),
        policy=log.policy,
        num_steps=sc.k,
        duration_s=float(log.duration),
        score=score,
        success=bool(success),
        nc=nc,
        dac=dac,
        ddc=ddc,
        ep=ep,
        ttc=ttc,
        comfort=comfort,
        collisions=collisions,
        num_collisions=len(collisions),
        num_at_fault_collisions=len(at_fault),
        at_fault_by_type=by_type,
        max_outside_drivable_m=max_out,
        frac_steps_outside_drivable=frac_out,
        max_wrong_way_m=wrong_way,
        progress_m=progress,
        expert_progress_m=expert,
        progress_ratio=progress / expert if expert >= EP_MIN_REFERENCE_PROGRESS_M else None,
        route_length_m=route.length,
        route_completion=completion,
        num_ttc_violation_steps=int(ttc_viol.sum()),
        first_ttc_violation_time=float(sc.times[int(np.argmax(ttc_viol))]) if ttc_viol.any() else None,
        comfort_peaks=peaks,
        comfort_violations=violations,
        stuck=stuck,
        timeout=timeout,
        ended_early=log.ended_early,
        rejected_plans=int(log.rejected_plans),
        waived=waived,
    )


# ----------------------------------------------------------------------------------------------------- aggregation

GROUP_KEYS = ("scenario", "seed", "policy")


def summarize_episodes(metrics: Sequence[EpisodeMetrics]) -> dict:
    """Means and rates over episodes. ``progress_ratio`` is total progress over total expert progress (None when
    the experts did not move), so that waiting episodes do not divide by zero."""
    n = len(metrics)
    if n == 0:
        raise ValueError("summarize_episodes needs at least one episode")

    def mean(values: Iterable[float]) -> float:
        return float(np.mean(list(values)))

    expert_total = sum(m.expert_progress_m for m in metrics)
    return {
        "num_episodes": n,
        "score": mean(m.score for m in metrics),
        "success_rate": mean(m.success for m in metrics),
        "at_fault_collision_rate": mean(m.at_fault_collision for m in metrics),
        "collision_rate": mean(m.num_collisions > 0 for m in metrics),
        "num_at_fault_collisions": int(sum(m.num_at_fault_collisions for m in metrics)),
        "nc": mean(m.nc for m in metrics),
        "dac": mean(m.dac for m in metrics),
        "ddc": mean(m.ddc for m in metrics),
        "ep": mean(m.ep for m in metrics),
        "ttc": mean(m.ttc for m in metrics),
        "comfort": mean(m.comfort for m in metrics),
        "progress_m": mean(m.progress_m for m in metrics),
        "expert_progress_m": mean(m.expert_progress_m for m in metrics),
        "progress_ratio": (sum(m.progress_m for m in metrics) / expert_total) if expert_total > 0 else None,
        "route_completion": mean(m.route_completion for m in metrics),
        "stuck_rate": mean(m.stuck for m in metrics),
        "timeout_rate": mean(m.timeout for m in metrics),
    }


def aggregate(metrics: Sequence[EpisodeMetrics], by: str = "scenario") -> dict:
    """Per policy: the summary over all its episodes (``overall``) and per value of ``by`` (``groups``).

    Returns:
        ``{"formula": SCORE_FORMULA, "success_rule": SUCCESS_RULE, "by": by, "policies": {policy: {"overall":
        summary, "groups": {value: summary}}}}``, summaries as :func:`summarize_episodes`; group keys are strings.
    """
    if by not in GROUP_KEYS:
        raise ValueError(f"aggregate: by must be one of {GROUP_KEYS}, got {by!r}")
    if not metrics:
        raise ValueError("aggregate needs at least one episode")
    policies: dict[str, dict] = {}
    for policy in sorted({m.policy for m in metrics}):
        mine = [m for m in metrics if m.policy == policy]
        groups = sorted({str(getattr(m, by)) for m in mine})
        policies[policy] = {
            "overall": summarize_episodes(mine),
            "groups": {g: summarize_episodes([m for m in mine if str(getattr(m, by)) == g]) for g in groups},
        }
    return {"formula": SCORE_FORMULA, "success_rule": SUCCESS_RULE, "by": by, "policies": policies}


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f} %"


def format_table(aggregates: Mapping, policies_order: Sequence[str] | None = None) -> str:
    """Markdown table, one row per policy and group plus a row ``all`` per policy: n, mean score, success rate,
    at-fault collision rate (and count), mean DAC, progress ratio.

    Args:
        aggregates: the output of :func:`aggregate`.
        policies_order: policies first in this order (e.g. expert, log-replay, constant-velocity, AD-MLP, then the
            models); policies not named follow alphabetically, names absent from ``aggregates`` are skipped.
    """
    policies = aggregates["policies"]
    order = [p for p in (policies_order or []) if p in policies]
    order += sorted(p for p in policies if p not in order)
    by = aggregates.get("by", "group")
    lines = [
        f"| policy | {by} | n | score | success | at-fault col. | DAC | progress ratio |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for policy in order:
        entry = policies[policy]
        rows = list(entry["groups"].items()) + [("all", entry["overall"])]
        for group, s in rows:
            ratio = "-" if s["progress_ratio"] is None else f"{s['progress_ratio']:.2f}"
            lines.append(
                f"| {policy} | {group} | {s['num_episodes']} | {s['score']:.3f} | {_pct(s['success_rate'])} | "
                f"{_pct(s['at_fault_collision_rate'])} ({s['num_at_fault_collisions']}) | {s['dac']:.3f} | {ratio} |"
            )
    return "\n".join(lines)


__all__ = [
    "AGENT_TYPES",
    "COLLISION_KINDS",
    "COMFORT_BOUNDS",
    "CollisionRecord",
    "EpisodeMetrics",
    "SCORE_FORMULA",
    "SUCCESS_RULE",
    "agent_type",
    "aggregate",
    "box_corners",
    "boxes_overlap",
    "combine_score",
    "comfort_signals",
    "ddc_from_wrong_way",
    "ego_progress_score",
    "format_table",
    "score_episode",
    "summarize_episodes",
    "validate_episode_log",
]
