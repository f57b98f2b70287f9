"""The topics, message types, frames and QoS of a DiMA replay bag: one table shared by the writer and every reader.

``dima bag convert`` writes exactly these topics, ``dima bag play`` offers each with the QoS recorded here, and
the planner / evaluator nodes subscribe to them by default, so the names cannot drift between producer and
consumers. Everything here is plain Python (no rclpy): the QoS is described with the ``rosbags`` QoS tuple, which is
what a rosbag2 ``metadata.yaml`` stores as ``offered_qos_profiles``, and :func:`qos_to_dict` gives a neutral form
a ROS-side module turns into ``rclpy.qos.QoSProfile``.

QoS choices (docs/design.md, ROS interfaces; ros_ecosystem.md section 6 item 5):

- Everything is *offered* reliable. A reliable writer matches both reliable and best-effort readers (REP-2003:
  drivers publish reliable, camera consumers subscribe best-effort), so no subscriber is ever silently starved by a
  QoS mismatch.
- ``/tf_static`` is transient-local, depth 1 (what ``tf2_ros.StaticTransformBroadcaster`` offers): a node started
  after the transforms went out still receives them.
- ``/tf`` keeps 100 (``tf2_ros.TransformBroadcaster``'s default), the GT topic keeps 100 so a slow evaluator does
  not lose frames, sensors keep 10.
"""

from __future__ import annotations

from dataclasses import dataclass

from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

from dima_core.constants import CAMERA_NAMES

# Frames (docs/design.md, Frames and shapes). Camera frames are the nuScenes channel names; nuScenes camera frames
# are already optical frames (x right, y down, z forward), so no separate *_optical_frame is needed.
MAP_FRAME = "map"
BASE_FRAME = "base_link"

# Message types (ROS 2 names, as they appear in the bag and on the wire).
COMPRESSED_IMAGE_TYPE = "sensor_msgs/msg/CompressedImage"
CAMERA_INFO_TYPE = "sensor_msgs/msg/CameraInfo"
TF_TYPE = "tf2_msgs/msg/TFMessage"
ODOMETRY_TYPE = "nav_msgs/msg/Odometry"
ACCEL_TYPE = "geometry_msgs/msg/AccelWithCovarianceStamped"
COMMAND_TYPE = "dima/msg/DrivingCommand"
GROUND_TRUTH_TYPE = "dima/msg/GroundTruthFrame"
CLOCK_TYPE = "rosgraph_msgs/msg/Clock"

# Topic names.
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
ODOM_TOPIC = "/odom"
ACCEL_TOPIC = "/accel"
COMMAND_TOPIC = "/planning/command"
GROUND_TRUTH_TOPIC = "/evaluation/ground_truth"
CLOCK_TOPIC = "/clock"

# nuScenes stores JPEGs; CompressedImage.format names the codec (image_transport's "compressed" convention).
IMAGE_FORMAT = "jpeg"
DISTORTION_MODEL = "plumb_bob"  # nuScenes images are rectified: five zero coefficients


def image_topic(camera: str) -> str:
    """``/CAM_FRONT/image_rect_compressed``: the rectified JPEG stream of a camera."""
    return f"/{camera}/image_rect_compressed"


def camera_info_topic(camera: str) -> str:
    """``/CAM_FRONT/camera_info``: the calibration matching :func:`image_topic`."""
    return f"/{camera}/camera_info"


def _qos(depth: int, durability: QosDurability = QosDurability.VOLATILE) -> Qos:
    zero = QosTime(sec=0, nsec=0)  # 0 = "infinite"/unset for deadline, lifespan and lease duration
    return Qos(
        history=QosHistory.KEEP_LAST,
        depth=depth,
        reliability=QosReliability.RELIABLE,
        durability=durability,
        deadline=zero,
        lifespan=zero,
        liveliness=QosLiveliness.AUTOMATIC,
        liveliness_lease_duration=zero,
        avoid_ros_namespace_conventions=False,
    )


