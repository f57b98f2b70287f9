"""dima_ros.converters.markers on real visualization_msgs messages, without DDS: what the planner and the simulator
draw (namespaces, frames, sizes, points) and the shape checks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ros_helpers.testing import require_ros


@pytest.fixture(scope="module", autouse=True)
def _ros_available() -> None:
    require_ros()


def _yaw(marker) -> float:
    return 2 * math.atan2(marker.pose.orientation.z, marker.pose.orientation.w)


def test_planner_markers() -> None:
    from std_msgs.msg import Header
    from visualization_msgs.msg import Marker

    from dima_core.constants import DETECTION_CLASSES
    from dima_core.runtime.postprocess import AgentDetection, MapElement
    from dima_ros.converters.markers import planner_markers
    from dima_ros.converters.stamps import ns_to_stamp

    header = Header(stamp=ns_to_stamp(5_000_000_001), frame_id="base_link")
    selected = np.array([[1.0, 0.0], [2.0, 0.5]])
    agents = [
        AgentDetection((10.0, 2.0, 0.9, 1.9, 4.5, 1.7, 0.3), 0, 0.8),
        AgentDetection((5.0, -1.0, 0.8, 0.0, 0.0, 0.0, 0.0), 99, 0.6),
    ]
    lines = [MapElement(np.array([[0.0, 3.0], [20.0, 3.0]]), 1, 0.9)]
    out = planner_markers(header, selected, agents, lines).markers
    assert [m.ns for m in out] == ["", "plan", "agents", "agents", "map"]
    assert out[0].action == Marker.DELETEALL
    assert all(m.header.frame_id == "base_link" and m.header.stamp.nanosec == 1 for m in out)
    plan = out[1]
    assert plan.type == Marker.LINE_STRIP and plan.scale.x == pytest.approx(0.3)
    assert [(p.x, p.y, p.z) for p in plan.points] == [(0.0, 0.0, 0.0), (1.0, 0.0, 0.0), (2.0, 0.5, 0.0)]
    car = out[2]
    assert car.type == Marker.CUBE and (car.id, car.text) == (0, DETECTION_CLASSES[0])
    assert (car.pose.position.x, car.pose.position.y, car.pose.position.z) == (10.0, 2.0, 0.9)
    assert (car.scale.x, car.scale.y, car.scale.z) == pytest.approx((4.5, 1.9, 1.7))  # length along the heading
    assert _yaw(car) == pytest.approx(0.3)
    degenerate = out[3]
    assert degenerate.text == "99" and (degenerate.scale.x, degenerate.scale.y, degenerate.scale.z) == (0.1, 0.1, 0.1)
    assert [(p.x, p.y) for p in out[4].points] == [(0.0, 3.0), (20.0, 3.0)]


def test_scene_markers() -> None:
    from visualization_msgs.msg import Marker

    from dima_core.constants import EGO_FOOTPRINT_FORWARD_OFFSET_M
    from dima_ros.converters.markers import MarkerScene, scene_markers
    from dima_ros.converters.stamps import ns_to_stamp

    scene = MarkerScene(
        ego_pose=(100.0, 50.0, math.pi / 2),
        ego_size=(4.8, 1.9),
        agents=[
            (7, 110.0, 50.0, 0.0, 4.5, 1.8, "vehicle.car"),
            (9, 105.0, 52.0, 1.0, 0.6, 0.6, "human.pedestrian.adult"),
        ],
        route=np.array([[100.0, 0.0], [100.0, 200.0]]),
        driven=np.array([[100.0, 49.0]]),
        plan=np.array([[100.0, 51.0], [100.0, 52.0]]),
    )
    out = scene_markers(scene, ns_to_stamp(3_000_000_000)).markers
    assert [m.ns for m in out] == ["", "ego", "agents", "agents", "route", "plan"]  # driven: one point, left out
    assert out[0].action == Marker.DELETEALL
    assert all(m.header.frame_id == "map" and m.header.stamp.sec == 3 for m in out)
    ego = out[1]
    assert (ego.pose.position.x, ego.pose.position.y) == pytest.approx((100.0, 50.0 + EGO_FOOTPRINT_FORWARD_OFFSET_M))
    assert (ego.scale.x, ego.scale.y, ego.scale.z, ego.pose.position.z) == pytest.approx((4.8, 1.9, 1.6, 0.8))
    car, walker = out[2], out[3]
    assert (car.id, car.text, car.scale.z, car.pose.position.z) == (7, "vehicle.car", 1.5, 0.75)
    assert (walker.id, walker.scale.z) == (9, 1.8) and walker.color.r != car.color.r  # humans: taller, other colour
    assert [(p.x, p.y, p.z) for p in out[5].points] == [(100.0, 50.0, 0.05), (100.0, 51.0, 0.05), (100.0, 52.0, 0.05)]
    bare = MarkerScene((0.0, 0.0, 0.0), (4.0, 2.0), [], np.zeros((0, 2)), np.zeros((0, 2)), None)
    assert [m.ns for m in scene_markers(bare, ns_to_stamp(0)).markers] == ["", "ego"]


def test_line_marker_refuses_wrong_shapes() -> None:
    from dima_ros.converters.markers import PLAN_RGBA, line_marker

    with pytest.raises(ValueError, match=r"\(P, 2\) points, got shape \[3, 3\]"):
        line_marker("plan", 0, np.zeros((3, 3)), 0.0, 0.3, PLAN_RGBA)
