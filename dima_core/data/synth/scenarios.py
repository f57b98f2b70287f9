"""Scenario builders: for each scenario name, a road network, the expert ego's plan and the other actors.

Every builder works in the scene's own region of a location map: ``origin`` (2,) is the region centre and
``heading`` a random rotation of the whole layout, so scenes sharing a location never overlap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from dima_core.data.synth import ego_driver
from dima_core.data.synth.config import SynthConfig
from dima_core.data.synth.geometry import Path, offset
from dima_core.data.synth.roads import WALKWAY_WIDTH, RoadNetwork, place_buildings
from dima_core.data.synth.traffic import Actor, Driver, IDMParams, Segment, Walker

# Vehicle templates: category, (width, length, height) ranges in metres.
VEHICLES = (
    ("vehicle.car", (1.75, 2.0), (4.1, 4.9), (1.4, 1.75), 0.70),
    ("vehicle.car", (1.85, 2.05), (4.6, 5.2), (1.7, 1.95), 0.12),  # SUVs / vans
    ("vehicle.truck", (2.3, 2.6), (6.0, 9.5), (2.7, 3.5), 0.10),
    ("vehicle.bus.rigid", (2.5, 2.8), (10.5, 12.5), (3.0, 3.4), 0.08),
)
CAR_COLOURS = (
    (40, 40, 200),
    (200, 200, 200),
    (30, 30, 30),
    (160, 60, 20),
    (230, 230, 230),
    (20, 120, 220),
    (90, 90, 90),
    (60, 160, 60),
    (20, 200, 230),
    (120, 40, 100),
    (180, 130, 60),
)
CLOTHES = ((40, 40, 160), (160, 60, 40), (30, 30, 30), (60, 140, 60), (200, 200, 200), (40, 150, 200), (120, 80, 140))


@dataclass
class ScenePlan:
    """Everything needed to simulate and render one scene."""

    scenario: str
    tags: list[str]
    net: RoadNetwork
    ego: Driver
    actors: list[Actor]
    ego_route: list[str] = field(default_factory=list)  # lane ids the ego drives (for tests and the map check)


class _Builder:
    def __init__(self, cfg: SynthConfig, rng: np.random.Generator, origin: np.ndarray, heading: float):
        self.cfg = cfg
        self.rng = rng
        self.origin = origin
        self.heading = heading
        self.net = RoadNetwork()
        self.actors: list[Actor] = []
        self.occupied: list[tuple[np.ndarray, float]] = []  # (centre, radius) of placed actors and the ego start

    # ---- geometry ---------------------------------------------------------------------------------------------
    def local(self, x: float, y: float) -> tuple[float, float]:
        c, s = math.cos(self.heading), math.sin(self.heading)
        return float(self.origin[0] + c * x - s * y), float(self.origin[1] + s * x + c * y)

    def corridor(self, length: float, curvy: bool, lanes_fwd: int, lanes_bwd: int, dead_end: bool = False) -> int:
        """One road starting ``length / 2`` behind the origin; returns its id."""
        pieces: list[tuple[float, float]] = []
        remaining = length
        while remaining > 1.0:
            straight = float(self.rng.uniform(30, 90)) if curvy else remaining
            straight = min(straight, remaining)
            pieces.append((straight, 0.0))
            remaining -= straight
            if curvy and remaining > 40:
                radius = float(self.rng.uniform(50, 180))
                angle = float(self.rng.uniform(0.25, 0.8))
                arc = min(radius * angle, remaining)
                pieces.append((arc, float(self.rng.choice([-1, 1])) / radius))
                remaining -= arc
        x, y = self.local(-length / 2, 0.0)
        road = self.net.add_road(x, y, self.heading, pieces, lanes_fwd, lanes_bwd, dead_end=dead_end)
        return road.id

    # ---- actors -----------------------------------------------------------------------------------------------
    def free(self, p: np.ndarray, radius: float) -> bool:
        return all(np.linalg.norm(p - c) > radius + r for c, r in self.occupied)

    def vehicle_template(self, category: str | None = None) -> tuple[str, float, float, float, tuple[int, int, int]]:
        rng = self.rng
        options = [v for v in VEHICLES if category is None or v[0] == category] or list(VEHICLES)
        weights = np.array([v[4] for v in options])
        cat, wr, lr, hr, _ = options[int(rng.choice(len(options), p=weights / weights.sum()))]
        colour = CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))]
        if cat == "vehicle.bus.rigid":
            colour = ((30, 160, 230), (40, 40, 180), (200, 120, 30))[int(rng.integers(3))]
        return cat, float(rng.uniform(*wr)), float(rng.uniform(*lr)), float(rng.uniform(*hr)), colour

    def add_driver(
        self, route_xy: np.ndarray, s: float, v_des: float, category: str | None = None, start_time: float = 0.0
    ) -> Actor | None:
        """A moving vehicle on ``route_xy`` at arc length ``s`` (its box centre), unless that spot is taken."""
        cat, w, l, h, colour = self.vehicle_template(category)
        path = Path(route_xy)
        if not (l / 2 < s < path.length - l):
            return None
        x, y, _ = path.at(s)
        p = np.array([x, y])
        if not self.free(p, l / 2 + 5.0):
            return None
        v0 = v_des * float(self.rng.uniform(0.7, 1.0))
        idm = IDMParams(
            a_max=1.2 if cat != "vehicle.car" else 1.6, b_comf=2.0, headway=float(self.rng.uniform(1.2, 1.8))
        )
        d = Driver([Segment(path, v_des)], l, w, l / 2, idm, s=s, v=v0, start_time=start_time)
        actor = Actor(len(self.actors), cat, l, w, h, colour, driver=d)
        self.actors.append(actor)
        self.occupied.append((p, l / 2 + 3.0))
        return actor

    def add_static(self, x: float, y: float, yaw: float, kind: str, category: str | None = None) -> Actor | None:
        cat, w, l, h, colour = self.vehicle_template(category)
        p = np.array([x, y])
        if not self.free(p, l / 2 + 1.0):
            return None
        actor = Actor(len(self.actors), cat, l, w, h, colour, static_pose=(x, y, yaw), static_kind=kind)
        self.actors.append(actor)
        self.occupied.append((p, l / 2 + 0.5))
        return actor

    def add_walker(self, path_xy: np.ndarray, start_time: float, crosswalk: int | None = None, s: float = 0.0) -> Actor:
        rng = self.rng
        adult = rng.random() > 0.1
        h = float(rng.uniform(1.6, 1.9)) if adult else float(rng.uniform(1.1, 1.4))
        w = Walker(Path(path_xy), float(rng.uniform(1.1, 1.6)), start_time, crosswalk, s=s)
        cat = "human.pedestrian.adult" if adult else "human.pedestrian.child"
        actor = Actor(
            len(self.actors),
            cat,
            float(rng.uniform(0.5, 0.8)),
            float(rng.uniform(0.5, 0.7)),
            h,
            CLOTHES[int(rng.integers(len(CLOTHES)))],
            walker=w,
        )
        self.actors.append(actor)
        return actor

    def add_cyclist(self, road_id: int, direction: int, s: float) -> Actor | None:
        road = self.net.roads[road_id]
        edge = road.right_edge_offset if direction > 0 else road.left_edge_offset
        line = offset(road.cl, edge + (1.0 if direction > 0 else -1.0) * (road.shoulder * 0.55))
        if direction < 0:
            line = line[::-1]
        path = Path(line)
        if not (2.0 < s < path.length - 5.0):
            return None
        x, y, _ = path.at(s)
        if not self.free(np.array([x, y]), 3.0):
            return None
        v = float(self.rng.uniform(3.5, 6.0))
        d = Driver([Segment(path, v)], 1.8, 0.7, 0.9, IDMParams(a_max=1.0), s=s, v=v)
        cat = "vehicle.bicycle" if self.rng.random() < 0.7 else "vehicle.motorcycle"
        colour = CLOTHES[int(self.rng.integers(len(CLOTHES)))]
        actor = Actor(len(self.actors), cat, 1.8, 0.7, 1.6, colour, driver=d)
        self.actors.append(actor)
        self.occupied.append((np.array([x, y]), 1.5))
        return actor

    def populate_road(
        self,
        road_id: int,
        ego_lane: str | None,
        avoid_s: tuple[float, float] | None = None,
        oncoming: int | None = None,
    ) -> None:
        """Background life on one road: traffic both ways, parked cars, walkers, cyclists, buildings."""
        tc = self.cfg.traffic
        rng = self.rng
        road = self.net.roads[road_id]
        n_oncoming = tc.vehicles_oncoming if oncoming is None else oncoming
        for direction, count in ((+1, tc.vehicles_same_direction), (-1, n_oncoming)):
            n_lanes = road.lanes_fwd if direction > 0 else road.lanes_bwd
            for _ in range(count):
                lane = self.net.lane(road_id, direction, int(rng.integers(n_lanes)))
                route = self.route_from(lane.id)
                self.add_driver(route, float(rng.uniform(5, Path(route).length * 0.8)), float(rng.uniform(8, 13)))
        for _ in range(tc.parked_vehicles):
            side = int(rng.choice([-1, 1]))
            s = float(rng.uniform(10, road.length - 10))
            if avoid_s and avoid_s[0] < s < avoid_s[1]:
                continue
            edge = road.left_edge_offset if side > 0 else road.right_edge_offset
            cl = road.sub(s - 1.0, s + 1.0)
            p = offset(cl, edge - side * road.shoulder / 2)[len(cl) // 2]
            yaw = math.atan2(cl[-1, 1] - cl[0, 1], cl[-1, 0] - cl[0, 0]) + (math.pi if side > 0 else 0.0)
            self.add_static(float(p[0]), float(p[1]), yaw, "parked", "vehicle.car")
        for _ in range(tc.pedestrians):
            side = int(rng.choice([-1, 1]))
            edge = road.left_edge_offset if side > 0 else road.right_edge_offset
            line = offset(road.cl, edge + side * WALKWAY_WIDTH * float(rng.uniform(0.3, 0.7)))
            if rng.random() < 0.5:
                line = line[::-1]
            path = Path(line)
            s = float(rng.uniform(0, path.length * 0.9))
            walker = self.add_walker(line, 0.0, s=s)
            if rng.random() < 0.25:  # some people just stand
                walker.walker.speed = 0.0
        for _ in range(tc.cyclists):
            self.add_cyclist(road_id, int(rng.choice([-1, 1])), float(rng.uniform(5, road.length * 0.8)))

    def route_from(self, lane_id: str) -> np.ndarray:
        """Route that starts on ``lane_id`` and continues through junctions with random turns."""
        lanes = [lane_id]
        for _ in range(3):
            outs = self.net.lanes[lanes[-1]].outgoing
            if not outs:
                break
            conn = outs[int(self.rng.integers(len(outs)))]
            lanes += [conn] + self.net.lanes[conn].outgoing[:1]
        return self.net.route_xy(lanes)

    def finish(self, scenario: str, tags: list[str], ego: Driver, route: list[str]) -> ScenePlan:
        place_buildings(self.net, self.rng, self.cfg.traffic.buildings_per_100m)
        if any(r.dead_end for r in self.net.roads):
            tags.append("dead_end")
        if self.net.junctions:
            tags.append("intersection")
        if any(r.lanes_fwd > 1 for r in self.net.roads):
            tags.append("multi_lane")
        return ScenePlan(scenario, sorted(set(tags)), self.net, ego, self.actors, route)


def build_scene(scenario: str, cfg: SynthConfig, rng: np.random.Generator, origin: np.ndarray) -> ScenePlan:
    """Build the ScenePlan of ``scenario`` inside the region centred at ``origin`` (2,)."""
    heading = float(rng.uniform(-math.pi, math.pi))
    b = _Builder(cfg, rng, origin, heading)
    return _BUILDERS[scenario](b)


# ---- scenario builders ----------------------------------------------------------------------------------------
def _corridor_scene(b: _Builder, scenario: str) -> ScenePlan:
    rng = b.rng
    curvy = scenario == "cruise" or rng.random() < 0.4
    lanes = 1 if scenario in ("follow", "overtake") else int(rng.choice([1, 2]))
    rid = b.corridor(float(rng.uniform(380, 440)), curvy and scenario != "overtake", lanes, lanes)
    road = b.net.roads[rid]
    cw = None
    s0 = 30.0
    v_max = float(rng.uniform(10.0, 13.5))
    v0 = v_max * float(rng.uniform(0.6, 0.95))
    if scenario == "ped_crossing":
        cw = b.net.add_crosswalk(rid, s0 + v0 * float(rng.uniform(6.0, 8.0)) + 10.0)
    elif rng.random() < 0.3:
        b.net.add_crosswalk(rid, float(rng.uniform(150, road.length - 40)))
    b.net.finalize()
    lane = b.net.lane(rid, +1, lanes - 1 if scenario != "overtake" else 0)
    route_xy = lane.centerline
    ego_xy = Path(route_xy).at(s0)
    b.occupied.append((np.array(ego_xy[:2]), 8.0))
    tags = [scenario]
    if scenario == "overtake":
        obstacle_s = s0 + v0 * float(rng.uniform(5.0, 7.0)) + 15.0
        x, y, yaw = Path(route_xy).at(obstacle_s)
        cat = str(rng.choice(["vehicle.car", "vehicle.truck", "vehicle.car"]))
        obs = b.add_static(x, y, yaw, "stopped", cat)
        assert obs is not None
        ego = ego_driver.overtake(route_xy, s0, v0, v_max * 0.85, obstacle_s, obs.length, road.lane_width)
        b.occupied.append((np.array([x, y]), obs.length / 2 + 25.0))  # keep the passing zone clear of extras
        # One oncoming car that must pass before the ego may borrow the lane.
        opp = b.net.lane(rid, -1, 0)
        opp_path = Path(opp.centerline)
        s_meet, _ = opp_path.project(np.array([[x, y]]))
        b.add_driver(
            opp.centerline, float(s_meet[0]) - float(rng.uniform(60, 90)), float(rng.uniform(9, 12)), "vehicle.car"
        )
        # Oncoming traffic beyond that comes with a gap the ego can use: far ahead, or already past.
        for far in (float(rng.uniform(230, 280)), float(rng.uniform(-60, -30))):
            b.add_driver(opp.centerline, float(s_meet[0]) - far, float(rng.uniform(9, 12)), "vehicle.car")
        avoid = (obstacle_s - 60, obstacle_s + 40)
    elif scenario == "follow":
        lead = b.add_driver(route_xy, s0 + float(rng.uniform(18, 30)), float(rng.uniform(3.5, 7.0)))
        if lead is not None:
            lead.driver.v = lead.driver.segments[0].v_max
        ego = ego_driver.lane_following(route_xy, s0, min(v0, 7.0), v_max)
        avoid = None
    else:
        ego = ego_driver.lane_following(route_xy, s0, v0, v_max)
        avoid = None
    if cw is not None:
        n = int(rng.integers(1, 4))
        t_arrive = (cw.s - s0) / max(v0, 1.0)
        # A group from the ego's kerb (walk_path starts on the right-hand walkway): the ego yields while they wait
        # and cross its lane, then goes.
        path = cw.walk_path
        for k in range(n):
            # Step off the kerb while the ego is still 4-5 s away (they wait for a gap if a car is closer).
            start = max(0.0, t_arrive - float(rng.uniform(4.0, 5.0)) + 0.5 * k)
            jitter = rng.uniform(-1.2, 1.2, size=2)
            b.add_walker(path + jitter * np.array([[0.3, 0.3]]), start, crosswalk=cw.id)
    b.populate_road(rid, lane.id, avoid, oncoming=0 if scenario == "overtake" else None)
    return b.finish(scenario, tags, ego, [lane.id])


def _junction_scene(b: _Builder, scenario: str) -> ScenePlan:
    rng, cfg = b.rng, b.cfg
    lanes = int(rng.choice([1, 2]))
    turn = {"turn_left": "left", "turn_right": "right"}.get(scenario, "straight")
    arms = []
    # (angle, straight length, pieces, lanes_fwd, lanes_bwd, dead_end); the approach arm is at angle pi.
    arms.append((math.pi, float(rng.uniform(150, 190)), [], lanes, lanes, False))
    keep_straight = turn == "straight" or rng.random() < 0.7
    if keep_straight:
        arms.append((0.0, float(rng.uniform(120, 180)), [], lanes, lanes, False))
    for side, name in ((math.pi / 2, "left"), (-math.pi / 2, "right")):
        if name == turn or rng.random() < 0.75 or (not keep_straight and len(arms) < 3):
            dead = name != turn and rng.random() < 0.4
            length = float(rng.uniform(40, 70)) if dead else float(rng.uniform(110, 170))
            pieces = (
                [] if dead or rng.random() < 0.5 else [(40.0, float(rng.choice([-1, 1])) / float(rng.uniform(60, 150)))]
            )
            arms.append((side, length, pieces, lanes, lanes, dead))
    j = b.net.add_junction(b.origin, b.heading, arms)
    for road_id, _ in j.arms:
        b.net.add_crosswalk(road_id, 4.0, stop_lines=scenario != "resume_from_stop")
    approach = b.net.roads[j.arms[0][0]]
    if scenario == "resume_from_stop":
        b.net.add_stop_line(approach.id, -1, 7.5, "STOP_SIGN")
    b.net.finalize()
    in_index = 0 if turn == "left" else lanes - 1
    in_lane = b.net.lane(approach.id, -1, in_index)
    conn = b.net.connector(in_lane.id, turn)
    assert conn is not None, f"junction has no {turn} connector"
    out_lane = conn.outgoing[0]
    route = [in_lane.id, conn.id, out_lane]
    route_xy = b.net.route_xy(route)
    path = Path(route_xy)
    v_max = float(rng.uniform(9.0, 12.0))
    v0 = v_max * float(rng.uniform(0.6, 0.9))
    junction_s = Path(in_lane.centerline).length
    s0 = max(5.0, junction_s - v0 * float(rng.uniform(5.0, 7.5)) - 10.0)
    stops = []
    if scenario == "resume_from_stop":
        # Stop line at arc length 7.5 of the approach road = junction_s - 7.5 on the inward lane; the ego's front
        # bumper stops at it.
        stops = [(junction_s - 7.5 - ego_driver.EGO_FRONT, float(rng.uniform(1.5, 3.0)))]
        s0 = max(5.0, junction_s - 7.5 - v0 * float(rng.uniform(3.5, 5.0)) - 8.0)
    ego = ego_driver.lane_following(route_xy, s0, v0, v_max, stops)
    x, y, _ = path.at(s0)
    b.occupied.append((np.array([x, y]), 8.0))
    # Cross traffic through the junction from every other arm, and pedestrians on some crosswalks.
    for road_id, _ in j.arms[1:]:
        road = b.net.roads[road_id]
        for _ in range(int(rng.integers(1, 3))):
            lane = b.net.lane(road_id, -1, int(rng.integers(road.lanes_bwd)))
            r = b.route_from(lane.id)
            b.add_driver(
                r, float(rng.uniform(5, max(6.0, Path(lane.centerline).length - 15))), float(rng.uniform(7, 11))
            )
    for cw in b.net.crosswalks:
        if rng.random() < 0.5:
            path_xy = cw.walk_path if rng.random() < 0.5 else cw.walk_path[::-1]
            b.add_walker(path_xy, float(rng.uniform(0, cfg.scene_seconds * 0.7)), crosswalk=cw.id)
    b.populate_road(approach.id, in_lane.id, (junction_s - 40, junction_s + 5))
    tags = [scenario] + (["turning"] if turn != "straight" else [])
    return b.finish(scenario, tags, ego, route)


def _three_point_turn_scene(b: _Builder, scenario: str) -> ScenePlan:
    rng, cfg = b.rng, b.cfg
    length = float(rng.uniform(110, 150))
    rid = b.corridor(length, False, 1, 1, dead_end=True)
    b.net.finalize()
    road = b.net.roads[rid]
    fwd, bwd = b.net.lane(rid, +1), b.net.lane(rid, -1)
    turn_s = Path(fwd.centerline).length - 16.0
    approach = float(np.clip((cfg.scene_seconds - 13.0) * 5.0, 8.0, 30.0))
    s0 = turn_s - approach
    v0 = float(min(6.0, approach / 4.0))
    ego = ego_driver.three_point_turn(fwd.centerline, turn_s, bwd.centerline, road.lane_width, s0, v0, 7.0)
    x, y, _ = Path(fwd.centerline).at(s0)
    b.occupied.append((np.array([x, y]), 8.0))
    tx, ty, _ = Path(fwd.centerline).at(turn_s)
    b.occupied.append((np.array([tx, ty]), 30.0))  # nothing parks in the turning area
    tc = cfg.traffic
    for _ in range(tc.parked_vehicles):
        side = int(rng.choice([-1, 1]))
        s = float(rng.uniform(5, max(6.0, turn_s - approach - 15)))
        edge = road.left_edge_offset if side > 0 else road.right_edge_offset
        cl = road.sub(s - 1.0, s + 1.0)
        p = offset(cl, edge - side * road.shoulder / 2)[len(cl) // 2]
        yaw = math.atan2(cl[-1, 1] - cl[0, 1], cl[-1, 0] - cl[0, 0]) + (math.pi if side > 0 else 0.0)
        b.add_static(float(p[0]), float(p[1]), yaw, "parked", "vehicle.car")
    for _ in range(tc.pedestrians):
        side = int(rng.choice([-1, 1]))
        edge = road.left_edge_offset if side > 0 else road.right_edge_offset
        line = offset(road.cl, edge + side * WALKWAY_WIDTH * 0.5)
        b.add_walker(line if rng.random() < 0.5 else line[::-1], 0.0, s=float(rng.uniform(0, length * 0.9)))
    return b.finish(scenario, [scenario, "reverse"], ego, [fwd.id, bwd.id])


_BUILDERS = {
    "cruise": lambda b: _corridor_scene(b, "cruise"),
    "follow": lambda b: _corridor_scene(b, "follow"),
    "ped_crossing": lambda b: _corridor_scene(b, "ped_crossing"),
    "overtake": lambda b: _corridor_scene(b, "overtake"),
    "turn_left": lambda b: _junction_scene(b, "turn_left"),
    "turn_right": lambda b: _junction_scene(b, "turn_right"),
    "resume_from_stop": lambda b: _junction_scene(b, "resume_from_stop"),
    "three_point_turn": lambda b: _three_point_turn_scene(b, "three_point_turn"),
}