SENSOR_QOS = _qos(10)
TF_QOS = _qos(100)
TF_STATIC_QOS = _qos(1, QosDurability.TRANSIENT_LOCAL)
STATE_QOS = _qos(10)  # odometry, acceleration, command
GROUND_TRUTH_QOS = _qos(100)
# /clock as rosbag2's player offers it in spirit (keep only the newest); reliable so reliable readers match too.
CLOCK_QOS = _qos(1)


@dataclass(frozen=True)
class TopicSpec:
    """One topic of a replay bag: name, ROS 2 type and the QoS the bag records as offered."""

    name: str
    msgtype: str
    qos: Qos
    description: str


def bag_topics(cameras: tuple[str, ...] = CAMERA_NAMES) -> list[TopicSpec]:
    """Every topic ``dima bag convert`` writes, in a stable order (cameras in CAMERA_NAMES order)."""
    specs = [
        TopicSpec(TF_STATIC_TOPIC, TF_TYPE, TF_STATIC_QOS, "base_link -> CAM_* calibration, once per scene"),
        TopicSpec(TF_TOPIC, TF_TYPE, TF_QOS, "map -> base_link at each keyframe's reference and camera times"),
        TopicSpec(ODOM_TOPIC, ODOMETRY_TYPE, STATE_QOS, "ego pose in map, twist (speed, yaw rate) in base_link"),
        TopicSpec(ACCEL_TOPIC, ACCEL_TYPE, STATE_QOS, "ego acceleration (ax, ay) in base_link"),
        TopicSpec(COMMAND_TOPIC, COMMAND_TYPE, STATE_QOS, "driving command (0 right, 1 left, 2 straight)"),
        TopicSpec(GROUND_TRUTH_TOPIC, GROUND_TRUTH_TYPE, GROUND_TRUTH_QOS, "GT ego future and agents for evaluation"),
    ]
    for cam in cameras:
        specs.append(TopicSpec(camera_info_topic(cam), CAMERA_INFO_TYPE, SENSOR_QOS, f"{cam} calibration"))
        specs.append(TopicSpec(image_topic(cam), COMPRESSED_IMAGE_TYPE, SENSOR_QOS, f"{cam} JPEG as stored"))
    return specs


def qos_to_dict(qos: Qos) -> dict[str, object]:
    """A rosbags QoS tuple as plain values (enum names in lower case, durations in seconds) for ROS-side adapters."""

    def seconds(t: QosTime) -> float:
        return t.sec + t.nsec * 1e-9

    return {
        "history": qos.history.name.lower(),
        "depth": int(qos.depth),
        "reliability": qos.reliability.name.lower(),
        "durability": qos.durability.name.lower(),
        "deadline_s": seconds(qos.deadline),
        "lifespan_s": seconds(qos.lifespan),
        "liveliness": qos.liveliness.name.lower(),
        "liveliness_lease_duration_s": seconds(qos.liveliness_lease_duration),
    }


__all__ = [
    "ACCEL_TOPIC",
    "ACCEL_TYPE",
    "BASE_FRAME",
    "CAMERA_INFO_TYPE",
    "CLOCK_QOS",
    "CLOCK_TOPIC",
    "CLOCK_TYPE",
    "COMMAND_TOPIC",
    "COMMAND_TYPE",
    "COMPRESSED_IMAGE_TYPE",
    "DISTORTION_MODEL",
    "GROUND_TRUTH_QOS",
    "GROUND_TRUTH_TOPIC",
    "GROUND_TRUTH_TYPE",
    "IMAGE_FORMAT",
    "MAP_FRAME",
    "ODOMETRY_TYPE",
    "ODOM_TOPIC",
    "SENSOR_QOS",
    "STATE_QOS",
    "TF_QOS",
    "TF_STATIC_QOS",
    "TF_STATIC_TOPIC",
    "TF_TOPIC",
    "TF_TYPE",
    "TopicSpec",
    "bag_topics",
    "camera_info_topic",
    "image_topic",
    "qos_to_dict",
]
