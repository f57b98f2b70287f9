"""Traffic simulation: IDM car-following along lane paths, junction reservations, pedestrians crossing at
crosswalks, parked and stopped vehicles. The expert ego is a :class:`Driver` too (built by ``ego_driver``).

Frames: global map frame (x, y metres, yaw radians). A driver's arc length ``s`` refers to its *reference point*
on its path: the box centre for agents, the ego-pose origin (rear axle) for the ego (``front`` = distance from the
reference point to the front bumper, ``rear`` to the rear bumper).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from shapely.geometry import LineString, Polygon

from dima_core.data.synth.geometry import Path


@dataclass
class IDMParams:
    """Intelligent Driver Model parameters (Treiber et al. 2000)."""

    a_max: float = 1.5  # m/s^2 comfortable acceleration
    b_comf: float = 2.0  # m/s^2 comfortable deceleration
    headway: float = 1.4  # s desired time headway
    s0: float = 2.0  # m standstill gap
    a_min: float = -8.0  # m/s^2 hardest braking
    lat_acc: float = 2.0  # m/s^2 comfortable lateral acceleration in curves


def idm_accel(v: float, v_des: float, gap: float, dv: float, p: IDMParams) -> float:
    """IDM acceleration for speed ``v`` towards ``v_des`` with ``gap`` (m, inf = free road) to a leader that is
    slower by ``dv`` (m/s, v - v_leader)."""
    v_des = max(v_des, 0.01)
    free = 1.0 - (v / v_des) ** 4
    if math.isinf(gap):
        acc = p.a_max * free
    else:
        s_star = p.s0 + max(0.0, v * p.headway + v * dv / (2.0 * math.sqrt(p.a_max * p.b_comf)))
        acc = p.a_max * (free - (s_star / max(gap, 0.05)) ** 2)
    return float(min(max(acc, p.a_min), p.a_max))


@dataclass
class Segment:
    """One leg of a driver's plan: drive ``path`` (forward, or in reverse when ``path.reverse``)."""

    path: Path
    v_max: float
    stop_at_end: bool = False
    dwell: float = 0.0  # seconds standing still at the end before the next segment starts


@dataclass
class StopPoint:
    """A place on a segment where the driver must come to a full stop for ``dwell`` seconds (stop sign)."""

    segment: int
    s: float
    dwell: float
    stopped_for: float = 0.0
    released: bool = False


@dataclass
class Driver:
    """A vehicle that follows a plan of segments with IDM speed control."""

    segments: list[Segment]
    length: float
    width: float
    front: float  # reference point -> front bumper, metres
    idm: IDMParams = field(default_factory=IDMParams)
    s: float = 0.0
    v: float = 0.0
    a: float = 0.0
    seg: int = 0
    dwell_left: float = -1.0
    finished: bool = False  # reached the end of a non-stopping plan: left the world
    stops: list[StopPoint] = field(default_factory=list)
    gate: object | None = None  # callable(sim, driver) -> bool: may the driver pass gate_s on segment 0?
    gate_s: float = math.inf
    gate_passed: bool = False
    start_time: float = 0.0  # the driver stays still (and hidden if ``hidden_before_start``) until then
    hidden_before_start: bool = False
    # Filled by the simulation: per segment, junction passages (jid, s_in, s_out) and crosswalk entries (cw, s).
    junction_spans: list[list[tuple[int, float, float]]] = field(default_factory=list)
    crosswalk_entries: list[list[tuple[int, float]]] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.segments[self.seg].path

    def pose(self) -> tuple[float, float, float]:
        return self.path.at(self.s)

    def signed_speed(self) -> float:
        return -self.v if self.path.reverse else self.v


