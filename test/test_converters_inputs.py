"""dima_ros.converters.inputs on real sensor_msgs / nav_msgs / geometry_msgs / dima messages, without DDS: the arrays
the planner's runtime takes, and the InputError kinds and messages the planner node reports for bad inputs."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from ros_helpers.testing import require_ros


@pytest.fixture(scope="module", autouse=True)
def _ros_available() -> None:
    require_ros()


def _settings():
    from dima_core.runtime.preprocess import PreprocessSettings

    return PreprocessSettings((64, 36), "area", jpeg_max_reduction=1)


def _jpeg(width: int = 160, height: int = 90) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 255, (height, width, 3), dtype=np.uint8)
    return cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 95])[1].tobytes(), bgr


def test_compressed_image_decodes_to_rgb_at_full_size() -> None:
    from sensor_msgs.msg import CompressedImage

    from dima_core.runtime.image_format import DecodedImage
    from dima_ros.converters.inputs import decode_image

    data, bgr = _jpeg()
    out = decode_image(CompressedImage(format="jpeg", data=data), _settings(), "CAM_FRONT")
    assert isinstance(out, DecodedImage)
    assert out.pixels.shape == (90, 160, 3) and out.pixels.dtype == np.uint8
    assert (out.full_width, out.full_height, out.reduction) == (160, 90, 1)
    # RGB order: the decode agrees with OpenCV's own (BGR) decode of the same bytes, channels swapped.
    reference = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    np.testing.assert_array_equal(out.pixels, reference[:, :, ::-1])


def test_compressed_image_errors_name_the_camera() -> None:
    from sensor_msgs.msg import CompressedImage

    from dima_core.runtime.input_error import InputError
    from dima_ros.converters.inputs import decode_image

    with pytest.raises(InputError, match="CAM_BACK.*corrupt or undecodable") as err:
        decode_image(CompressedImage(format="jpeg", data=b"\xff\xd8garbage"), _settings(), "CAM_BACK")
    assert err.value.kind == "decode"


def test_raw_image_rgb_and_bgr_and_refusals() -> None:
    from sensor_msgs.msg import Image

    from dima_core.runtime.input_error import InputError
    from dima_ros.converters.inputs import decode_image

    bgr = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    msg = Image(encoding="bgr8", height=2, width=3, step=9, data=bgr.tobytes())
    out = decode_image(msg, _settings(), "CAM_FRONT")
    assert out.shape == (2, 3, 3) and out.dtype == np.uint8
    np.testing.assert_array_equal(out, bgr[:, :, ::-1])
    msg.encoding = "rgb8"
    np.testing.assert_array_equal(decode_image(msg, _settings(), "CAM_FRONT"), bgr)
    with pytest.raises(InputError, match="CAM_LEFT: unsupported image encoding 'mono8'") as err:
        decode_image(Image(encoding="mono8", height=2, width=3, step=3, data=bytes(6)), _settings(), "CAM_LEFT")
    assert err.value.kind == "encoding"
    with pytest.raises(InputError, match="bytes of data for 2 rows"):
        decode_image(Image(encoding="rgb8", height=2, width=3, step=9, data=bytes(17)), _settings(), "CAM_FRONT")


def test_camera_info_gives_the_camera_model() -> None:
    from sensor_msgs.msg import CameraInfo

    from dima_core.runtime.input_error import InputError
    from dima_ros.converters.inputs import camera_model_from_info

    k = [1266.4, 0.0, 816.3, 0.0, 1266.4, 491.5, 0.0, 0.0, 1.0]
    cam_to_ego = np.eye(4)
    cam_to_ego[:3, 3] = (1.7, 0.0, 1.5)
    model = camera_model_from_info(CameraInfo(width=1600, height=900, k=k), cam_to_ego, "CAM_FRONT")
    assert model.intrinsics.shape == (3, 3) and model.intrinsics.dtype == np.float64
    np.testing.assert_array_equal(model.intrinsics, np.reshape(k, (3, 3)))
    np.testing.assert_array_equal(model.cam_to_ego, cam_to_ego)
    assert (model.width, model.height) == (1600, 900)
    flat = camera_model_from_info(CameraInfo(width=1600, height=900, k=k), cam_to_ego.reshape(-1), "CAM_FRONT")
    np.testing.assert_array_equal(flat.cam_to_ego, cam_to_ego)  # (16,) row-major is the same transform
    for bad in ([math.nan] + k[1:], [0.0] + k[1:]):
        with pytest.raises(InputError, match="CAM_FRONT: invalid calibration") as err:
            camera_model_from_info(CameraInfo(width=1600, height=900, k=bad), cam_to_ego, "CAM_FRONT")
        assert err.value.kind == "calibration"


def _odometry(speed: float = 4.0, yaw_rate: float = 0.1, yaw: float = math.pi / 2, quaternion=None):
    from nav_msgs.msg import Odometry

    msg = Odometry()
    msg.twist.twist.linear.x, msg.twist.twist.angular.z = speed, yaw_rate
    msg.pose.pose.position.x, msg.pose.pose.position.y, msg.pose.pose.position.z = 10.0, -2.0, 0.5
    q = quaternion if quaternion is not None else (0.0, 0.0, math.sin(yaw / 2), math.cos(yaw / 2))
    o = msg.pose.pose.orientation
    o.x, o.y, o.z, o.w = q
    return msg


def test_ego_inputs_from_odometry_and_acceleration() -> None:
    from geometry_msgs.msg import AccelWithCovarianceStamped

    from dima_ros.converters.inputs import EgoInputs, ego_inputs

    accel = AccelWithCovarianceStamped()
    accel.accel.accel.linear.x, accel.accel.accel.linear.y = 0.5, -0.25
    ego = ego_inputs(_odometry(), accel)
    assert isinstance(ego, EgoInputs)
    assert ego.status.shape == (4,) and ego.status.dtype == np.float32
    np.testing.assert_allclose(ego.status, [4.0, 0.5, -0.25, 0.1], rtol=1e-6)
    assert ego.pose.shape == (4, 4) and ego.pose.dtype == np.float64
    np.testing.assert_allclose(ego.pose[:3, 3], [10.0, -2.0, 0.5])
    np.testing.assert_allclose(ego.pose[:3, :3], [[0, -1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-12)  # yaw 90 deg
    # Without an acceleration input (inputs.use_acceleration false) the acceleration is zero.
    np.testing.assert_allclose(ego_inputs(_odometry(), None).status, [4.0, 0.0, 0.0, 0.1], rtol=1e-6)


def test_non_finite_odometry_is_refused_with_the_node_message() -> None:
    from geometry_msgs.msg import AccelWithCovarianceStamped

    from dima_core.runtime.input_error import InputError
    from dima_ros.converters.inputs import ego_inputs

    with pytest.raises(InputError, match=r"odometry/acceleration: non-finite ego status \(speed=nan") as err:
        ego_inputs(_odometry(speed=math.nan), None)
    assert err.value.kind == "odometry"
    accel = AccelWithCovarianceStamped()
    accel.accel.accel.linear.y = math.inf
    with pytest.raises(InputError, match="ay=inf"):
        ego_inputs(_odometry(), accel)
    for q in ((0.0, 0.0, 0.0, 0.0), (0.0, 0.0, math.nan, 1.0)):
        with pytest.raises(InputError, match="odometry pose: non-finite pose; frame refused") as err:
            ego_inputs(_odometry(quaternion=q), None)
        assert err.value.kind == "odometry"


def test_driving_command_value() -> None:
    from dima.msg import DrivingCommand
    from dima_ros.converters.inputs import driving_command

    assert driving_command(DrivingCommand(command=DrivingCommand.COMMAND_LEFT)) == 1
    assert isinstance(driving_command(DrivingCommand(command=2)), int)
