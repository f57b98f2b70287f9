"""Closed-loop episode metrics (dima_core.eval.closed_loop) on hand-built EpisodeLogs whose values are known by
construction.

The world: a straight road along +x, 7 m wide (x in [-60, 300], y in [-3.5, 3.5]) with a right lane (y < 0, travel
+x) and a left lane (y > 0, travel -x); the route runs along the right lane's centreline (y = -1.75). Logs are at
10 Hz. The ego box (EGO_LENGTH_M x EGO_WIDTH_M) is centred EGO_FOOTPRINT_FORWARD_OFFSET_M ahead of the logged
(rear-axle) position, so its front bumper is FRONT m ahead of it.
"""

from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest
from shapely.geometry import LineString, Point, Polygon

from dima_core.constants import EGO_FOOTPRINT_FORWARD_OFFSET_M, EGO_LENGTH_M, EGO_WIDTH_M
from dima_core.data.geometry import box_corners_2d
from dima_core.eval import closed_loop as cl
from dima_core.sim.episode_log import EpisodeLog, LaneGeometry

DT = 0.1
LANE_Y = -1.75
FRONT = EGO_FOOTPRINT_FORWARD_OFFSET_M + EGO_LENGTH_M / 2  # rear axle -> front bumper
REAR = EGO_LENGTH_M / 2 - EGO_FOOTPRINT_FORWARD_OFFSET_M  # rear axle -> rear bumper
CAR = (4.5, 1.8)  # length, width of the other cars


# ----------------------------------------------------------------------------------------------------- builders


@pytest.fixture(scope="module")
def world() -> dict:
    right = LaneGeometry(
        "right",
        np.array([[-60.0, LANE_Y], [300.0, LANE_Y]]),
        np.array([[-60.0, -3.5], [300.0, -3.5], [300.0, 0.0], [-60.0, 0.0]]),
    )
    left = LaneGeometry(
        "left",
        np.array([[300.0, 1.75], [-60.0, 1.75]]),
        np.array([[-60.0, 0.0], [300.0, 0.0], [300.0, 3.5], [-60.0, 3.5]]),
    )
    xs = np.arange(-50.0, 290.01, 0.5)
    return {
        "drivable_area": Polygon([(-60, -3.5), (300, -3.5), (300, 3.5), (-60, 3.5)]),
        "lanes": [right, left],
        "route": np.stack([xs, np.full_like(xs, LANE_Y)], axis=1),
    }


def ego_rows(xy: np.ndarray, speed=None, yaw=None, accel=None) -> np.ndarray:
    """(K, 6) ego rows from a rear-axle path sampled every DT; yaw and speed from the path unless given."""
    xy = np.asarray(xy, float)
    d = np.gradient(xy, axis=0)
    yaw = np.arctan2(d[:, 1], d[:, 0]) if yaw is None else np.broadcast_to(yaw, len(xy)).astype(float)
    speed = np.linalg.norm(d, axis=1) / DT if speed is None else np.asarray(speed, float)
    accel = np.gradient(speed, DT) if accel is None else np.asarray(accel, float)
    return np.stack([xy[:, 0], xy[:, 1], yaw, speed, accel, np.zeros(len(xy))], axis=1)


