"""The planner node in its own process (onnxruntime backend, micro model exported with `dima export`), fed over real
DDS from this process: a trajectory for every complete frame with the CAM_FRONT stamp; a missing camera, a corrupt
JPEG, a wrong encoding, JPEG bytes declared 'h264' or 'mono16; png', NaN odometry and a backwards timestamp each give
a diagnostic with the reason and no trajectory, and a later good frame still gives one; auxiliary inputs that are
late (wall time beyond max_wait) but still publishing complete their frame, while a frame whose auxiliary streams
went quiet is reported; bad parameters are refused at start and on set_parameters.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from planner_node_helpers import (
    FrameRig,
    NodeProcess,
    export_micro_onnx,
    node_parameters,
    seconds,
    wait_diag,
    wait_trajectory,
    warm_up,
    write_params,
)
from ros_helpers.testing import require_ros, wait_for

pytest.importorskip("onnxruntime")
START_TIMEOUT_S = 60.0


@pytest.fixture(scope="module", autouse=True)
def _ros_available():
    require_ros()


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory):
    return export_micro_onnx(tmp_path_factory.mktemp("planner_node"))


@pytest.fixture
def start_node(tmp_path):
    procs: list[NodeProcess] = []

    def start(name: str, **overrides) -> NodeProcess:
        params = write_params(tmp_path / f"{name}.yaml", node_parameters(overrides.pop("onnx"), **overrides))
        proc = NodeProcess(params, name, tmp_path)
        procs.append(proc)
        return proc

    yield start
    for p in procs:
        p.stop()


def _connect(rig: FrameRig, proc: NodeProcess) -> None:
    ok = wait_for(lambda: rig.connected() or proc.proc.poll() is not None, START_TIMEOUT_S)
    assert ok and proc.proc.poll() is None, f"node did not come up:\n{proc.output()}"


def _set_parameter(node, target: str, name: str, value):
    from rcl_interfaces.srv import SetParameters
    from rclpy.parameter import Parameter

    client = node.create_client(SetParameters, f"/{target}/set_parameters")
    assert client.wait_for_service(timeout_sec=20.0)
    future = client.call_async(SetParameters.Request(parameters=[Parameter(name, value=value).to_parameter_msg()]))
    assert wait_for(future.done, 20.0)
    return future.result().results[0]


def test_trajectories_faults_and_recovery(onnx_model, start_node, ros_node, spin_in_background):
    proc = start_node("planner_faults", onnx=onnx_model)
    node = ros_node("planner_feeder")
    rig = FrameRig(node, "planner_faults")
    spin_in_background(node)
    _connect(rig, proc)
    warm_up(rig, 8.0)
    n_warm = len(rig.stamps())

    def good(t: float) -> None:
        rig.publish_frame(seconds(t))
        assert wait_trajectory(rig, seconds(t)), (
            f"no trajectory for good frame {t}: {rig.messages()[-6:]}\n{proc.output()}"
        )

    good(10.0)
    good(10.5)
    msg = rig.trajectories[-1]
    assert msg.header.frame_id == "base_link" and msg.mode == "vision" and msg.command == 2
    assert len(msg.points) == 6 and msg.num_candidate_modes == 3 and len(msg.candidate_positions) == 36
    assert msg.points[0].time_from_start.nanosec == 500_000_000 and msg.points[-1].time_from_start.sec == 3
    # The scene encoding of the same frame, with the planner's ego feature for the MLLM node's DiMA-Dual.
    assert wait_for(lambda: any(b.header.stamp == msg.header.stamp for b in rig.beam_tokens), 10.0)
    beam = next(b for b in rig.beam_tokens if b.header.stamp == msg.header.stamp)
    assert beam.command == 2 and beam.bev_shape[1] == beam.ego_shape[1] > 0
    assert list(beam.plan_feature_shape) == [1, len(beam.plan_feature)] and len(beam.plan_feature) > 0
    assert np.isfinite(np.asarray(beam.plan_feature)).all()

    cases = [
        (11.0, dict(skip=("CAM_BACK",)), "missing camera CAM_BACK"),
        (12.0, dict(corrupt=("CAM_FRONT_LEFT",)), "CAM_FRONT_LEFT: corrupt or undecodable"),
        (13.0, dict(speed=float("nan")), "non-finite ego status"),
    ]
    for t, kwargs, reason in cases:
        rig.publish_frame(seconds(t), **kwargs)
        assert wait_diag(rig, reason), f"no diagnostic '{reason}': {rig.messages()[-5:]}\n{proc.output()}"
        good(t + 0.5)  # the node keeps running and recovers
        assert seconds(t) not in rig.stamps()

    # Backwards: a frame stamped before the last good one is refused; the next newer frame is planned.
    rig.publish_frame(seconds(13.2))
    assert wait_diag(rig, "backwards timestamp on CAM_FRONT"), rig.messages()[-5:]
    good(14.0)
    assert seconds(13.2) not in rig.stamps()
    expected = [seconds(t) for t in (10.0, 10.5, 11.5, 12.5, 13.5, 14.0)]
    assert rig.stamps()[n_warm:] == expected  # exactly one per complete, valid frame, in order

    # set_parameters: out of range and wrong choice refused with a reason; a read-only one refused; a good one taken.
    bad = _set_parameter(node, "planner_faults", "sync.tolerance_ms", -5.0)
    assert not bad.successful and "sync.tolerance_ms" in bad.reason
    bad = _set_parameter(node, "planner_faults", "sync.command_policy", "sometimes")
    assert not bad.successful and "command_policy" in bad.reason
    ro = _set_parameter(node, "planner_faults", "model.backend", "torch")
    assert not ro.successful
    ok = _set_parameter(node, "planner_faults", "sync.tolerance_ms", 80.0)
    assert ok.successful, ok.reason
    good(15.0)

    # JPEG bytes under a format that says something else: refused with the format named, never decoded by guessing.
    n_before = len(rig.stamps())
    for t, fmt in ((16.0, "h264"), (17.0, "mono16; png")):
        rig.publish_frame(seconds(t), formats={"CAM_BACK_RIGHT": fmt})
        reason = f"encoding error: CAM_BACK_RIGHT: CompressedImage format '{fmt}'"
        assert wait_diag(rig, reason), f"no diagnostic '{reason}': {rig.messages()[-5:]}\n{proc.output()}"
        good(t + 0.5)
    assert rig.stamps()[n_before:] == [seconds(16.5), seconds(17.5)]
    assert proc.proc.poll() is None


def test_wrong_raw_encoding_is_reported_and_rgb8_works(onnx_model, start_node, ros_node, spin_in_background):
    proc = start_node("planner_raw", onnx=onnx_model, inputs={"image_transport": "raw"})
    node = ros_node("planner_raw_feeder")
    rig = FrameRig(node, "planner_raw", raw=True)
    spin_in_background(node)
    _connect(rig, proc)
    warm_up(rig, 18.0)
    n_warm = len(rig.stamps())
    rig.publish_frame(seconds(20.0), encoding="bayer_rggb8")
    assert wait_diag(rig, "unsupported image encoding 'bayer_rggb8'"), rig.messages()[-5:]
    rig.publish_frame(seconds(20.5), encoding="bgr8")
    assert wait_trajectory(rig, seconds(20.5)), proc.output()
    assert rig.stamps()[n_warm:] == [seconds(20.5)]


def test_late_aux_of_a_live_stream_is_waited_for_and_a_dead_one_reported(
    onnx_model, start_node, ros_node, spin_in_background
):
    """Default sync budget (max_wait 300 ms): odometry/acceleration/command still publishing, but stamped behind the
    cameras for 600 ms of wall time, complete the frame when they catch up; a frame whose aux streams then stop is
    reported (stale odometry) and the next good frame is planned."""
    proc = start_node("planner_late_aux", onnx=onnx_model)
    node = ros_node("planner_late_aux_feeder")
    rig = FrameRig(node, "planner_late_aux")
    spin_in_background(node)
    _connect(rig, proc)
    warm_up(rig, 30.0)

    t = seconds(32.0)
    rig.publish_aux(t - seconds(0.5))
    rig.publish_cameras(t)
    for k in range(1, 7):  # a lagging but live stream: 100 ms apart, stamps still 200+ ms behind CAM_FRONT
        time.sleep(0.1)
        rig.publish_aux(t - seconds(0.5) + k * seconds(0.05))
    assert t not in rig.stamps() and not any(f"frame {t}:" in m for m in rig.messages()), rig.messages()[-3:]
    rig.publish_aux(t)  # caught up, more than max_wait after the cameras
    assert wait_trajectory(rig, t), f"late aux frame not planned: {rig.messages()[-4:]}\n{proc.output()}"

    t2 = seconds(33.0)
    rig.publish_cameras(t2)  # the aux streams go quiet
    assert wait_diag(rig, f"no trajectory for frame {t2}: stale odometry", timeout=10.0), rig.messages()[-4:]
    rig.publish_frame(seconds(34.0))
    assert wait_trajectory(rig, seconds(34.0)), proc.output()
    assert t2 not in rig.stamps()


@pytest.mark.parametrize(
    "override, expected",
    [
        ({"sync": {"tolerance_ms": -5.0}}, "sync.tolerance_ms"),
        ({"sync": {"tolerence_ms": 50.0}}, "unknown parameter(s) ['sync.tolerence_ms']"),
        ({"model": {"backend": "tensorflow"}}, "model.backend"),
        ({"calibration": {"CAM_BACK": {"cam_to_ego": [1.0, 2.0]}}}, "cam_to_ego needs 16 values"),
        ({"preprocess": {"interpolation": "linear"}}, "jpeg_max_reduction 8 needs interpolation area"),
        ({"preprocess": {"jpeg_max_reduction": 3}}, "jpeg_max_reduction must be 1, 2, 4 or 8"),
    ],
)
def test_bad_parameters_refused_at_start(onnx_model, rclpy_init, override, expected):
    """In-process (same code path as the executable, without paying a process start per case)."""
    from rclpy.parameter import Parameter

    from dima_ros.parameters import ParameterConfigError
    from dima_ros.planner_node import PlannerNode

    flat = node_parameters(onnx_model, **override)
    with pytest.raises(ParameterConfigError) as err:
        PlannerNode("planner_bad", parameter_overrides=[Parameter(k, value=v) for k, v in flat.items()])
    assert expected in str(err.value)


def test_missing_model_refused_at_start(onnx_model, start_node, tmp_path):
    proc = start_node("planner_nomodel", onnx=tmp_path / "absent.onnx")
    rc = proc.wait(START_TIMEOUT_S)  # the executable: one clear line, exit status 2
    assert rc == 2 and "cannot start" in proc.output() and "absent.onnx" in proc.output(), proc.output()
