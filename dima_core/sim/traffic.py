"""The synthetic world's traffic, reacting to a planner-driven ego.

:class:`ReactiveTraffic` is the dataset's :class:`~dima_core.data.synth.traffic.Simulation` with one change: the
ego is not the expert driver any more but whatever vehicle the simulator moves (``set_ego``). Everything else
already reads the ego's footprint from ``Simulation.ego_state``: IDM car-following finds the ego on its path ahead,
pedestrians wait at the kerb while the ego approaches a crosswalk. What the dataset decides by reservations between
drivers (who enters a junction first) is extended here: a driver about to enter a junction yields while the ego is
inside it or about to cross its path there (``_ego_blocks_junction``).
"""

from __future__ import annotations

import copy
import math

import numpy as np
from shapely.geometry import Point, Polygon

from dima_core.constants import EGO_FOOTPRINT_FORWARD_OFFSET_M, EGO_LENGTH_M
from dima_core.data.synth.ego_driver import EGO_FRONT
from dima_core.data.synth.geometry import Path
from dima_core.data.synth.scenarios import ScenePlan
from dima_core.data.synth.traffic import Driver, Simulation

EGO_KEY = -1  # the ego's key in Simulation.drivers / footprints ids
JUNCTION_EGO_CLEARANCE_M = 3.0  # a driver's path through a junction this close to the ego's: conflict
JUNCTION_EGO_HORIZON_S = 2.5  # how far ahead the ego's motion is extrapolated when judging that conflict