def longitudinal(v0: float, accels: np.ndarray, x0: float = 0.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integrate commanded accelerations (K,) from speed v0 (speed never below 0): x, v, effective accel (K,)."""
    k = len(accels)
    x, v, a = np.zeros(k), np.zeros(k), np.zeros(k)
    x[0], v[0] = x0, v0
    for i in range(k - 1):
        v[i + 1] = max(0.0, v[i] + accels[i] * DT)
        a[i] = (v[i + 1] - v[i]) / DT
        x[i + 1] = x[i] + 0.5 * (v[i] + v[i + 1]) * DT
    a[-1] = a[-2]
    return x, v, a


def straight_ego(x: np.ndarray, v: np.ndarray, a: np.ndarray, y: float = LANE_Y) -> np.ndarray:
    return ego_rows(np.stack([x, np.full_like(x, y)], axis=1), speed=v, yaw=0.0, accel=a)


def cruise(seconds: float, v: float, x0: float = 0.0, y: float = LANE_Y) -> np.ndarray:
    k = int(round(seconds / DT)) + 1
    x = x0 + v * DT * np.arange(k)
    return straight_ego(x, np.full(k, v), np.zeros(k), y)


def agent(k: int, x, y, yaw=0.0, speed=0.0, category="vehicle.car", static=False, size=CAR, present=None) -> dict:
    """One agent's arrays: centre x, y (scalars or (K,)), yaw, signed speed."""
    state = np.stack([np.broadcast_to(np.asarray(v, float), (k,)) for v in (x, y, yaw, speed)], axis=1)
    return {
        "state": state,
        "category": category,
        "static": static,
        "size": size,
        "present": np.ones(k, bool) if present is None else present,
    }


def moving_agent(k: int, x0: float, y: float, speed: float, yaw: float = 0.0, **kw) -> dict:
    t = DT * np.arange(k)
    return agent(k, x0 + speed * math.cos(yaw) * t, y + speed * math.sin(yaw) * t, yaw, speed, **kw)


def make_log(world: dict, ego: np.ndarray, agents=(), expert_progress: float = 0.0, **kw) -> EpisodeLog:
    k = len(ego)
    a = len(agents)
    fields = dict(
        scenario="cruise",
        seed=0,
        policy="test",
        dt=DT,
        times=DT * np.arange(k),
        ego=ego,
        ego_length=EGO_LENGTH_M,
        ego_width=EGO_WIDTH_M,
        ego_centre_offset=EGO_FOOTPRINT_FORWARD_OFFSET_M,
        agent_ids=np.arange(a, dtype=int) + 100,
        agent_categories=[g["category"] for g in agents],
        agent_sizes=np.array([g["size"] for g in agents], float).reshape(a, 2),
        agent_static=np.array([g["static"] for g in agents], bool),
        agents=np.stack([g["state"] for g in agents]) if a else np.zeros((0, k, 4)),
        agent_present=np.stack([g["present"] for g in agents]) if a else np.zeros((0, k), bool),
        drivable_area=world["drivable_area"],
        lanes=world["lanes"],
        route=world["route"],
        expert_progress=expert_progress,
    )
    fields.update(kw)
    return EpisodeLog(**fields)


# ----------------------------------------------------------------------------------------------------- geometry


def test_box_corners_match_synth_geometry():
    rng = np.random.default_rng(0)
    c = rng.uniform(-10, 10, (20, 2))
    yaw = rng.uniform(-np.pi, np.pi, 20)
    got = cl.box_corners(c, yaw, 4.0, 1.5)
    want = np.stack([box_corners_2d(c[i, 0], c[i, 1], yaw[i], 4.0, 1.5) for i in range(20)])
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_boxes_overlap_agrees_with_shapely():
    rng = np.random.default_rng(1)
    n = 3000
    c1, c2 = rng.uniform(-3, 3, (n, 2)), rng.uniform(-3, 3, (n, 2))
    y1, y2 = rng.uniform(-np.pi, np.pi, n), rng.uniform(-np.pi, np.pi, n)
    s1, s2 = rng.uniform(0.3, 3.0, (n, 2)), rng.uniform(0.3, 3.0, (n, 2))
    got = cl.boxes_overlap(c1, y1, s1[:, 0], s1[:, 1], c2, y2, s2[:, 0], s2[:, 1])
    checked = 0
    for i in range(n):
        p1 = Polygon(box_corners_2d(c1[i, 0], c1[i, 1], y1[i], 2 * s1[i, 0], 2 * s1[i, 1]))
        p2 = Polygon(box_corners_2d(c2[i, 0], c2[i, 1], y2[i], 2 * s2[i, 0], 2 * s2[i, 1]))
        area = p1.intersection(p2).area
        if 0 < area < 1e-6 or (area == 0 and p1.distance(p2) < 1e-6):
            continue  # grazing contact: either answer is right within float precision
        assert got[i] == (area > 0), i
        checked += 1
    assert checked > 0.95 * n and 0.2 < got.mean() < 0.8  # both outcomes well represented


# ----------------------------------------------------------------------------------------------------- episodes


def test_clean_drive_scores_one(world):
    ego = cruise(20.0, 10.0)
    k = len(ego)
    agents = [
        moving_agent(k, 40.0, LANE_Y, 10.0),  # lead car, same speed: constant 35 m gap
        moving_agent(k, 250.0, 1.75, 10.0, yaw=math.pi),  # oncoming traffic passes beside the ego
    ]
    m = cl.score_episode(make_log(world, ego, agents, expert_progress=200.0))
    assert (m.nc, m.dac, m.ddc, m.ep, m.ttc, m.comfort) == (1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
    assert m.score == pytest.approx(1.0) and m.success
    assert m.num_collisions == 0 and m.max_outside_drivable_m == 0.0 and m.max_wrong_way_m == 0.0
    assert m.progress_m == pytest.approx(200.0, abs=1e-6) and m.progress_ratio == pytest.approx(1.0)
    assert m.route_completion == pytest.approx(200.0 / 290.0, rel=1e-6)  # route runs x = 0 .. 290 ahead of the ego
    assert not m.stuck and not m.timeout and m.comfort_violations == []
    json.dumps(m.to_dict())


def test_at_fault_front_collision_with_stopped_car(world):
    car_x = 60.0
    ego = cruise(6.0, 10.0)
    m = cl.score_episode(
        make_log(world, ego, [agent(len(ego), car_x, LANE_Y)], expert_progress=60.0, ended_early="collision")
    )
    # Contact when the front bumper passes the car's rear: 10 t + FRONT > car_x - 2.25.
    first_step = math.floor((car_x - CAR[0] / 2 - FRONT) / 10.0 / DT) + 1
    assert m.num_collisions == 1 and m.num_at_fault_collisions == 1
    rec = m.collisions[0]
    assert (rec.step, rec.kind, rec.agent_type, rec.at_fault, rec.agent_id) == (
        first_step,
        "stopped_track",
        "vehicle",
        True,
        100,
    )
    assert m.nc == 0.0 and m.score == 0.0 and not m.success and m.at_fault_by_type["vehicle"] == 1


def test_active_front_collision_with_slower_car(world):
    ego = cruise(8.0, 10.0)
    m = cl.score_episode(make_log(world, ego, [moving_agent(len(ego), 30.0, LANE_Y, 4.0)], expert_progress=60.0))
    assert [(c.kind, c.at_fault) for c in m.collisions] == [("active_front", True)]
    assert m.nc == 0.0


def test_rear_end_into_stopped_ego_is_not_at_fault(world):
    k = 101
    ego = ego_rows(np.tile([50.0, LANE_Y], (k, 1)), speed=np.zeros(k), yaw=0.0)  # waiting, like the expert
    follower = moving_agent(k, 20.0, LANE_Y, 8.0)
    m = cl.score_episode(make_log(world, ego, [follower], expert_progress=0.0))
    ego_rear = 50.0 + EGO_FOOTPRINT_FORWARD_OFFSET_M - EGO_LENGTH_M / 2
    first_step = math.floor((ego_rear - CAR[0] / 2 - 20.0) / 8.0 / DT) + 1
    assert [(c.kind, c.at_fault, c.step) for c in m.collisions] == [("stopped_ego", False, first_step)]
    assert m.nc == 1.0 and m.ep == 1.0 and m.ttc == 1.0  # a stopped ego has no TTC to keep
    assert m.score == pytest.approx(1.0) and m.success


def test_rear_end_into_moving_ego_is_not_at_fault(world):
    ego = cruise(6.0, 3.0, x0=50.0)
    follower = moving_agent(len(ego), 25.0, LANE_Y, 10.0)
    m = cl.score_episode(make_log(world, ego, [follower], expert_progress=18.0))
    assert [(c.kind, c.at_fault) for c in m.collisions] == [("active_rear", False)]
    assert m.nc == 1.0 and m.ttc == 1.0  # the follower is behind: not the ego's TTC


def test_lateral_contact_fault_depends_on_lane_keeping(world):
    k = 41
    ego_y = {"in_lane": LANE_Y, "straddling": -0.3}
    for case, y in ego_y.items():
        ego = cruise(4.0, 10.0, y=y)
        centre_x = ego[:, 0] + EGO_FOOTPRINT_FORWARD_OFFSET_M
        drifting = agent(k, centre_x, np.linspace(1.75, -1.0, k), 0.0, 10.0)  # sideswipes from the left
        m = cl.score_episode(make_log(world, ego, [drifting], expert_progress=40.0))
        assert [c.kind for c in m.collisions] == ["active_lateral"], case
        assert m.collisions[0].at_fault == (case == "straddling"), case


def test_parked_car_is_a_vehicle_collision(world):
    """nuPlan: a parked or stopped car is a vehicle, not a static object: hitting it zeroes NC."""
    ego = cruise(6.0, 10.0)
    parked = agent(len(ego), 60.0, LANE_Y, category="vehicle.car", static=True)
    m = cl.score_episode(make_log(world, ego, [parked], expert_progress=60.0))
    assert [(c.agent_type, c.at_fault) for c in m.collisions] == [("vehicle", True)]
    assert m.nc == 0.0 and m.score == 0.0


def test_lost_counts_as_timeout(world):
    ego = cruise(6.0, 10.0)
    log = make_log(world, ego, expert_progress=60.0)
    log.ended_early = "lost: 15.2 m from the route"
    m = cl.score_episode(log)
    assert m.timeout and not m.success


def test_static_object_collision_halves_nc(world):
    ego = cruise(6.0, 10.0)
    barrier = agent(len(ego), 60.0, LANE_Y, category="movable_object.barrier", static=True, size=(0.6, 2.5))
    m = cl.score_episode(make_log(world, ego, [barrier], expert_progress=60.0))
    assert [(c.agent_type, c.at_fault) for c in m.collisions] == [("static", True)]
    assert m.nc == 0.5 and m.at_fault_by_type == {"vehicle": 0, "pedestrian": 0, "cyclist": 0, "static": 1}
    assert m.score == pytest.approx(0.5 * (5 * m.ep + 5 * m.ttc + 2 * m.comfort) / 12.0)
    assert 0.0 < m.score <= 0.5 and not m.success


def test_leaving_drivable_area(world):
    k = 101
    x = 10.0 * DT * np.arange(k)
    u = np.clip((x - 20.0) / 30.0, 0.0, 1.0)
    y = LANE_Y + (-6.0 - LANE_Y) * u * u * (3 - 2 * u)  # smooth drift to y = -6 (road edge at -3.5)
    ego = ego_rows(np.stack([x, y], 1))
    m = cl.score_episode(make_log(world, ego, expert_progress=100.0))
    # Only the road's lower edge (y = -3.5) is crossed, so the excess is how far the lowest corner lies below it;
    # once straight again at y = -6 that is 6 + w/2 - 3.5, and the heading during the drift adds to it.
    centres = ego[:, :2] + EGO_FOOTPRINT_FORWARD_OFFSET_M * np.stack([np.cos(ego[:, 2]), np.sin(ego[:, 2])], 1)
    lowest = np.array(
        [
            box_corners_2d(c[0], c[1], h, EGO_LENGTH_M, EGO_WIDTH_M)[:, 1].min()
            for c, h in zip(centres, ego[:, 2], strict=True)
        ]
    )
    assert m.max_outside_drivable_m == pytest.approx(float(-3.5 - lowest.min()), abs=1e-9)
    assert m.max_outside_drivable_m >= 6.0 + EGO_WIDTH_M / 2 - 3.5 - 1e-9
    assert m.dac == 0.0 and m.score == 0.0 and not m.success
    assert m.frac_steps_outside_drivable == pytest.approx(np.mean(-3.5 - lowest > cl.DRIVABLE_TOLERANCE_M))


@pytest.mark.parametrize("speed, expected_ddc", [(5.0, 0.5), (10.0, 0.0)])
def test_driving_in_oncoming_lane(world, speed, expected_ddc):
    k = int(round(70.0 / speed / DT)) + 1
    x = speed * DT * np.arange(k)

    def ramp(a, b):
        u = np.clip((x - a) / (b - a), 0.0, 1.0)
        return u * u * (3 - 2 * u)

    # Over to the oncoming lane centre (y = +1.75) on x in [10, 25], 10 m there, back on [35, 50].
    y = LANE_Y + 3.5 * (ramp(10.0, 25.0) - ramp(35.0, 50.0))
    m = cl.score_episode(make_log(world, ego_rows(np.stack([x, y], 1)), expert_progress=70.0))
    # The centre is in the oncoming lane for more than 1 s, so the worst 1 s window holds speed x 1 s against it.
    assert m.max_wrong_way_m == pytest.approx(speed * 1.0, abs=0.05)
    assert m.ddc == expected_ddc and m.dac == 1.0
    assert m.score == pytest.approx(expected_ddc * (5 * m.ep + 5 * m.ttc + 2 * m.comfort) / 12.0)


def _three_point_route_log(world, reverse_segments):
    """Route: forward x 0 -> 30, reverse 30 -> 20 (route arc 30 .. 40), forward 20 -> 60 (arc 40 .. 80)."""
    route = np.array([[0.0, LANE_Y], [30.0, LANE_Y], [20.0, LANE_Y], [60.0, LANE_Y]])
    legs = [(0.0, 30.0, 5.0), (30.0, 20.0, -4.0), (20.0, 60.0, 5.0)]
    xs, vs = [], []
    for a, b, v in legs:
        n = int(round(abs(b - a) / abs(v) / DT))
        xs.append(a + v * DT * np.arange(n))
        vs.append(np.full(n, v))
    xs.append([60.0])
    vs.append([0.0])
    x, v = np.concatenate(xs), np.concatenate(vs)
    ego = straight_ego(x, v, np.gradient(v, DT))  # heading +x throughout; signed speed < 0 while reversing
    return make_log(world, ego, expert_progress=80.0, route=route, route_reverse_segments=reverse_segments)


def test_reversing_along_route_reverse_segment_is_not_wrong_way(world):
    m = cl.score_episode(_three_point_route_log(world, [(30.0, 40.0)]))
    assert m.ddc == 1.0 and m.max_wrong_way_m < 0.5  # only the forward legs, never against the lane
    # The route doubles back on itself twice; the ordered projection follows it to the end (arc 80).
    assert m.progress_m == pytest.approx(80.0, abs=0.6) and m.ep == pytest.approx(1.0, abs=0.01)
    # Control: the same reversing without the route saying so is 4 m/s against the lane, 4 m per second.
    m_plain = cl.score_episode(_three_point_route_log(world, []))
    assert m_plain.max_wrong_way_m == pytest.approx(4.0, abs=0.05) and m_plain.ddc == 0.5


def test_looping_route_projection_is_ordered(world):
    # Route out along the right lane x 0 -> 60, U-turn, back along the left lane x 60 -> 0.
    th = np.linspace(-np.pi / 2, np.pi / 2, 13)
    out = np.stack([np.arange(0.0, 60.01, 1.0), np.full(61, LANE_Y)], 1)
    turn = np.stack([60.0 + 1.75 * np.cos(th), 1.75 * np.sin(th)], 1)
    back = np.stack([np.arange(60.0, -0.01, -1.0), np.full(61, 1.75)], 1)
    route = np.concatenate([out, turn[1:-1], back])
    # The ego drives 40 m of the out leg 2.5 m left of it: nearer the return leg than the out leg.
    ego = cruise(4.0, 10.0, y=LANE_Y + 2.5)
    m = cl.score_episode(make_log(world, ego, expert_progress=40.0, route=route))
    assert m.progress_m == pytest.approx(40.0, abs=0.1)
    # A plain nearest-point projection matches both ends onto the return leg, and the ego seems to go backwards.
    naive = LineString(route).project(Point(ego[-1, :2])) - LineString(route).project(Point(ego[0, :2]))
    assert naive == pytest.approx(-40.0, abs=0.1)


def test_no_progress_is_stuck(world):
    k = 201
    ego = ego_rows(np.tile([0.0, LANE_Y], (k, 1)), speed=np.zeros(k), yaw=0.0)
    m = cl.score_episode(make_log(world, ego, expert_progress=200.0))
    assert m.stuck and not m.success and m.ep == pytest.approx(0.0, abs=1e-9)
    assert m.score == pytest.approx((5 * 0.0 + 5 * 1.0 + 2 * 1.0) / 12.0)


def test_waiting_with_waiting_expert_is_full_progress(world):
    k = 201
    ego = ego_rows(np.tile([0.0, LANE_Y], (k, 1)), speed=np.zeros(k), yaw=0.0)
    m = cl.score_episode(make_log(world, ego, expert_progress=0.0))
    assert m.ep == 1.0 and not m.stuck and m.success and m.score == pytest.approx(1.0)
    assert m.progress_ratio is None


def test_stuck_uses_the_expert_progress_curve(world):
    # The expert waits 12 s, then drives 8 s at 10 m/s; the ego does exactly the same.
    k = 201
    t = DT * np.arange(k)
    x = np.maximum(t - 12.0, 0.0) * 10.0
    v = np.where(t > 12.0, 10.0, 0.0)
    ego = straight_ego(x, v, np.gradient(v, DT))
    with_curve = cl.score_episode(make_log(world, ego, expert_progress=80.0, expert_route_progress=x.copy()))
    assert not with_curve.stuck
    # Knowing only the total (80 m in 20 s, 40 m per 10 s), the ego's first 10 s look stuck.
    assert cl.score_episode(make_log(world, ego, expert_progress=80.0)).stuck


def test_timeout_flag(world):
    m = cl.score_episode(make_log(world, cruise(5.0, 10.0), expert_progress=50.0, ended_early="timeout"))
    assert m.timeout and not m.success and m.score == pytest.approx(1.0)


@pytest.mark.parametrize("decel, comfortable", [(8.0, False), (2.0, True)])
def test_comfort_braking(world, decel, comfortable):
    k = 101
    x, v, a = longitudinal(10.0, np.where(np.arange(k) >= 50, -decel, 0.0))
    m = cl.score_episode(make_log(world, straight_ego(x, v, a), expert_progress=float(x[-1])))
    assert (m.comfort == 1.0) == comfortable
    if not comfortable:
        assert "lon_accel" in m.comfort_violations and m.comfort_peaks["lon_accel"] > 7.0
        assert m.score == pytest.approx((5 * m.ep + 5 * m.ttc + 0.0) / 12.0)
    else:
        # The Savitzky-Golay fit overshoots a little at the braking onset and at the stop.
        assert m.comfort_violations == [] and m.comfort_peaks["lon_accel"] == pytest.approx(2.0, abs=0.3)


def test_comfort_yaw_rate_violation(world):
    # A 10 m radius circle at 10 m/s: yaw rate 1 rad/s (> 0.95), lateral acceleration 10 m/s^2 (> 4.89).
    t = DT * np.arange(61)
    xy = np.stack([10.0 * np.sin(t), LANE_Y + 10.0 - 10.0 * np.cos(t)], 1)
    m = cl.score_episode(make_log(world, ego_rows(xy), expert_progress=60.0))
    assert {"yaw_rate", "lat_accel"} <= set(m.comfort_violations) and m.comfort == 0.0
    assert m.comfort_peaks["yaw_rate"] == pytest.approx(1.0, abs=0.02)


def test_ttc_violation_without_collision(world):
    car_x = 60.0
    gap0 = 9.0  # start braking at 6 m/s^2 when the front bumper is 9 m from the car: stops 0.67 m short
    k = 121
    brake_x = car_x - CAR[0] / 2 - FRONT - gap0
    brake_step = int(round(brake_x / 10.0 / DT))
    x, v, a = longitudinal(10.0, np.where(np.arange(k) >= brake_step, -6.0, 0.0))
    ego = straight_ego(x, v, a)
    m = cl.score_episode(make_log(world, ego, [agent(k, car_x, LANE_Y)], expert_progress=float(x[-1])))
    final_gap = car_x - CAR[0] / 2 - (x[-1] + FRONT)
    assert 0.2 < final_gap < 1.0 and m.num_collisions == 0 and m.nc == 1.0
    assert m.ttc == 0.0 and m.num_ttc_violation_steps > 0
    # 10 m/s covers 10 m in the 1 s horizon: the first violation comes once the gap is under 10 m.
    first_k = int(np.argmax(car_x - CAR[0] / 2 - (x + FRONT) < 10.0))
    assert m.first_ttc_violation_time == pytest.approx(first_k * DT, abs=DT + 1e-9)
    assert m.score == pytest.approx((5 * m.ep + 0.0 + 2 * m.comfort) / 12.0)


def test_reference_waives_map_rules_it_also_breaks(world):
    k = 141
    x = 5.0 * DT * np.arange(k)
    u = np.clip((x - 10.0) / 15.0, 0.0, 1.0)
    d = np.clip((x - 35.0) / 15.0, 0.0, 1.0)
    y = LANE_Y + 3.5 * (u * u * (3 - 2 * u) - d * d * (3 - 2 * d))  # an overtake through the oncoming lane
    log = make_log(world, ego_rows(np.stack([x, y], 1)), expert_progress=70.0)
    expert = cl.score_episode(log)  # the expert drove the same overtake
    assert expert.ddc == 0.5
    waived = cl.score_episode(log, reference=expert)
    assert waived.ddc == 1.0 and waived.waived == ["ddc"] and waived.max_wrong_way_m == expert.max_wrong_way_m
    clean_ref = cl.score_episode(make_log(world, cruise(14.0, 5.0), expert_progress=70.0))
    assert cl.score_episode(log, reference=clean_ref).ddc == 0.5


# ----------------------------------------------------------------------------------------------------- validation


def test_validation_errors(world):
    ego = cruise(2.0, 10.0)
    bad = ego.copy()
    bad[5, 1] = np.nan
    with pytest.raises(ValueError, match=r"ego has NaN .*first at step 5"):
        cl.score_episode(make_log(world, bad))
    log = make_log(world, ego, [agent(len(ego), 30.0, LANE_Y)])
    log.agents = log.agents[:, :-1]
    with pytest.raises(ValueError, match=r"agents must have shape \(1, 21, 4\)"):
        cl.score_episode(log)
    with pytest.raises(ValueError, match=r"ego must have shape \(21, 6\)"):
        cl.score_episode(make_log(world, ego[:, :5]))
    with pytest.raises(ValueError, match="expert_route_progress"):
        cl.score_episode(make_log(world, ego, expert_route_progress=np.zeros(3)))
    with pytest.raises(ValueError, match="route"):
        cl.score_episode(make_log(world, ego, route=np.zeros((1, 2))))
    present_nan = make_log(world, ego, [agent(len(ego), 30.0, LANE_Y)])
    present_nan.agents[0, 3, 0] = np.nan
    with pytest.raises(ValueError, match="where the agent is present"):
        cl.score_episode(present_nan)
    # NaN while the agent is absent is fine.
    present = np.ones(len(ego), bool)
    present[:4] = False
    absent_nan = make_log(world, ego, [agent(len(ego), 150.0, LANE_Y, present=present)], expert_progress=20.0)
    absent_nan.agents[0, :4] = np.nan
    assert cl.score_episode(absent_nan).score == pytest.approx(1.0)


# ----------------------------------------------------------------------------------------------------- reports


def test_aggregate_and_table(world):
    def scored(policy, scenario, log_ego, agents=(), expert=None):
        expert = float(log_ego[-1, 0] - log_ego[0, 0]) if expert is None else expert
        return cl.score_episode(
            make_log(world, log_ego, list(agents), expert_progress=expert, policy=policy, scenario=scenario)
        )

    crash = cruise(6.0, 10.0)
    episodes = [
        scored("expert", "follow", cruise(10.0, 10.0)),
        scored("expert", "overtake", cruise(10.0, 10.0)),
        scored("dima", "follow", cruise(10.0, 10.0)),
        scored("dima", "follow", crash, [agent(len(crash), 60.0, LANE_Y)], expert=60.0),
        scored("dima", "overtake", cruise(10.0, 5.0), expert=100.0),  # half the expert's progress
    ]
    agg = cl.aggregate(episodes)
    assert agg["formula"] == cl.SCORE_FORMULA and agg["by"] == "scenario"
    dima = agg["policies"]["dima"]
    assert dima["overall"]["num_episodes"] == 3 and set(dima["groups"]) == {"follow", "overtake"}
    follow = dima["groups"]["follow"]
    assert follow["num_episodes"] == 2 and follow["success_rate"] == 0.5 and follow["at_fault_collision_rate"] == 0.5
    assert follow["score"] == pytest.approx(0.5) and follow["num_at_fault_collisions"] == 1
    slow = dima["groups"]["overtake"]
    assert slow["ep"] == pytest.approx(0.5, abs=1e-6) and slow["success_rate"] == 0.0
    assert slow["progress_ratio"] == pytest.approx(0.5, abs=1e-6)
    assert agg["policies"]["expert"]["overall"]["score"] == pytest.approx(1.0)

    table = cl.format_table(agg, ["expert", "constant_velocity", "dima"])
    lines = table.splitlines()
    assert lines[0].startswith("| policy | scenario | n | score | success | at-fault col. | DAC | progress ratio |")
    rows = [ln.split("|")[1:3] for ln in lines[2:]]
    assert [(p.strip(), g.strip()) for p, g in rows] == [
        ("expert", "follow"),
        ("expert", "overtake"),
        ("expert", "all"),
        ("dima", "follow"),
        ("dima", "overtake"),
        ("dima", "all"),
    ]
    assert "| dima | follow | 2 | 0.500 | 50.0 % | 50.0 % (1) |" in table
    with pytest.raises(ValueError, match="by must be one of"):
        cl.aggregate(episodes, by="weather")


# ----------------------------------------------------------------------------------------------------- speed


def test_scoring_a_20s_episode_with_30_agents_is_fast(world):
    rng = np.random.default_rng(3)
    ego = cruise(20.0, 10.0)
    k = len(ego)
    agents = []
    for i in range(30):
        lane_y, yaw = (LANE_Y, 0.0) if i % 2 else (1.75, math.pi)
        agents.append(moving_agent(k, float(rng.uniform(-40, 250)), lane_y, float(rng.uniform(0, 12)), yaw=yaw))
    agents.append(agent(k, 150.0, 5.0, category="human.pedestrian.adult", size=(0.6, 0.6)))
    log = make_log(world, ego, agents, expert_progress=200.0)
    cl.score_episode(log)  # warm-up (imports, shapely caches)
    t0 = time.perf_counter()
    m = cl.score_episode(log)
    elapsed = time.perf_counter() - t0
    print(f"score_episode: {k} steps, {len(agents)} agents: {elapsed * 1000:.1f} ms")
    assert elapsed < 0.5
    assert m.num_collisions > 0  # the random traffic does run into the ego: the collision path was exercised