@dataclass
class Walker:
    """A pedestrian walking a path at constant speed; crossing walkers wait at the kerb for a gap."""

    path: Path
    speed: float
    start_time: float
    crosswalk: int | None = None
    s: float = 0.0
    v: float = 0.0
    started: bool = False

    @property
    def done(self) -> bool:
        return self.s >= self.path.length - 1e-6

    def waiting(self, t: float) -> bool:
        """At the kerb of its crosswalk, wanting to cross."""
        return self.crosswalk is not None and not self.started and t >= self.start_time

    @property
    def crossing_now(self) -> bool:
        return self.crosswalk is not None and self.started and not self.done


@dataclass
class Actor:
    """Anything annotated: a vehicle (driver or static), a pedestrian (walker) or a cyclist (driver)."""

    id: int
    category: str  # nuScenes category name, e.g. vehicle.car
    length: float
    width: float
    height: float
    color: tuple[int, int, int]  # BGR body colour
    driver: Driver | None = None
    walker: Walker | None = None
    static_pose: tuple[float, float, float] | None = None
    static_kind: str = ""  # "parked" or "stopped" for static vehicles

    @property
    def is_pedestrian(self) -> bool:
        return self.category.startswith("human.")

    @property
    def is_cycle(self) -> bool:
        return self.category in ("vehicle.bicycle", "vehicle.motorcycle")

    def visible_now(self, t: float) -> bool:
        if self.driver is not None:
            return not self.driver.finished and not (self.driver.hidden_before_start and t < self.driver.start_time)
        return True

    def state(self) -> tuple[float, float, float, float]:
        """x, y, yaw (box centre, global) and signed speed along the heading."""
        if self.driver is not None:
            x, y, yaw = self.driver.pose()
            return x, y, yaw, self.driver.signed_speed()
        if self.walker is not None:
            x, y, yaw = self.walker.path.at(self.walker.s)
            return x, y, yaw, self.walker.v
        assert self.static_pose is not None
        return self.static_pose[0], self.static_pose[1], self.static_pose[2], 0.0


