"""What the simulator node puts on the wire and takes off it: the vehicle topics, the plan a trajectory message
carries, the RViz markers and the metrics JSON.

Vehicle topics: the same names, QoS and message builders as a ``dima bag convert`` bag (``dima_core.bag.topics`` /
``dima_core.bag.messages``), so the planner node is driven by the simulator exactly as by a replay or a nuScenes-like
vehicle. The builders make ``rosbags`` messages; they are serialised to CDR and published as bytes (rclpy's
``publish`` accepts serialised messages, as the bag player uses it), so no builder is written twice. A topic whose
message type does not import here (``tf2_msgs`` in the pip-only environment) is skipped and named in
:attr:`VehicleTopics.skipped`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from geometry_msgs.msg import Point, Quaternion
from rclpy.node import Node
from visualization_msgs.msg import Marker, MarkerArray

from dima_core.bag import messages as m
from dima_core.bag.topics import (
    ACCEL_TOPIC,
    ACCEL_TYPE,
    BASE_FRAME,
    CAMERA_INFO_TYPE,
    CLOCK_QOS,
    CLOCK_TOPIC,
    CLOCK_TYPE,
    COMMAND_TOPIC,
    COMMAND_TYPE,
    COMPRESSED_IMAGE_TYPE,
    MAP_FRAME,
    ODOMETRY_TYPE,
    ODOM_TOPIC,
    SENSOR_QOS,
    STATE_QOS,
    TF_QOS,
    TF_STATIC_QOS,
    TF_STATIC_TOPIC,
    TF_TOPIC,
    TF_TYPE,
    camera_info_topic,
    image_topic,
)
from dima_core.bag.typestore import dima_typestore
from dima_core.constants import CAMERA_NAMES, EGO_FOOTPRINT_FORWARD_OFFSET_M, FUTURE_STEPS, STEP_SECONDS
from dima_core.data.sample import CameraView, EgoStatus
from dima_core.data.synth.geometry import yaw_quaternion
from dima_core.runtime.postprocess import yaw_to_quaternion
from dima_core.sim.runner import jsonable
from dima_ros.bag_player import import_message_class, qos_profile_from_bag

NS_PER_S = 1_000_000_000
# A waypoint's time_from_start may differ from (i + 1) * STEP_SECONDS by this much (the builder's nanosecond rounding).
TIME_TOLERANCE_S = 1e-3


def ns_to_seconds(ns: int) -> float:
    return ns / NS_PER_S


# ----------------------------------------------------------------------------------------------------- vehicle topics


def rig_in_camera_order(cameras: Sequence[Any]) -> list[Any]:
    """The rig's cameras in CAMERA_NAMES order; ValueError when one is missing."""
    by_name = {c.name: c for c in cameras}
    missing = [cam for cam in CAMERA_NAMES if cam not in by_name]
    if missing:
        raise ValueError(f"the camera rig lacks {missing}")
    return [by_name[cam] for cam in CAMERA_NAMES]


def camera_view(camera: Any) -> CameraView:
    """The bag builders' camera record for a rig camera (:class:`dima_core.data.synth.cameras.Camera`)."""
    return CameraView(name=camera.name, image_path="", intrinsic=np.asarray(camera.K, np.float64),
                      cam_to_ego=np.asarray(camera.cam_to_ego, np.float64), width=int(camera.width),
                      height=int(camera.height), timestamp_us=0, sample_data_token="")


