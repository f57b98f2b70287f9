"""Build the messages of a DiMA replay bag from nuScenes records and :class:`DrivingSample` (rosbags types, no rclpy),
and decode the ground-truth message back into the arrays the planning metric reads.

Every builder takes the typestore (:func:`dima_core.bag.typestore.dima_typestore`) and a stamp in ROS nanoseconds
and returns a rosbags message object ready for ``typestore.serialize_cdr``. :func:`ground_truth_from_message` accepts
the rosbags object *or* the rclpy message (an evaluator node's callback argument): it only reads attributes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from rosbags.typesys.store import Typestore

from dima_core.bag.topics import BASE_FRAME, DISTORTION_MODEL, IMAGE_FORMAT, MAP_FRAME
from dima_core.constants import DETECTION_CLASSES
from dima_core.data.sample import AgentAnnotations, CameraView, DrivingSample, EgoStatus

NS_PER_US = 1_000
NS_PER_S = 1_000_000_000


def us_to_ns(timestamp_us: int, offset_ns: int = 0) -> int:
    """nuScenes microseconds -> ROS nanoseconds (plus a scene's time shift)."""
    return int(timestamp_us) * NS_PER_US + int(offset_ns)


def stamp_to_ns(stamp: Any) -> int:
    """``builtin_interfaces/Time`` (rosbags or rclpy) -> integer nanoseconds."""
    return int(stamp.sec) * NS_PER_S + int(stamp.nanosec)


def _time(ts: Typestore, ns: int) -> Any:
    sec, nanosec = divmod(int(ns), NS_PER_S)
    return ts.types["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec)


def _header(ts: Typestore, ns: int, frame_id: str) -> Any:
    return ts.types["std_msgs/msg/Header"](stamp=_time(ts, ns), frame_id=frame_id)


def _transform(ts: Typestore, record: Mapping[str, Sequence[float]]) -> Any:
    """geometry_msgs/Transform from a nuScenes pose record (``translation`` xyz, ``rotation`` quaternion w x y z).

    The record's quaternion is copied as stored (no matrix round trip), so TF carries the dataset's numbers exactly.
    """
    t = [float(v) for v in record["translation"]]
    w, x, y, z = (float(v) for v in record["rotation"])
    return ts.types["geometry_msgs/msg/Transform"](
        translation=ts.types["geometry_msgs/msg/Vector3"](x=t[0], y=t[1], z=t[2]),
        rotation=ts.types["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w),
    )


def transform_stamped(ts: Typestore, ns: int, parent: str, child: str, record: Mapping[str, Sequence[float]]) -> Any:
    """One TF edge ``parent -> child``: the pose of ``child`` in ``parent`` (a nuScenes ego_pose / calibration)."""
    return ts.types["geometry_msgs/msg/TransformStamped"](
        header=_header(ts, ns, parent), child_frame_id=child, transform=_transform(ts, record)
    )


def tf_message(ts: Typestore, transforms: Sequence[Any]) -> Any:
    """tf2_msgs/TFMessage holding ``transforms``."""
    return ts.types["tf2_msgs/msg/TFMessage"](transforms=list(transforms))


def compressed_image(ts: Typestore, ns: int, camera: str, jpeg: bytes) -> Any:
    """sensor_msgs/CompressedImage with the JPEG bytes exactly as stored; frame = the camera channel name."""
    return ts.types["sensor_msgs/msg/CompressedImage"](
        header=_header(ts, ns, camera), format=IMAGE_FORMAT, data=np.frombuffer(jpeg, dtype=np.uint8)
    )


def camera_info(ts: Typestore, ns: int, view: CameraView) -> Any:
    """sensor_msgs/CameraInfo of a rectified nuScenes camera: K from the calibration, R = I, P = [K | 0], D = 0."""
    k = np.asarray(view.intrinsic, np.float64).reshape(3, 3)
    p = np.zeros((3, 4), np.float64)
    p[:, :3] = k
    roi = ts.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)
    return ts.types["sensor_msgs/msg/CameraInfo"](
        header=_header(ts, ns, view.name),
        height=int(view.height),
        width=int(view.width),
        distortion_model=DISTORTION_MODEL,
        d=np.zeros(5, np.float64),
        k=k.ravel().copy(),
        r=np.eye(3, dtype=np.float64).ravel(),
        p=p.ravel(),
        binning_x=0,
        binning_y=0,
        roi=roi,
    )


def odometry(ts: Typestore, ns: int, ego_pose: Mapping[str, Sequence[float]], status: EgoStatus) -> Any:
    """nav_msgs/Odometry: pose of base_link in map (the ego pose), twist in base_link from the ego status.

    Only forward speed and yaw rate are known (EgoStatus); the other twist components are zero. Covariances are
    zero ("not estimated"), as dataset converters commonly write them.
    """
    transform = _transform(ts, ego_pose)
    vec3 = ts.types["geometry_msgs/msg/Vector3"]
    pose = ts.types["geometry_msgs/msg/Pose"](
        position=ts.types["geometry_msgs/msg/Point"](
            x=transform.translation.x, y=transform.translation.y, z=transform.translation.z
        ),
        orientation=transform.rotation,
    )
    twist = ts.types["geometry_msgs/msg/Twist"](
        linear=vec3(x=float(status.speed), y=0.0, z=0.0), angular=vec3(x=0.0, y=0.0, z=float(status.yaw_rate))
    )
    return ts.types["nav_msgs/msg/Odometry"](
        header=_header(ts, ns, MAP_FRAME),
        child_frame_id=BASE_FRAME,
        pose=ts.types["geometry_msgs/msg/PoseWithCovariance"](pose=pose, covariance=np.zeros(36, np.float64)),
        twist=ts.types["geometry_msgs/msg/TwistWithCovariance"](twist=twist, covariance=np.zeros(36, np.float64)),
    )


def acceleration(ts: Typestore, ns: int, status: EgoStatus) -> Any:
    """geometry_msgs/AccelWithCovarianceStamped in base_link: the ego status' (ax, ay).

    Odometry has no acceleration field, and the planner's ego-status input is (speed, ax, ay, yaw rate): with this
    topic a replayed planner sees exactly the ego status ``dima eval`` feeds it.
    """
    vec3 = ts.types["geometry_msgs/msg/Vector3"]
    accel = ts.types["geometry_msgs/msg/Accel"](
        linear=vec3(x=float(status.acceleration[0]), y=float(status.acceleration[1]), z=0.0),
        angular=vec3(x=0.0, y=0.0, z=0.0),
    )
    return ts.types["geometry_msgs/msg/AccelWithCovarianceStamped"](
        header=_header(ts, ns, BASE_FRAME),
        accel=ts.types["geometry_msgs/msg/AccelWithCovariance"](accel=accel, covariance=np.zeros(36, np.float64)),
    )


def driving_command(ts: Typestore, ns: int, command: int) -> Any:
    """dima/DrivingCommand for the keyframe whose CAM_FRONT stamp is ``ns``."""
    return ts.types["dima/msg/DrivingCommand"](header=_header(ts, ns, BASE_FRAME), command=int(command))


def ground_truth_frame(ts: Typestore, ns: int, sample: DrivingSample) -> Any:
    """dima/GroundTruthFrame of a sample (see msg/GroundTruthFrame.msg); arrays keep the sample's float32 values."""
    # Imported here: planning_metrics pulls in cv2 (occupancy rasteriser), which only GT building needs.
    from dima_core.eval.planning_metrics import sample_splits

    agents = sample.agents
    n = len(agents)
    steps = int(sample.ego_future.shape[0])
    return ts.types["dima/msg/GroundTruthFrame"](
        header=_header(ts, ns, BASE_FRAME),
        sample_token=sample.token,
        scene_name=sample.scene_name,
        timestamp_us=int(sample.timestamp_us),
        command=int(sample.command),
        tags=list(sample.tags),
        eval_splits=list(sample_splits(sample)),
        num_future_steps=steps,
        ego_future=np.ascontiguousarray(sample.ego_future, np.float32).ravel(),
        ego_future_yaw=np.ascontiguousarray(sample.ego_future_yaw, np.float32).ravel(),
        ego_future_mask=np.ascontiguousarray(sample.ego_future_mask, bool).ravel(),
        num_agents=n,
        agent_boxes=np.ascontiguousarray(agents.boxes, np.float32).reshape(n * 7),
        agent_labels=np.ascontiguousarray(agents.labels).astype(np.uint8).reshape(n),
        agent_num_lidar_points=np.ascontiguousarray(agents.num_lidar_points).astype(np.uint32).reshape(n),
        agent_velocities=np.ascontiguousarray(agents.velocities, np.float32).reshape(n * 2),
        agent_instance_tokens=list(agents.instance_tokens),
        agent_futures=np.ascontiguousarray(agents.future, np.float32).reshape(n * steps * 2),
        agent_future_yaws=np.ascontiguousarray(agents.future_yaw, np.float32).reshape(n * steps),
        agent_future_masks=np.ascontiguousarray(agents.future_mask, bool).reshape(n * steps),
    )


# ------------------------------------------------------------------------------------------------------- decoding


def _array(value: Any, dtype: Any) -> np.ndarray:
    """A message array field (numpy from rosbags; array.array, list or bytes from rclpy) as a numpy array."""
    if isinstance(value, (bytes, bytearray)):
        return np.frombuffer(value, dtype=np.uint8).astype(dtype)
    return np.asarray(value, dtype=dtype)


@dataclass
class GroundTruth:
    """A decoded dima/GroundTruthFrame: the metric's inputs with DrivingSample's shapes and dtypes.

    Score a planned trajectory online exactly as ``dima eval``::

        gt = ground_truth_from_message(msg)
        occupancy = build_occupancy(gt.agents, accumulator.occupancy_config)
        accumulator.add(pred, gt.ego_future, gt.ego_future_mask, occupancy, token=gt.sample_token,
                        splits=gt.eval_splits)
    """

    stamp_ns: int  # header stamp: the CAM_FRONT stamp a planner's Trajectory for this frame carries
    sample_token: str
    scene_name: str
    timestamp_us: int
    command: int
    tags: list[str]
    eval_splits: list[str]
    ego_future: np.ndarray  # (T, 2) float32
    ego_future_yaw: np.ndarray  # (T,) float32
    ego_future_mask: np.ndarray  # (T,) bool
    agents: AgentAnnotations = field(default_factory=AgentAnnotations.empty)

    @property
    def has_full_future(self) -> bool:
        return bool(self.ego_future_mask.all())


def ground_truth_from_message(msg: Any) -> GroundTruth:
    """Decode a dima/GroundTruthFrame (rosbags or rclpy object); raises ValueError on inconsistent array sizes."""
    steps = int(msg.num_future_steps)
    n = int(msg.num_agents)

    def shaped(name: str, dtype: Any, shape: tuple[int, ...]) -> np.ndarray:
        values = _array(getattr(msg, name), dtype)
        if values.size != int(np.prod(shape)):
            raise ValueError(
                f"GroundTruthFrame {msg.sample_token!r}: {name} has {values.size} values, expected shape {shape}"
            )
        return values.reshape(shape)

    labels = shaped("agent_labels", np.int64, (n,))
    if n and int(labels.max()) >= len(DETECTION_CLASSES):
        raise ValueError(f"GroundTruthFrame {msg.sample_token!r}: agent label {int(labels.max())} out of range")
    tokens = [str(t) for t in msg.agent_instance_tokens]
    if len(tokens) != n:
        raise ValueError(f"GroundTruthFrame {msg.sample_token!r}: {len(tokens)} instance tokens for {n} agents")
    agents = AgentAnnotations(
        boxes=shaped("agent_boxes", np.float32, (n, 7)),
        velocities=shaped("agent_velocities", np.float32, (n, 2)),
        labels=labels,
        category_names=[DETECTION_CLASSES[i] for i in labels],  # the detection class (the dataset's is not sent)
        instance_tokens=tokens,
        annotation_tokens=[""] * n,
        visibility=np.zeros((n,), np.int64),
        num_lidar_points=shaped("agent_num_lidar_points", np.int64, (n,)),
        future=shaped("agent_futures", np.float32, (n, steps, 2)),
        future_yaw=shaped("agent_future_yaws", np.float32, (n, steps)),
        future_mask=shaped("agent_future_masks", bool, (n, steps)),
    )
    return GroundTruth(
        stamp_ns=stamp_to_ns(msg.header.stamp),
        sample_token=str(msg.sample_token),
        scene_name=str(msg.scene_name),
        timestamp_us=int(msg.timestamp_us),
        command=int(msg.command),
        tags=[str(t) for t in msg.tags],
        eval_splits=[str(s) for s in msg.eval_splits],
        ego_future=shaped("ego_future", np.float32, (steps, 2)),
        ego_future_yaw=shaped("ego_future_yaw", np.float32, (steps,)),
        ego_future_mask=shaped("ego_future_mask", bool, (steps,)),
        agents=agents,
    )


__all__ = [
    "GroundTruth",
    "acceleration",
    "camera_info",
    "compressed_image",
    "driving_command",
    "ground_truth_frame",
    "ground_truth_from_message",
    "odometry",
    "stamp_to_ns",
    "tf_message",
    "transform_stamped",
    "us_to_ns",
]