class Simulation:
    """Steps the ego and all actors; records states at every step.

    ``ego_centre_offset``: the ego box centre lies this far ahead of the ego-pose origin (docs/design.md, Frames
    and shapes).
    """

    def __init__(
        self,
        ego: Driver,
        actors: list[Actor],
        junctions: dict[int, Polygon],
        crosswalks: dict[int, Polygon],
        dt: float,
        ego_centre_offset: float,
    ):
        self.ego = ego
        self.actors = actors
        self.dt = dt
        self.t = 0.0
        self.ego_centre_offset = ego_centre_offset
        self.junction_polys = junctions
        self.crosswalk_polys = crosswalks
        self.holders: dict[int, set[int]] = {j: set() for j in junctions}
        self._portion_cache: dict[tuple[int, int, int, int], bool] = {}
        self.drivers: list[tuple[int, Driver]] = [(-1, ego)] + [
            (a.id, a.driver) for a in actors if a.driver is not None
        ]
        for _, d in self.drivers:
            d.junction_spans = [self._spans(seg.path) for seg in d.segments]
            d.crosswalk_entries = [self._cw_entries(seg.path) if not seg.path.reverse else [] for seg in d.segments]
        self._portions: dict[tuple[int, int], np.ndarray] = {}

    # ---- precomputation -----------------------------------------------------------------------------------------
    def _spans(self, path: Path) -> list[tuple[int, float, float]]:
        spans = []
        line = LineString(path.xy)
        for jid, poly in self.junction_polys.items():
            inter = line.intersection(poly)
            if inter.is_empty:
                continue
            s_vals = [line.project(p) for p in _points_of(inter)]
            spans.append((jid, min(s_vals), max(s_vals)))
        return spans

    def _cw_entries(self, path: Path) -> list[tuple[int, float]]:
        out = []
        line = LineString(path.xy)
        for cid, poly in self.crosswalk_polys.items():
            inter = line.intersection(poly)
            if not inter.is_empty:
                out.append((cid, min(line.project(p) for p in _points_of(inter))))
        return out

    # ---- one step -----------------------------------------------------------------------------------------------
    def ego_state(self) -> tuple[float, float, float, float]:
        """The ego-pose origin x, y, yaw and signed speed the other road users see (the closed-loop simulator
        overrides this with the planner-driven vehicle)."""
        x, y, yaw = self.ego.pose()
        return x, y, yaw, self.ego.signed_speed()

    def footprints(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Current obstacles: ids (K,) (-1 = ego), centres (K, 2), velocity vectors (K, 2), half lengths (K,),
        half widths (K,), is_pedestrian (K,)."""
        ids, xy, vel, hl, hw, ped = [], [], [], [], [], []
        x, y, yaw, v = self.ego_state()
        ids.append(-1)
        xy.append((x + self.ego_centre_offset * math.cos(yaw), y + self.ego_centre_offset * math.sin(yaw)))
        vel.append((v * math.cos(yaw), v * math.sin(yaw)))
        hl.append(self.ego.length / 2)
        hw.append(self.ego.width / 2)
        ped.append(False)
        for a in self.actors:
            if not a.visible_now(self.t):
                continue
            ax, ay, ayaw, av = a.state()
            ids.append(a.id)
            xy.append((ax, ay))
            vel.append((av * math.cos(ayaw), av * math.sin(ayaw)))
            hl.append(a.length / 2)
            hw.append(a.width / 2)
            ped.append(a.is_pedestrian)
        return (
            np.array(ids),
            np.array(xy, float),
            np.array(vel, float),
            np.array(hl, float),
            np.array(hw, float),
            np.array(ped, bool),
        )

    def leader(self, me: int, d: Driver, obstacles) -> tuple[float, float]:
        """Gap (m, bumper to bumper) and speed along my path of the nearest obstacle on my path ahead."""
        ids, xy, vel, hl, hw, ped = obstacles
        path = d.path
        i0 = path.index(d.s)
        i1 = path.index(d.s + max(40.0, d.v * 4.0))
        if i1 <= i0:
            return math.inf, 0.0
        win = path.xy[i0 : i1 + 1]
        mask = ids != me
        if not mask.any():
            return math.inf, 0.0
        dist = np.linalg.norm(xy[mask, None, :] - win[None, :, :], axis=2)
        k = np.argmin(dist, axis=1)
        dmin = dist[np.arange(len(k)), k]
        margin = np.where(ped[mask], 1.2, 0.35)
        thr = d.width / 2 + hw[mask] + margin
        s_obs = path.s[i0 + k]
        ahead = (s_obs > d.s) & (dmin < thr) & (k < len(win) - 1)
        if not ahead.any():
            return math.inf, 0.0
        gaps = s_obs - d.s - d.front - hl[mask]
        gaps = np.where(ahead, gaps, np.inf)
        j = int(np.argmin(gaps))
        t = path.tangent[i0 + k[j]]
        v_along = float(vel[mask][j] @ np.array([math.cos(t), math.sin(t)]))
        return float(gaps[j]), v_along

    def _portion(self, key: int, d: Driver, jid: int) -> np.ndarray:
        pk = (key, d.seg * 1000 + jid)
        if pk not in self._portions:
            spans = [sp for sp in d.junction_spans[d.seg] if sp[0] == jid][0]
            lo, hi = d.path.index(spans[1]), d.path.index(spans[2])
            self._portions[pk] = d.path.xy[lo : hi + 1]
        return self._portions[pk]

    def _conflict(self, ka: int, da: Driver, kb: int, db: Driver, jid: int) -> bool:
        ck = (ka, kb, da.seg * 1000 + jid, db.seg)
        if ck not in self._portion_cache:
            pa, pb = self._portion(ka, da, jid), self._portion(kb, db, jid)
            if np.linalg.norm(pa[0] - pb[0]) < 0.5:  # same entry lane: plain car-following, no conflict
                conflict = False
            else:
                dist = np.linalg.norm(pa[:, None, :] - pb[None, :, :], axis=2)
                conflict = bool(dist.min() < 3.0)
            self._portion_cache[ck] = conflict
        return self._portion_cache[ck]

    def _junction_gap(self, key: int, d: Driver) -> float:
        """Gap to the entry of the next junction when it is reserved by a conflicting driver, else inf."""
        for jid, s_in, s_out in d.junction_spans[d.seg]:
            if d.s - d.front > s_out:
                self.holders[jid].discard(key)
                continue
            if key in self.holders[jid]:
                return math.inf
            dist = s_in - d.s - d.front
            if dist > max(8.0, d.v * 2.5 + 4.0):
                return math.inf
            drivers = dict(self.drivers)
            blocked = any(self._conflict(key, d, h, drivers[h], jid) for h in self.holders[jid])
            if blocked and dist > -1.0:
                return max(dist - 1.0, 0.05)
            self.holders[jid].add(key)
            return math.inf
        return math.inf

    def _crosswalk_gap(self, d: Driver) -> float:
        """Gap to a crosswalk ahead while a pedestrian on it (or waiting at its kerb) is near my lane, else inf."""
        # Zebra-crossing rule: yield to people on the crossing and to people waiting at its kerb.
        walkers = [
            (a.walker.crosswalk, a.walker.path.at(a.walker.s)[:2])
            for a in self.actors
            if a.walker is not None and (a.walker.crossing_now or a.walker.waiting(self.t))
        ]
        if not walkers:
            return math.inf
        for cid, s_cw in d.crosswalk_entries[d.seg]:
            dist = s_cw - d.s - d.front
            if not (-0.5 < dist < 50.0 and dist > d.v * d.v / (2 * 6.0) - 1.0):
                continue  # passed it, too far, or too close to stop: carry on
            px, py, _ = d.path.at(s_cw + 2.0)
            if any(c == cid and math.hypot(x - px, y - py) < 6.5 for c, (x, y) in walkers):
                return max(dist - 1.5, 0.05)
        return math.inf

    def _drive(self, key: int, d: Driver, obstacles) -> float:
        """Acceleration command of one driver for this step."""
        seg = d.segments[d.seg]
        if self.t < d.start_time:
            return 0.0
        remaining = seg.path.length - d.s
        # Desired speed: segment limit, curvature limit over the braking horizon, and a stop at the segment end.
        i0, i1 = seg.path.index(d.s), seg.path.index(d.s + max(8.0, d.v * 3.0))
        kappa = float(seg.path.curvature[i0 : i1 + 1].max()) if i1 >= i0 else 0.0
        v_des = min(seg.v_max, math.sqrt(d.idm.lat_acc / max(kappa, 1e-4)))
        if seg.stop_at_end:
            # Kinematic stopping profile (IDM alone creeps towards a standstill point only asymptotically).
            v_des = min(v_des, math.sqrt(2.0 * d.idm.b_comf * 0.75 * max(remaining, 0.0)) + 0.05)
        gaps = [(math.inf, 0.0)]
        if not seg.path.reverse:
            gaps.append(self.leader(key, d, obstacles))
            gaps.append((self._junction_gap(key, d), 0.0))
            gaps.append((self._crosswalk_gap(d), 0.0))
            for sp in d.stops:
                if sp.segment == d.seg and not sp.released:
                    gaps.append((sp.s - d.s + d.idm.s0 - 0.3, 0.0))
            if d.seg == 0 and d.gate is not None and not d.gate_passed:
                # A gate (e.g. "is the oncoming lane free for the overtake?") holds the driver at gate_s until
                # it opens; once it opens within 15 m of the gate the driver commits.
                clear = bool(d.gate(self, d))
                if clear and d.gate_s - d.s < 15.0:
                    d.gate_passed = True
                elif not clear:
                    gaps.append((d.gate_s - d.s + d.idm.s0 - 0.3, 0.0))
        gap, v_lead = min(gaps, key=lambda g: g[0])
        return idm_accel(d.v, v_des, gap, d.v - v_lead, d.idm)

    def step(self) -> None:
        obstacles = self.footprints()
        dt = self.dt
        commands = []
        for key, d in self.drivers:
            if d.finished:
                commands.append(0.0)
                continue
            seg = d.segments[d.seg]
            at_final_stop = d.seg + 1 == len(d.segments) and seg.stop_at_end and d.s >= seg.path.length - 0.05
            if d.dwell_left >= 0.0 or at_final_stop:
                commands.append(0.0)
                continue
            commands.append(self._drive(key, d, obstacles))
        for (_, d), acc in zip(self.drivers, commands, strict=True):
            if d.finished:
                continue
            seg = d.segments[d.seg]
            if d.dwell_left >= 0.0:
                d.a, d.v = 0.0, 0.0
                d.dwell_left -= dt
                if d.dwell_left < 0.0:
                    d.seg += 1
                    d.s = 0.0
                continue
            v_new = max(0.0, d.v + acc * dt)
            d.a = (v_new - d.v) / dt
            d.v = v_new
            d.s += d.v * dt
            for sp in d.stops:
                if sp.segment == d.seg and not sp.released and d.v < 0.05 and sp.s - d.s < d.idm.s0 + 1.0:
                    sp.stopped_for += dt
                    if sp.stopped_for >= sp.dwell:
                        sp.released = True
            if seg.stop_at_end and seg.path.length - d.s < 0.3 and d.v < 1.0:
                d.s, d.v = seg.path.length, 0.0  # arrived: snap onto the end point
            if d.s >= seg.path.length - 0.05:
                if d.seg + 1 < len(d.segments) and (d.v < 0.3 or not seg.stop_at_end):
                    d.s = seg.path.length
                    if seg.stop_at_end:
                        d.v, d.a = 0.0, 0.0
                        d.dwell_left = seg.dwell
                    else:
                        d.seg += 1
                        d.s = 0.0
                elif d.seg + 1 >= len(d.segments):
                    d.s = seg.path.length
                    if seg.stop_at_end:
                        d.v = 0.0
                    else:
                        d.finished = True
                else:
                    d.s = seg.path.length
        # Pedestrians.
        for a in self.actors:
            w = a.walker
            if w is None:
                continue
            if not w.started and self.t >= w.start_time:
                w.started = w.crosswalk is None or self._kerb_clear(w, obstacles)
            if w.started and not w.done:
                w.v = w.speed
                w.s = min(w.s + w.speed * dt, w.path.length)
            else:
                w.v = 0.0
        self.t += dt

    def _kerb_clear(self, w: Walker, obstacles) -> bool:
        """A pedestrian steps onto the crosswalk only if no moving vehicle is about to arrive (within ~2 s)."""
        ids, xy, vel, hl, hw, ped = obstacles
        centre = w.path.xy[len(w.path.xy) // 2]
        veh = ~ped
        rel = centre - xy[veh]
        dist = np.linalg.norm(rel, axis=1)
        closing = (vel[veh] * rel).sum(1) / np.maximum(dist, 1e-6)
        moving = np.linalg.norm(vel[veh], axis=1) > 0.3  # parked cars never stop anyone from crossing
        danger = moving & ((dist < 6.0) | ((closing > 0.5) & (dist < 5.0 + 2.2 * closing)))
        return not bool(danger.any())


def _points_of(geom) -> list:
    """Vertices of a shapely intersection result (point, line or collection) as shapely Points."""
    from shapely.geometry import Point

    if geom.geom_type == "Point":
        return [geom]
    if hasattr(geom, "geoms"):
        out = []
        for g in geom.geoms:
            out.extend(_points_of(g))
        return out
    return [Point(c) for c in geom.coords]
