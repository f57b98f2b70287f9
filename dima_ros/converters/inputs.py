"""The planner's input messages -> the arrays and dataclasses of ``dima_core.runtime.preprocess``.

Each function reads one message type and hands the values to the ROS-free check that training and the runtime share,
so a bad input raises the same :class:`~dima_core.runtime.input_error.InputError` (``kind`` + message) the planner
node reports on /diagnostics: ``decode`` / ``encoding`` for an image, ``calibration`` for a CameraInfo,
``odometry`` for a non-finite speed, acceleration, yaw rate or pose. Nothing here keeps state or knows a topic name.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from geometry_msgs.msg import AccelWithCovarianceStamped
from nav_msgs.msg import Odometry
from sensor_msgs.msg import CameraInfo, CompressedImage, Image

from dima.msg import DrivingCommand
from dima_core.runtime.preprocess import (
    CameraModel,
    DecodedImage,
    PreprocessSettings,
    check_pose,
    decode_for_network,
    decode_raw,
    ego_status_vector,
    pose_matrix,
)


def decode_image(msg: CompressedImage | Image, settings: PreprocessSettings, camera: str) -> DecodedImage | np.ndarray:
    """A camera message -> the decoded image the camera pipeline resizes.

    Returns:
        CompressedImage: :class:`DecodedImage` (JPEG possibly decoded at a libjpeg reduction that still covers
        ``settings.image_size_wh``; PNG at full size). Image (raw ``rgb8`` / ``bgr8``): (H, W, 3) uint8 RGB.

    Raises:
        InputError: ``decode`` (unreadable bytes, unknown format) or ``encoding`` (raw encoding or geometry), naming
        ``camera``.
    """
    if isinstance(msg, CompressedImage):
        return decode_for_network(msg.data, msg.format, settings, source=camera)
    return decode_raw(msg.encoding, msg.height, msg.width, msg.step, msg.data, source=camera)


def camera_model_from_info(info: CameraInfo, cam_to_ego: np.ndarray, camera: str) -> CameraModel:
    """A CameraInfo's full-size intrinsics ``k`` and image size, with the camera -> base_link transform (from the
    configuration: CameraInfo carries no extrinsics).

    Args:
        cam_to_ego: (4, 4) or (16,) row-major transform, metres.

    Raises:
        InputError: ``calibration`` for non-finite values or fx / fy <= 0.
    """
    return CameraModel.from_lists(list(info.k), info.width, info.height, np.asarray(cam_to_ego).reshape(-1), camera)


@dataclass
class EgoInputs:
    """The ego state of one frame as the backend and the temporal BEV state take it."""

    status: np.ndarray  # (4,) float32: speed m/s, accel x m/s^2, accel y m/s^2, yaw rate rad/s (EgoStatus.as_vector)
    pose: np.ndarray  # (4, 4) float64: base_link -> odometry frame, finite


def ego_inputs(odometry: Odometry, acceleration: AccelWithCovarianceStamped | None) -> EgoInputs:
    """Speed and yaw rate from the odometry twist (base_link), acceleration from the acceleration message (0, 0 when
    the planner does not use one), and the odometry pose.

    Raises:
        InputError: ``odometry`` for a non-finite ego status (checked first: it is named in the message) or a
        non-finite pose (a zero or non-finite quaternion included).
    """
    twist = odometry.twist.twist
    ax = ay = 0.0
    if acceleration is not None:
        linear = acceleration.accel.accel.linear
        ax, ay = linear.x, linear.y
    status = ego_status_vector(twist.linear.x, ax, ay, twist.angular.z, source="odometry/acceleration")
    p, q = odometry.pose.pose.position, odometry.pose.pose.orientation
    pose = check_pose(pose_matrix((p.x, p.y, p.z), (q.x, q.y, q.z, q.w)), source="odometry pose")
    return EgoInputs(status, pose)


def driving_command(msg: DrivingCommand) -> int:
    """The command value (0 right, 1 left, 2 straight). The range is checked where the command is used
    (``build_inputs``: ``InputError("command", ...)``), so a frame with a bad command is refused, not its message."""
    return int(msg.command)


__all__ = ["EgoInputs", "camera_model_from_info", "decode_image", "driving_command", "ego_inputs"]
