"""The expert ego driver's plans: lane following (with stop signs), overtaking a stopped vehicle through the
oncoming lane, and a three-point turn at a dead end. Speed control is the IDM of :mod:`traffic`.

The ego reference point is the nuScenes ``ego_pose`` origin (rear axle); its box (EGO_LENGTH_M x EGO_WIDTH_M) is
centred EGO_FOOTPRINT_FORWARD_OFFSET_M ahead of it, as the planning metrics assume.
"""

from __future__ import annotations

import math

import numpy as np

from dima_core.constants import EGO_FOOTPRINT_FORWARD_OFFSET_M, EGO_LENGTH_M, EGO_WIDTH_M
from dima_core.data.synth.geometry import Path, arc_points, offset, resample
from dima_core.data.synth.traffic import Driver, IDMParams, Segment, Simulation, StopPoint

EGO_FRONT = EGO_FOOTPRINT_FORWARD_OFFSET_M + EGO_LENGTH_M / 2.0
TURN_RADIUS = 5.0  # m, rear-axle turning radius used in the three-point turn


def _ego(segments: list[Segment], s0: float, v0: float) -> Driver:
    return Driver(
        segments=segments,
        length=EGO_LENGTH_M,
        width=EGO_WIDTH_M,
        front=EGO_FRONT,
        idm=IDMParams(a_max=1.8, b_comf=2.5, headway=1.5, s0=2.5),
        s=s0,
        v=v0,
    )


def lane_following(
    route_xy: np.ndarray, s0: float, v0: float, v_max: float, stops: list[tuple[float, float]] = ()
) -> Driver:
    """Follow ``route_xy`` (N, 2) from arc length ``s0``; ``stops`` = [(s, dwell seconds)] full stops (stop signs)."""
    path = Path(route_xy)
    d = _ego([Segment(path, v_max, stop_at_end=True)], s0, v0)
    d.stops = [StopPoint(0, s, dwell) for s, dwell in stops]
    return d


def overtake(
    route_xy: np.ndarray, s0: float, v0: float, v_max: float, obstacle_s: float, obstacle_len: float, lane_width: float
) -> Driver:
    """Pass a stopped vehicle centred at arc length ``obstacle_s`` of ``route_xy`` through the oncoming lane.

    The path shifts one lane width to the left with smooth ramps; a gate before the first ramp holds the ego until
    no oncoming vehicle would meet it inside the borrowed lane.
    """
    pts = resample(route_xy, 0.5)
    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
    ramp = 16.0
    s1 = obstacle_s - obstacle_len / 2 - EGO_FRONT - 4.0 - ramp  # start leaving the lane
    s2 = obstacle_s + obstacle_len / 2 + 3.0  # rear bumper clear of the obstacle: start returning
    up = np.clip((s - s1) / ramp, 0.0, 1.0)
    down = np.clip((s - s2) / ramp, 0.0, 1.0)
    smooth = lambda u: u * u * (3 - 2 * u)  # noqa: E731 - C1 smoothstep
    lateral = lane_width * (smooth(up) - smooth(down))
    path_xy = offset(pts, lateral)
    d = _ego([Segment(Path(path_xy), v_max, stop_at_end=True)], s0, v0)
    detour_end = s2 + ramp
    d.gate_s = s1
    lane_path = Path(pts)

    def oncoming_clear(sim: Simulation, me: Driver) -> bool:
        for a in sim.actors:
            if a.driver is None or not a.visible_now(sim.t):
                continue
            x, y, yaw, v = a.state()
            s_o, lat = lane_path.project(np.array([[x, y]]))
            s_o, lat = float(s_o[0]), float(lat[0])
            if not (0.3 * lane_width < lat < 1.8 * lane_width) or s_o < me.s - 5.0:
                continue  # not in the oncoming lane, or already behind us
            t_idx = lane_path.index(s_o)
            heading_along = math.cos(yaw - lane_path.tangent[t_idx])
            if heading_along > 0:  # same direction as us in that lane: not oncoming
                continue
            # Time for us to get back into our lane (accelerating from the current speed), and where the oncoming
            # vehicle will be by then: it must still be beyond the end of the borrowed stretch.
            t_clear = _time_to_cover(detour_end - me.s, me.v, me.idm.a_max, v_max)
            if s_o - max(v, 0.0) * t_clear < detour_end + 8.0:
                return False
        return True

    d.gate = oncoming_clear
    return d


def _time_to_cover(dist: float, v0: float, acc: float, v_max: float) -> float:
    """Seconds to drive ``dist`` m starting at ``v0`` with constant ``acc`` up to ``v_max``."""
    if dist <= 0:
        return 0.0
    t_acc = max(v_max - v0, 0.0) / acc
    d_acc = v0 * t_acc + 0.5 * acc * t_acc**2
    if d_acc >= dist:
        return (-v0 + math.sqrt(v0 * v0 + 2 * acc * dist)) / acc
    return t_acc + (dist - d_acc) / v_max


def three_point_turn(
    approach_xy: np.ndarray, turn_s: float, return_xy: np.ndarray, lane_width: float, s0: float, v0: float, v_max: float
) -> Driver:
    """Drive ``approach_xy`` to ``turn_s``, stop, then forward-left arc, reverse-right arc, forward-left arc onto
    ``return_xy`` (the opposite lane, in its travel direction) and drive away.

    With equal forward arcs of angle t1 and a reverse arc of pi - 2 t1 at radius R, the lateral displacement is
    R (2 - 4 cos t1); choosing it equal to the lane spacing lands the ego on the opposite lane's centre.
    """
    R = TURN_RADIUS
    t1 = math.acos(max(-1.0, min(1.0, (2.0 - lane_width / R) / 4.0)))
    t2 = math.pi - 2.0 * t1
    approach = Path(approach_xy)
    x, y, yaw = approach.at(turn_s)
    lead_in = approach.xy[approach.s <= turn_s]
    lead_in = np.concatenate([lead_in, [[x, y]]])
    arc1 = arc_points(x, y, yaw, 1.0 / R, R * t1, spacing=0.25)
    x, y, yaw = arc1[-1]
    arc2 = arc_points(x, y, yaw, -1.0 / R, -R * t2, spacing=0.25)
    x, y, yaw = arc2[-1]
    arc3 = arc_points(x, y, yaw, 1.0 / R, R * t1, spacing=0.25)
    ret = Path(return_xy)
    s_join, _ = ret.project(arc3[-1:, :2])
    tail = ret.xy[ret.s > float(s_join[0]) + 1.5]
    leave = np.concatenate([arc3[:, :2], tail])
    slow = min(v_max, 2.5)
    segments = [
        Segment(Path(lead_in), v_max, stop_at_end=True, dwell=0.6),
        Segment(Path(arc1[:, :2], spacing=0.25), slow, stop_at_end=True, dwell=0.5),
        Segment(Path(arc2[:, :2], reverse=True, spacing=0.25), 2.0, stop_at_end=True, dwell=0.5),
        Segment(Path(leave), v_max, stop_at_end=True),
    ]
    # Curvature limit: the arcs are driven slowly anyway; keep the lateral-acceleration cap from slowing them more.
    return _ego(segments, s0, v0)
