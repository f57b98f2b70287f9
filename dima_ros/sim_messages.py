"""What the simulator node publishes as a vehicle would: the vehicle topics, and the metrics JSON. (The plan a
trajectory message carries and the RViz markers are converters: :mod:`dima_ros.converters.trajectory`,
:mod:`dima_ros.converters.markers`.)

Vehicle topics: the same names, QoS and message builders as a ``dima bag convert`` bag (``dima_core.bag.topics`` /
``dima_core.bag.messages``), so the planner node is driven by the simulator exactly as by a replay or a nuScenes-like
vehicle. The builders make ``rosbags`` messages; they are serialised to CDR and published as bytes (rclpy's
``publish`` accepts serialised messages, as the bag player uses it), so no builder is written twice. A topic whose
message type does not import here (``tf2_msgs`` in the pip-only environment) is skipped and named in
:attr:`VehicleTopics.skipped`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
from rclpy.node import Node

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
    ODOM_TOPIC,
    ODOMETRY_TYPE,
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
from dima_core.constants import CAMERA_NAMES
from dima_core.data.geometry import yaw_quaternion
from dima_core.data.sample import CameraView, EgoStatus
from dima_core.sim.runner import jsonable
from dima_ros.bag_player import import_message_class
from dima_ros.converters.qos import qos_profile_from_bag
from dima_ros.converters.stamps import split_ns

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
    return CameraView(
        name=camera.name,
        image_path="",
        intrinsic=np.asarray(camera.K, np.float64),
        cam_to_ego=np.asarray(camera.cam_to_ego, np.float64),
        width=int(camera.width),
        height=int(camera.height),
        timestamp_us=0,
        sample_data_token="",
    )


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
        topics = [
            (TF_STATIC_TOPIC, TF_TYPE, TF_STATIC_QOS),
            (TF_TOPIC, TF_TYPE, TF_QOS),
            (ODOM_TOPIC, ODOMETRY_TYPE, STATE_QOS),
            (ACCEL_TOPIC, ACCEL_TYPE, STATE_QOS),
            (COMMAND_TOPIC, COMMAND_TYPE, STATE_QOS),
            (CLOCK_TOPIC, CLOCK_TYPE, CLOCK_QOS),
        ]
        for cam in CAMERA_NAMES:
            topics += [
                (camera_info_topic(cam), CAMERA_INFO_TYPE, SENSOR_QOS),
                (image_topic(cam), COMPRESSED_IMAGE_TYPE, SENSOR_QOS),
            ]
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
        sec, nanosec = split_ns(int(ns))
        clock = self.ts.types[CLOCK_TYPE](clock=self.ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec))
        self._publish(CLOCK_TOPIC, clock)

    def publish_static(self, ns: int, cameras: Sequence[Any]) -> None:
        """``/tf_static`` base_link -> CAM_* (transient local: a node started later still gets it)."""
        transforms = [
            m.transform_stamped(
                self.ts, ns, BASE_FRAME, c.name, {"translation": c.translation, "rotation": c.rotation_wxyz}
            )
            for c in rig_in_camera_order(cameras)
        ]
        self._publish(TF_STATIC_TOPIC, m.tf_message(self.ts, transforms))

    def publish_state(self, ns: int, x: float, y: float, yaw: float, status: EgoStatus) -> None:
        """``/tf`` map -> base_link, ``/odom`` (pose in map, twist in base_link) and ``/accel`` stamped ``ns``."""
        pose = {"translation": [float(x), float(y), 0.0], "rotation": yaw_quaternion(float(yaw))}
        self._publish(TF_TOPIC, m.tf_message(self.ts, [m.transform_stamped(self.ts, ns, MAP_FRAME, BASE_FRAME, pose)]))
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


# ----------------------------------------------------------------------------------------------------- metrics JSON


def metrics_json(payload: dict) -> str:
    return json.dumps(jsonable(payload), allow_nan=False)


__all__ = ["VehicleTopics", "camera_view", "metrics_json", "rig_in_camera_order"]