class VehicleTopics:
    """Publishers of every topic a vehicle (or a replay bag) gives the planner, plus /clock.

    ``cameras`` arguments are the episode's rig (:class:`dima_core.data.synth.cameras.Camera`: ``name``, ``K``,
    ``width``, ``height``, ``cam_to_ego``, ``translation``, ``rotation_wxyz``), in any order.
    """

    def __init__(self, node: Node) -> None:
        self.ts = dima_typestore()
        self.skipped: dict[str, str] = {}
        self._pubs: dict[str, Any] = {}
        self._types: dict[str, str] = {}
        topics = [(TF_STATIC_TOPIC, TF_TYPE, TF_STATIC_QOS), (TF_TOPIC, TF_TYPE, TF_QOS),
                  (ODOM_TOPIC, ODOMETRY_TYPE, STATE_QOS), (ACCEL_TOPIC, ACCEL_TYPE, STATE_QOS),
                  (COMMAND_TOPIC, COMMAND_TYPE, STATE_QOS), (CLOCK_TOPIC, CLOCK_TYPE, CLOCK_QOS)]
        for cam in CAMERA_NAMES:
            topics += [(camera_info_topic(cam), CAMERA_INFO_TYPE, SENSOR_QOS),
                       (image_topic(cam), COMPRESSED_IMAGE_TYPE, SENSOR_QOS)]
        for topic, msgtype, qos in topics:
            try:
                cls = import_message_class(msgtype)
            except ImportError as exc:
                self.skipped[topic] = str(exc)
                continue
            self._pubs[topic] = node.create_publisher(cls, topic, qos_profile_from_bag(qos))
            self._types[topic] = msgtype

    def _publish(self, topic: str, msg: Any) -> None:
        pub = self._pubs.get(topic)
        if pub is not None:
            pub.publish(bytes(self.ts.serialize_cdr(msg, self._types[topic])))

    def subscription_counts(self) -> dict[str, int]:
        """Matched subscribers per published topic (the planner's inputs: cameras, odometry, command)."""
        return {topic: pub.get_subscription_count() for topic, pub in self._pubs.items()}

    def publish_clock(self, ns: int) -> None:
        sec, nanosec = divmod(int(ns), NS_PER_S)
        clock = self.ts.types[CLOCK_TYPE](clock=self.ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec))
        self._publish(CLOCK_TOPIC, clock)

    def publish_static(self, ns: int, cameras: Sequence[Any]) -> None:
        """``/tf_static`` base_link -> CAM_* (transient local: a node started later still gets it)."""
        transforms = [m.transform_stamped(self.ts, ns, BASE_FRAME, c.name,
                                          {"translation": c.translation, "rotation": c.rotation_wxyz})
                      for c in rig_in_camera_order(cameras)]
        self._publish(TF_STATIC_TOPIC, m.tf_message(self.ts, transforms))

    def publish_state(self, ns: int, x: float, y: float, yaw: float, status: EgoStatus) -> None:
        """``/tf`` map -> base_link, ``/odom`` (pose in map, twist in base_link) and ``/accel`` stamped ``ns``."""
        pose = {"translation": [float(x), float(y), 0.0], "rotation": yaw_quaternion(float(yaw))}
        self._publish(TF_TOPIC, m.tf_message(self.ts, [m.transform_stamped(self.ts, ns, MAP_FRAME, BASE_FRAME,
                                                                           pose)]))
        self._publish(ODOM_TOPIC, m.odometry(self.ts, ns, pose, status))
        self._publish(ACCEL_TOPIC, m.acceleration(self.ts, ns, status))

    def publish_frame(self, ns: int, cameras: Sequence[Any], jpegs: Sequence[bytes], command: int) -> None:
        """The route command, then every camera's CameraInfo and JPEG (``jpegs`` in CAMERA_NAMES order), all
        stamped ``ns``; CAM_FRONT last: the planner anchors its frame set on it."""
        rig = rig_in_camera_order(cameras)
        if len(jpegs) != len(rig):
            raise ValueError(f"{len(jpegs)} camera images for {len(rig)} cameras")
        self._publish(COMMAND_TOPIC, m.driving_command(self.ts, ns, int(command)))
        order = [i for i, c in enumerate(rig) if c.name != "CAM_FRONT"] + [CAMERA_NAMES.index("CAM_FRONT")]
        for i in order:
            view = camera_view(rig[i])
            self._publish(camera_info_topic(view.name), m.camera_info(self.ts, ns, view))
            self._publish(image_topic(view.name), m.compressed_image(self.ts, ns, view.name, jpegs[i]))


# ----------------------------------------------------------------------------------------------------- trajectories


