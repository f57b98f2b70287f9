"""RViz ``visualization_msgs/MarkerArray`` builders: the planner's plan and perception (base_link) and the simulator's
scene (map).

Every array starts with a DELETEALL marker, so markers of a previous frame that are absent now (an agent that left,
fewer map elements) disappear instead of lingering. Boxes and lines share one builder each, so both nodes draw with
the same conventions: a box's ``scale.x`` is its length along its heading (nuScenes ``wlh``: width across), every
dimension at least 0.1 m so a degenerate box stays visible.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import Point, Quaternion
from std_msgs.msg import Header
from visualization_msgs.msg import Marker, MarkerArray

from dima_core.bag.topics import MAP_FRAME
from dima_core.constants import DETECTION_CLASSES, EGO_FOOTPRINT_FORWARD_OFFSET_M
from dima_core.data.geometry import yaw_to_quaternion
from dima_core.runtime.postprocess import AgentDetection, MapElement

Rgba = tuple[float, float, float, float]
MIN_SCALE_M = 0.1

# Colours (r, g, b, a) of what the planner draws.
PLAN_RGBA: Rgba = (0.1, 0.9, 0.2, 1.0)
PLANNER_AGENT_RGBA: Rgba = (0.9, 0.5, 0.1, 0.5)
PLANNER_MAP_RGBA: Rgba = (0.3, 0.5, 1.0, 0.8)
# ... and the simulator.
EGO_RGBA: Rgba = (0.1, 0.4, 1.0, 0.9)
SIM_VEHICLE_RGBA: Rgba = (0.9, 0.6, 0.1, 0.8)
SIM_HUMAN_RGBA: Rgba = (1.0, 0.3, 0.6, 0.8)
ROUTE_RGBA: Rgba = (0.6, 0.6, 0.6, 0.6)
DRIVEN_RGBA: Rgba = (0.1, 0.4, 1.0, 1.0)


def _colour(marker: Marker, rgba: Rgba) -> None:
    marker.color.r, marker.color.g, marker.color.b, marker.color.a = (float(v) for v in rgba)


def box_marker(
    ns: str,
    ident: int,
    centre: tuple[float, float, float],
    yaw: float,
    size_lwh: tuple[float, float, float],
    rgba: Rgba,
    text: str = "",
) -> Marker:
    """A CUBE at ``centre`` (x, y, z of the box centre, metres) rotated ``yaw`` about +z, ``size_lwh`` = length
    (along the heading), width, height."""
    box = Marker(ns=ns, id=int(ident), type=Marker.CUBE, action=Marker.ADD)
    box.pose.position = Point(x=float(centre[0]), y=float(centre[1]), z=float(centre[2]))
    qx, qy, qz, qw = yaw_to_quaternion(float(yaw))
    box.pose.orientation = Quaternion(x=qx, y=qy, z=qz, w=qw)
    box.scale.x, box.scale.y, box.scale.z = (max(float(v), MIN_SCALE_M) for v in size_lwh)
    _colour(box, rgba)
    box.text = text
    return box


def line_marker(ns: str, ident: int, xy: np.ndarray, z: float, width: float, rgba: Rgba) -> Marker:
    """A LINE_STRIP through ``xy`` ((P, 2) metres) at height ``z``, ``width`` metres wide.

    Raises:
        ValueError: ``xy`` is not (P, 2).
    """
    points = np.asarray(xy, np.float64)
    if points.ndim != 2 or points.shape[1] != 2:
        raise ValueError(f"a line marker takes (P, 2) points, got shape {list(points.shape)}")
    line = Marker(ns=ns, id=int(ident), type=Marker.LINE_STRIP, action=Marker.ADD)
    line.pose.orientation.w = 1.0
    line.scale.x = float(width)
    _colour(line, rgba)
    line.points = [Point(x=float(px), y=float(py), z=float(z)) for px, py in points]
    return line


def _array(markers: list[Marker], header: Header) -> MarkerArray:
    for marker in markers:
        marker.header = header
    return MarkerArray(markers=markers)


def planner_markers(
    header: Header, selected: np.ndarray, agents: Sequence[AgentDetection], map_elements: Sequence[MapElement]
) -> MarkerArray:
    """DELETEALL, the plan from the ego origin through ``selected`` ((T, 2), base_link), a box per detected agent
    (labelled with its class) and a line per map element, all with ``header`` (the trajectory's)."""
    markers = [
        Marker(action=Marker.DELETEALL),
        line_marker(
            "plan",
            0,
            np.vstack([np.zeros((1, 2)), np.asarray(selected, np.float64).reshape(-1, 2)]),
            0.0,
            0.3,
            PLAN_RGBA,
        ),
    ]
    for i, det in enumerate(agents):
        x, y, z, w, length, h, yaw = det.box
        label = DETECTION_CLASSES[det.label] if det.label < len(DETECTION_CLASSES) else str(det.label)
        markers.append(box_marker("agents", i, (x, y, z), yaw, (length, w, h), PLANNER_AGENT_RGBA, label))
    for i, element in enumerate(map_elements):
        markers.append(line_marker("map", i, element.points, 0.0, 0.15, PLANNER_MAP_RGBA))
    return _array(markers, header)


@dataclass
class MarkerScene:
    """What the simulator's markers show, in the map frame."""

    ego_pose: tuple[float, float, float]  # rear-axle x, y (metres), yaw (rad)
    ego_size: tuple[float, float]  # footprint length, width (metres)
    agents: list[tuple[int, float, float, float, float, float, str]]  # id, centre x, y, yaw, length, width, category
    route: np.ndarray  # (R, 2) route centreline
    driven: np.ndarray  # (D, 2) rear-axle positions so far
    plan: np.ndarray | None  # (T, 2) the plan being tracked, or None before the first


def scene_markers(scene: MarkerScene, stamp: object) -> MarkerArray:
    """DELETEALL, then the ego box (its footprint centre ahead of the rear axle), agent boxes (humans taller, another
    colour), the route, the driven path and the plan (from the ego through its waypoints), in ``map``; lines with
    fewer than two points are left out."""
    x, y, yaw = scene.ego_pose
    cx, cy = x + EGO_FOOTPRINT_FORWARD_OFFSET_M * math.cos(yaw), y + EGO_FOOTPRINT_FORWARD_OFFSET_M * math.sin(yaw)
    markers = [
        Marker(action=Marker.DELETEALL),
        box_marker("ego", 0, (cx, cy, 0.8), yaw, (scene.ego_size[0], scene.ego_size[1], 1.6), EGO_RGBA),
    ]
    for ident, ax, ay, ayaw, length, width, category in scene.agents:
        height = 1.8 if category.startswith("human.") else 1.5
        rgba = SIM_HUMAN_RGBA if category.startswith("human.") else SIM_VEHICLE_RGBA
        markers.append(
            box_marker("agents", ident, (ax, ay, height / 2.0), ayaw, (length, width, height), rgba, category)
        )
    if len(scene.route) >= 2:
        markers.append(line_marker("route", 0, scene.route, 0.05, 0.4, ROUTE_RGBA))
    if len(scene.driven) >= 2:
        markers.append(line_marker("driven", 0, scene.driven, 0.05, 0.25, DRIVEN_RGBA))
    if scene.plan is not None and len(scene.plan) >= 1:
        markers.append(line_marker("plan", 0, np.vstack([[x, y], scene.plan]), 0.05, 0.3, PLAN_RGBA))
    return _array(markers, Header(stamp=stamp, frame_id=MAP_FRAME))


__all__ = ["MarkerScene", "box_marker", "line_marker", "planner_markers", "scene_markers"]
