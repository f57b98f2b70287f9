"""Preprocessing parity with the training data path (same JPEG -> same tensors), decoding errors, ego status
validation, backend input assembly, and postprocessing of the selected trajectory."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from dima_core.data.config import DataConfig
from dima_core.data.dataset import load_image, prepare_image, scale_intrinsic
from dima_core.export.io_spec import TensorSpec
from dima_core.runtime.postprocess import decode_agents, select_trajectory, trajectory_points
from dima_core.runtime.preprocess import (
    CameraModel,
    InputError,
    PreprocessSettings,
    build_inputs,
    camera_tensors,
    decode_compressed,
    decode_raw,
    ego_status_vector,
)


def test_same_jpeg_gives_the_training_tensors(tmp_path):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (225, 400, 3), dtype=np.uint8)
    path = tmp_path / "cam.jpg"
    assert cv2.imwrite(str(path), image)
    cfg = DataConfig(image_size=(144, 256))
    k = np.array([[316.0, 0, 200.0], [0, 316.0, 112.5], [0, 0, 1]])
    # training: the dataset's functions on the file
    ref, sx, sy = prepare_image(load_image(path), cfg.image_size, cfg.image_mean, cfg.image_std)
    ref_k = scale_intrinsic(k, sx, sy)
    # node: the same bytes as a CompressedImage payload
    decoded = decode_compressed(path.read_bytes(), "jpeg", "CAM_FRONT")
    cam = CameraModel(k, 400, 225, np.eye(4))
    imgs, intr, c2e = camera_tensors([decoded], [cam], PreprocessSettings((256, 144), cfg.interpolation,
                                                                            cfg.image_mean, cfg.image_std),
                                     ["CAM_FRONT"])
    np.testing.assert_array_equal(imgs[0], ref)
    np.testing.assert_allclose(intr[0], ref_k.astype(np.float32))
    assert imgs.dtype == np.float32 and imgs.shape == (1, 3, 144, 256) and 0.0 <= imgs.min() and imgs.max() <= 1.0


def test_decoding_errors_are_clear():
    with pytest.raises(InputError, match="corrupt or undecodable") as err:
        decode_compressed(b"\xff\xd8garbage", "jpeg", "CAM_BACK")
    assert err.value.kind == "decode"
    with pytest.raises(InputError, match="unsupported image encoding 'mono8'"):
        decode_raw("mono8", 2, 2, 2, bytes(4))
    with pytest.raises(InputError, match="bytes of data"):
        decode_raw("rgb8", 2, 2, 6, bytes(5))
    bgr = np.arange(2 * 2 * 3, dtype=np.uint8).reshape(2, 2, 3)
    np.testing.assert_array_equal(decode_raw("bgr8", 2, 2, 6, bgr.tobytes()), bgr[:, :, ::-1])
    np.testing.assert_array_equal(decode_raw("rgb8", 2, 2, 6, bgr.tobytes()), bgr)


def test_calibration_size_mismatch_and_nan_odometry_refused():
    cam = CameraModel(np.eye(3) * 100, 400, 225, np.eye(4))
    with pytest.raises(InputError, match="calibration is for 400x225"):
        camera_tensors([np.zeros((90, 160, 3), np.uint8)], [cam], PreprocessSettings((64, 32)), ["CAM_FRONT"])
    with pytest.raises(InputError, match="non-finite ego status") as err:
        ego_status_vector(float("nan"), 0.0, 0.0, 0.1)
    assert err.value.kind == "odometry"
    with pytest.raises(InputError, match="invalid calibration"):
        CameraModel.from_lists([float("nan")] * 9, 10, 10, np.eye(4).reshape(-1))


def test_build_inputs_follows_the_model_interface():
    specs = (TensorSpec("images", (1, 6, 3, 4, 8), "float32"), TensorSpec("command", (1,), "int64"))
    out = build_inputs(specs, np.zeros((6, 3, 4, 8), np.float32), np.zeros((6, 3, 3)), np.zeros((6, 4, 4)),
                       np.zeros(4), 1)
    assert list(out) == ["images", "command"] and out["command"].tolist() == [1]
    with pytest.raises(InputError, match="driving command 7"):
        build_inputs(specs, np.zeros((6, 3, 4, 8)), np.zeros((6, 3, 3)), np.zeros((6, 4, 4)), np.zeros(4), 7)


def test_postprocess_selects_the_command_mode_and_derives_yaw_and_speed():
    modes = np.zeros((1, 3, 6, 2))
    modes[0, 1] = [[1.0 * (i + 1), 1.0 * (i + 1)] for i in range(6)]  # left: 45 degrees, sqrt(2) m per 0.5 s
    selected, candidates = select_trajectory({"trajectories": modes}, 1)
    assert candidates.shape == (3, 6, 2)
    pts = trajectory_points(selected)
    assert [p.time_from_start_s for p in pts] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    assert all(math.isclose(p.yaw, math.pi / 4) and math.isclose(p.velocity_mps, 2 * math.sqrt(2)) for p in pts)
    still = trajectory_points(np.zeros((6, 2)))
    assert all(p.yaw == 0.0 and p.velocity_mps == 0.0 for p in still)
    with pytest.raises(ValueError, match="non-finite"):
        select_trajectory({"trajectories": np.full((1, 3, 6, 2), np.nan)}, 0)
    dets = decode_agents({"agent_boxes": np.ones((1, 2, 7)), "agent_logits": np.array([[[5.0, -5], [-5.0, -5]]])},
                         0.5)
    assert len(dets) == 1 and dets[0].label == 0