class ReactiveTraffic(Simulation):
    """Traffic of a :class:`ScenePlan` around an externally driven ego.

    Junctions: in the dataset the expert reserves a junction when its front bumper comes within
    ``max(8 m, 2.5 s * v + 4 m)`` of the entry and no conflicting driver holds it, and every driver whose way
    through the junction conflicts with a holder's waits at the entry. The live ego reserves by the same rule along
    its route (``set_ego(..., route_s=)``), so a planner waiting at a stop sign gets its turn as the expert did;
    agents also wait while the ego is physically in their way (``_ego_blocks_junction``), whatever its route.

    Args:
        plan: the scene (its ``ego`` driver only gives the ego's size and starting state; it is never stepped).
        dt: step, seconds.
        route_xy: (N, 2) the ego's route, for junction reservations (None: no reservations).
    """

    def __init__(self, plan: ScenePlan, dt: float, route_xy: np.ndarray | None = None):
        junctions = {j.id: j.polygon for j in plan.net.junctions}
        crosswalks = {c.id: Polygon(c.polygon) for c in plan.net.crosswalks}
        super().__init__(plan.ego, plan.actors, junctions, crosswalks, dt, EGO_FOOTPRINT_FORWARD_OFFSET_M)
        self.drivers = [(key, d) for key, d in self.drivers if key != EGO_KEY]
        x, y, yaw = plan.ego.pose()
        self._ego = (x, y, yaw, plan.ego.signed_speed())
        # True in the expert policy's rollouts: there the ego *is* the expert driver again, as in the dataset.
        self.follow_driver = False
        self._ego_spans: list[tuple[int, float, float]] = []
        self._ego_portions: dict[int, np.ndarray] = {}
        if route_xy is not None and len(route_xy) >= 2:
            route = Path(np.asarray(route_xy, np.float64))
            self._ego_spans = plan.net.junction_spans(route.xy)
            for jid, s_in, s_out in self._ego_spans:
                self._ego_portions[jid] = route.xy[route.index(s_in) : route.index(s_out) + 1]

    def set_ego(self, x: float, y: float, yaw: float, v: float, route_s: float | None = None) -> None:
        """The ego-pose origin and signed speed every other road user reacts to from the next step on, and its
        arc length along the route (updates its junction reservations)."""
        self._ego = (float(x), float(y), float(yaw), float(v))
        if route_s is not None:
            self._reserve_for_ego(float(route_s), abs(float(v)))

    def ego_state(self) -> tuple[float, float, float, float]:
        if self.follow_driver:
            return super().ego_state()
        return self._ego

    def ego_holds(self, jid: int) -> bool:
        return EGO_KEY in self.holders.get(jid, set())

    def _ego_conflict(self, key: int, d: Driver, jid: int) -> bool:
        """Does driver ``key``'s way through junction ``jid`` cross the ego's route there (3 m, different entry)?"""
        ego = self._ego_portions.get(jid)
        if ego is None or len(ego) == 0:
            return False
        theirs = self._portion(key, d, jid)
        if np.linalg.norm(theirs[0] - ego[0]) < 0.5:
            return False  # same entry lane: plain car-following
        return bool(np.linalg.norm(theirs[:, None, :] - ego[None, :, :], axis=2).min() < 3.0)

    def _reserve_for_ego(self, s: float, v: float) -> None:
        front, rear = s + EGO_FRONT, s - (EGO_LENGTH_M - EGO_FRONT)
        drivers = dict(self.drivers)
        for jid, s_in, s_out in self._ego_spans:
            held = self.holders[jid]
            if rear > s_out:
                held.discard(EGO_KEY)
                continue
            if EGO_KEY in held:
                continue
            dist = s_in - front
            if dist > max(8.0, v * 2.5 + 4.0):
                continue
            if not any(h in drivers and self._ego_conflict(h, drivers[h], jid) for h in held):
                held.add(EGO_KEY)

    def _ego_blocks_junction(self, key: int, d: Driver, jid: int) -> bool:
        """The ego is in junction ``jid`` or will be within the horizon, close to the driver's way through it."""
        x, y, yaw, v = self._ego
        cx = x + self.ego_centre_offset * math.cos(yaw)
        cy = y + self.ego_centre_offset * math.sin(yaw)
        reach = abs(v) * JUNCTION_EGO_HORIZON_S
        poly = self.junction_polys[jid]
        if poly.distance(Point(cx, cy)) > reach + self.ego.length:
            return False
        t = np.linspace(0.0, JUNCTION_EGO_HORIZON_S, 6)
        sweep = np.stack([cx + v * t * math.cos(yaw), cy + v * t * math.sin(yaw)], axis=1)
        portion = self._portion(key, d, jid)
        dist = np.linalg.norm(portion[:, None, :] - sweep[None, :, :], axis=2)
        return bool(dist.min() < JUNCTION_EGO_CLEARANCE_M + self.ego.width / 2)

    def _junction_gap(self, key: int, d: Driver) -> float:
        """As the dataset's reservation rule, with the live ego as a holder (by its route) and as an obstacle."""
        if self.follow_driver or key == EGO_KEY:
            return super()._junction_gap(key, d)
        for jid, s_in, s_out in d.junction_spans[d.seg]:
            if d.s - d.front > s_out:
                continue
            if key in self.holders[jid]:
                break  # already committed to this junction: never stop inside it
            dist = s_in - d.s - d.front
            if dist > max(8.0, d.v * 2.5 + 4.0):
                break
            if dist > -1.0 and (
                (self.ego_holds(jid) and self._ego_conflict(key, d, jid)) or self._ego_blocks_junction(key, d, jid)
            ):
                return max(dist - 1.0, 0.05)
            break
        holders = {jid: set(h) for jid, h in self.holders.items()}
        for h in self.holders.values():
            h.discard(EGO_KEY)  # the base rule looks holders up among the IDM drivers; the ego was handled above
        try:
            return super()._junction_gap(key, d)
        finally:
            for jid, h in holders.items():
                self.holders[jid] = h | (self.holders[jid] - {EGO_KEY}) if EGO_KEY in h else self.holders[jid]

    def start_rollout(self, expert: Driver) -> ReactiveTraffic:
        """A copy of this traffic in which ``expert`` (copied) drives the ego as in the dataset."""
        rollout = copy.deepcopy(self)
        ego = copy.deepcopy(expert)
        rollout.ego = ego
        rollout.drivers = [(EGO_KEY, ego)] + rollout.drivers
        rollout.follow_driver = True
        for jid, held in rollout.holders.items():
            held.discard(EGO_KEY)
            if any(
                sp[0] == jid and ego.s - ego.front <= sp[2] for sp in ego.junction_spans[ego.seg]
            ) and self.ego_holds(jid):
                held.add(EGO_KEY)  # keep the live ego's right of way where the expert's current leg crosses it
        return rollout


__all__ = ["EGO_KEY", "ReactiveTraffic"]
