"""The expert ego does what each long-tail scenario says (from the simulated ego poses that are written)."""

from __future__ import annotations

import math

import numpy as np


def _keyframe_poses(scene) -> np.ndarray:
    return np.array([scene.ego_pose(k) for k in range(scene.num_keyframes)])


def test_three_point_turn_reverses_and_turns_around(synth_longtail):
    scene = synth_longtail["three_point_turn"]
    rec = scene.record
    poses = _keyframe_poses(scene)
    # Reversing: displacement between keyframes points against the heading.
    d = np.diff(poses[:, :2], axis=0)
    along = d[:, 0] * np.cos(poses[:-1, 2]) + d[:, 1] * np.sin(poses[:-1, 2])
    assert along.min() < -0.3
    assert rec.ego[:, 3].min() < -0.5  # negative signed speed in the record / CAN bus
    # Turned around: final heading ~ opposite of the initial one, and it drives away forwards.
    dyaw = (poses[-1, 2] - poses[0, 2] + math.pi) % (2 * math.pi) - math.pi
    assert abs(abs(dyaw) - math.pi) < 0.3
    assert along[-3:].min() > 0.3
    assert "dead_end" in scene.tags and any(r.dead_end for r in scene.plan.net.roads)


def test_resume_from_stop_stops_at_least_one_second_then_moves(synth_longtail):
    scene = synth_longtail["resume_from_stop"]
    v = scene.record.ego[:, 3]
    dt = scene.record.times[1] - scene.record.times[0]
    stopped = np.abs(v) < 0.1
    runs, k = [], 0
    while k < len(v):
        if stopped[k]:
            j = k
            while j < len(v) and stopped[j]:
                j += 1
            runs.append((k, j))
            k = j
        else:
            k += 1
    long_stops = [(a, b) for a, b in runs if (b - a) * dt >= 1.0 and a > 0 and b < len(v)]
    assert long_stops, "no full stop of >= 1 s inside the scene"
    a, b = long_stops[0]
    assert v[a - 1] > 0 and v[b:].max() > 3.0  # it arrived moving and drove on afterwards
    assert any(sl.kind == "STOP_SIGN" for sl in scene.plan.net.stop_lines)


def test_overtake_uses_the_oncoming_lane(synth_longtail):
    scene = synth_longtail["overtake"]
    net = scene.plan.net
    own = net.lanes[scene.plan.ego_route[0]]
    road = net.roads[own.road]
    from dima_core.data.synth.geometry import Path

    ref = Path(road.cl)
    poses = scene.record.ego[:, :2]
    _, lat = ref.project(poses)  # left of the road's reference line = oncoming side for a forward lane
    assert lat[0] < -0.25 * road.lane_width  # starts in its own lane (centre at -lane_width / 2)
    assert lat.max() > 0.5 * road.lane_width  # crossed the road divider into the oncoming lane
    stopped = [a for a in scene.plan.actors if a.static_kind == "stopped"]
    assert stopped
    # It passed the stopped vehicle: the ego ends ahead of it along the road.
    s_obs, _ = ref.project(np.array([stopped[0].static_pose[:2]]))
    s_ego, _ = ref.project(poses[-1:])
    assert s_ego[0] > s_obs[0]
    assert lat[-1] < lat.max()  # and is back towards its own lane at the end (or on its way)


def test_no_ego_collisions(synth_longtail):
    from shapely.geometry import Polygon

    from dima_core.data.geometry import box_corners_2d

    for scene in synth_longtail.values():
        rec = scene.record
        for k in range(0, len(rec.times), 5):
            x, y, yaw = rec.ego[k, :3]
            ego = Polygon(box_corners_2d(x + 0.5 * math.cos(yaw), y + 0.5 * math.sin(yaw), yaw, 4.084, 1.85))
            for i, actor in enumerate(scene.plan.actors):
                if rec.present[i, k]:
                    ax, ay, ayaw, _ = rec.agents[i, k]
                    other = Polygon(box_corners_2d(ax, ay, ayaw, actor.length, actor.width))
                    assert not ego.intersects(other), f"{scene.scenario}: ego hits {actor.category} at step {k}"