class TrajectoryRejected(ValueError):
    """A dima/Trajectory the simulator cannot execute for a reason its header or timing shows (``kind``:
    ``frame`` or ``timing``); shape and finiteness are the episode's own check (``dima_core.sim.episode``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def plan_from_trajectory(msg: Any, frame_id: str = BASE_FRAME) -> np.ndarray:
    """(N, 2) float64 waypoint positions (x forward, y left, metres) of a dima/Trajectory in ``frame_id``.

    Raises :class:`TrajectoryRejected` for another frame, or for waypoints not at 0.5, 1.0 .. 3.0 s when there are
    FUTURE_STEPS of them (a plan timed otherwise would be executed at the wrong speed). The number of points and
    non-finite values are left to ``ClosedLoopEpisode.apply_plan``, which refuses and counts them.
    """
    if msg.header.frame_id != frame_id:
        raise TrajectoryRejected("frame", f"trajectory in frame {msg.header.frame_id!r}, expected {frame_id!r} (the "
                                          "ego frame of the stamped camera frame)")
    points = list(msg.points)
    xy = np.array([[p.pose.position.x, p.pose.position.y] for p in points], np.float64).reshape(-1, 2)
    if len(points) == FUTURE_STEPS:
        times = np.array([p.time_from_start.sec + p.time_from_start.nanosec * 1e-9 for p in points])
        expected = STEP_SECONDS * np.arange(1, FUTURE_STEPS + 1)
        if not np.all(np.abs(times - expected) <= TIME_TOLERANCE_S):
            raise TrajectoryRejected("timing", f"waypoints at {np.round(times, 3).tolist()} s, expected "
                                               f"{expected.tolist()} s")
    return xy


# ----------------------------------------------------------------------------------------------------- RViz markers


def _colour(marker: Marker, r: float, g: float, b: float, a: float) -> None:
    marker.color.r, marker.color.g, marker.color.b, marker.color.a = r, g, b, a


def _box(ns: str, ident: int, x: float, y: float, yaw: float, length: float, width: float, height: float,
         rgba: tuple[float, float, float, float], text: str = "") -> Marker:
    box = Marker(ns=ns, id=int(ident), type=Marker.CUBE, action=Marker.ADD)
    box.pose.position = Point(x=float(x), y=float(y), z=height / 2.0)
    qx, qy, qz, qw = yaw_to_quaternion(float(yaw))
    box.pose.orientation = Quaternion(x=qx, y=qy, z=qz, w=qw)
    box.scale.x, box.scale.y, box.scale.z = max(float(length), 0.1), max(float(width), 0.1), max(height, 0.1)
    _colour(box, *rgba)
    box.text = text
    return box


def _line(ns: str, xy: np.ndarray, width: float, rgba: tuple[float, float, float, float]) -> Marker:
    line = Marker(ns=ns, id=0, type=Marker.LINE_STRIP, action=Marker.ADD)
    line.pose.orientation.w = 1.0
    line.scale.x = width
    _colour(line, *rgba)
    line.points = [Point(x=float(px), y=float(py), z=0.05) for px, py in np.asarray(xy, np.float64).reshape(-1, 2)]
    return line


@dataclass
class MarkerScene:
    """What the markers show, in the map frame: the ego (rear-axle pose, footprint size), the present agents
    (box centre x, y, yaw; length, width; category), the route, the driven path and the current plan."""

    ego_pose: tuple[float, float, float]
    ego_size: tuple[float, float]
    agents: list[tuple[int, float, float, float, float, float, str]]
    route: np.ndarray
    driven: np.ndarray
    plan: Optional[np.ndarray]


def scene_markers(scene: MarkerScene, stamp: Any) -> MarkerArray:
    """MarkerArray in ``map``: DELETEALL, then ego box, agent boxes, route, driven path and plan."""
    out = MarkerArray()
    markers: list[Marker] = [Marker(action=Marker.DELETEALL)]
    x, y, yaw = scene.ego_pose
    cx, cy = x + EGO_FOOTPRINT_FORWARD_OFFSET_M * math.cos(yaw), y + EGO_FOOTPRINT_FORWARD_OFFSET_M * math.sin(yaw)
    markers.append(_box("ego", 0, cx, cy, yaw, scene.ego_size[0], scene.ego_size[1], 1.6, (0.1, 0.4, 1.0, 0.9)))
    for ident, ax, ay, ayaw, length, width, category in scene.agents:
        human = category.startswith("human.")
        markers.append(_box("agents", ident, ax, ay, ayaw, length, width, 1.8 if human else 1.5,
                            (1.0, 0.3, 0.6, 0.8) if human else (0.9, 0.6, 0.1, 0.8), category))
    if len(scene.route) >= 2:
        markers.append(_line("route", scene.route, 0.4, (0.6, 0.6, 0.6, 0.6)))
    if len(scene.driven) >= 2:
        markers.append(_line("driven", scene.driven, 0.25, (0.1, 0.4, 1.0, 1.0)))
    if scene.plan is not None and len(scene.plan) >= 1:
        markers.append(_line("plan", np.vstack([[x, y], scene.plan]), 0.3, (0.1, 0.9, 0.2, 1.0)))
    for marker in markers:
        marker.header.stamp = stamp
        marker.header.frame_id = MAP_FRAME
    out.markers = markers
    return out


# ----------------------------------------------------------------------------------------------------- metrics JSON


def metrics_json(payload: dict) -> str:
    return json.dumps(jsonable(payload), allow_nan=False)


__all__ = ["MarkerScene", "TrajectoryRejected", "VehicleTopics", "camera_view", "metrics_json", "ns_to_seconds",
           "plan_from_trajectory", "rig_in_camera_order", "scene_markers"]
