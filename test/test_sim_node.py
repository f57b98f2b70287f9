"""The closed-loop simulator node over real rclpy and DDS (dima_ros/sim_node.py).

- Lockstep, ``dima ros bringup --sim`` (the simulator and the torch planner node with the random weights of
  config/model/dima_cpu.yaml, one process, talking over DDS): the episode equals the Python loop
  ``ClosedLoopEpisode.run(PlannerPolicy(...))`` on the same backend config, seed and scenario: ego poses within 1e-6,
  the same plans and the same metrics.
- Trajectories that cannot be executed (NaN, wrong number of points, another frame, a stamp the simulator never
  published, wrong timing), sent over DDS by a stand-in planner, are refused, counted and diagnosed, and the
  episode still runs to its end; a frame without any answer is a counted missed plan.
- Real time: the stand-in planner answers late; the plans are applied, their latency counts, the episode ends.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ros_helpers.testing import REPO_ROOT, wait_for

MODEL_CONFIG = "config/model/dima_cpu.yaml"
SCENARIO, SEED = "follow", 3


def _sim_config(tmp_path: Path, seconds: float = 4.0) -> Path:
    """The shipped world with small cameras and a short episode (8 keyframes: 7 planning frames)."""
    path = tmp_path / "sim.yaml"
    path.write_text(
        f"world_config: config/synth_drive.yaml\ncamera_width: 160\ncamera_height: 90\n"
        f"planning_hz: 2.0\nsim_hz: 10.0\nepisode_seconds: {seconds}\n"
    )
    return path


def assert_same(got: Any, want: Any, where: str = "metrics") -> None:
    """Equal JSON values, floats to 1e-9 (relative): poses within 1e-6 leave the metrics that close or equal."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), f"{where}: keys {sorted(got)} != {sorted(want)}"
        for key in want:
            assert_same(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list):
        assert isinstance(got, list) and len(got) == len(want), f"{where}: {got} != {want}"
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            assert_same(g, w, f"{where}[{i}]")
    elif isinstance(want, float) and not isinstance(got, bool):
        assert got == pytest.approx(want, rel=1e-9, abs=1e-12), f"{where}: {got} != {want}"
    else:
        assert got == want, f"{where}: {got!r} != {want!r}"


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def test_sim_node_in_the_launch_spec() -> None:
    """The simulator node comes from the shared spec with typed launch overrides and the planner's rig calibration."""
    import ast

    from dima_core.runtime.sim_node_config import planner_calibration_overrides
    from dima_ros.launch_spec import launch_parameter_overrides, node_spec

    sim = node_spec("sim")
    assert sim.ends_launch and ("~/input/trajectory", "/dima_planner/output/trajectory") in sim.remappings
    assert launch_parameter_overrides(
        sim, {"scenarios": "cruise, follow", "episodes": "2", "seconds": "8", "timing": "realtime"}
    ) == {"scenarios": ["cruise", "follow"], "episodes": 2, "episode_seconds": 8.0, "timing": "realtime"}
    with pytest.raises(ValueError, match="episodes:='two' is not an int"):
        launch_parameter_overrides(sim, {"episodes": "two"})
    planner = node_spec("planner")
    assert launch_parameter_overrides(planner, {"with_sim": "false"}) == {}
    with_sim = launch_parameter_overrides(planner, {"with_sim": "true"})
    assert with_sim == planner_calibration_overrides() and len(with_sim) == 6
    source = (REPO_ROOT / "launch" / "sim_closed_loop.launch.py").read_text()
    tree = ast.parse(source)
    assert all(
        getattr(n, "module", "") == "__future__" for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))
    )
    assert any(isinstance(n, ast.ImportFrom) and n.module == "dima_ros.launch_spec" for n in ast.walk(tree))


@pytest.mark.ros
@pytest.mark.slow
def test_lockstep_over_dds_equals_the_python_loop(tmp_path: Path) -> None:
    from ros_helpers.testing import require_ros

    require_ros()
    sim_yaml = _sim_config(tmp_path)
    out = tmp_path / "out"
    log_path = tmp_path / "bringup.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dima_core.cli",
                "ros",
                "bringup",
                "--config",
                "config/bringup.yaml",
                "--sim",
                "--scenarios",
                SCENARIO,
                "--episodes",
                "1",
                "--seed",
                str(SEED),
                "--sim-config",
                str(sim_yaml),
                "--sim-out",
                str(out),
                "--set",
                "sim.baselines=[expert]",
                "--set",
                "planner.model.backend=torch",
                "--set",
                f"planner.model.model_config_path={MODEL_CONFIG}",
                "--set",
                "planner.model.threads=1",
                "--set",
                "planner.model.warmup_iters=1",
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        # The Python loop meanwhile (the ROS side mostly waits for discovery and the planner's load).
        import torch

        from dima_core.eval.closed_loop import score_episode
        from dima_core.export.backends import BackendConfig
        from dima_core.runtime.sim_node_config import SimNodeConfig, load_sim_setup
        from dima_core.sim.episode import ClosedLoopEpisode
        from dima_core.sim.policies import ExpertPolicy, PlannerPolicy

        torch.set_num_threads(1)
        setup = load_sim_setup(SimNodeConfig(scenarios=[SCENARIO], seed=SEED, sim_config=str(sim_yaml)))
        episode = ClosedLoopEpisode(setup.world_cfg, setup.sim_cfg, SCENARIO, SEED)
        expert_log = episode.run(ExpertPolicy())
        reference = score_episode(expert_log)
        expert = score_episode(expert_log, reference)
        policy = PlannerPolicy(
            BackendConfig(backend="torch", model_config=str(REPO_ROOT / MODEL_CONFIG), seed=0, threads=1),
            name="planner (ROS)",
        )
        py_log = episode.run(policy)
        py = score_episode(py_log, reference)
        rc = proc.wait(240)
    finally:
        _stop(proc)
    output = log_path.read_text(errors="replace")
    assert rc == 0, output
    assert "| planner (ROS) | follow |" in output and "| expert | follow |" in output, output

    ros_log = np.load(next((out / "episodes").glob("follow_s3_planner*.npz")))
    assert ros_log["ego"].shape == py_log.ego.shape
    np.testing.assert_allclose(ros_log["ego"], py_log.ego, atol=1e-6, rtol=0)
    assert len(ros_log["plan_times"]) == len(py_log.plans) == 7
    np.testing.assert_allclose(ros_log["plans_ego"], np.array([p.trajectory_ego for p in py_log.plans]), atol=1e-9)
    assert int(ros_log["rejected_plans"]) == 0

    report = json.loads((out / "report.json").read_text())
    by_policy = {e["policy"]: e for e in report["episodes"]}
    expected = json.loads(json.dumps(py.to_dict()))  # the report's JSON form (None for non-finite values)
    assert_same(by_policy["planner (ROS)"], expected)
    assert_same(by_policy["expert"], json.loads(json.dumps(expert.to_dict())))
    stats = report["ros"]["episodes"][0]
    assert (stats["frames"], stats["applied"], stats["missed"], stats["refused"]) == (7, 7, 0, 0), stats


# ------------------------------------------------------------------------------------------------- stand-in planner


class StandInPlanner:
    """Subscribes to every planner input of the simulator; answers each camera frame through ``answer(index,
    stamp_ns)`` -> list of (stamp_ns, positions (N, 2), frame_id, step_s) trajectories to send (empty: none).

    Probe frames (stamped at whole seconds from the simulator's clock start; the test's episode_gap_s keeps the
    episode's frames off whole seconds) get a good plan and are not counted.
    """

    def __init__(self, node: Any, answer: Callable[[int, int], list], delay_s: float = 0.0) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from nav_msgs.msg import Odometry
        from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CompressedImage
        from std_msgs.msg import String

        from dima.msg import DrivingCommand, Trajectory
        from dima_core.bag.topics import COMMAND_TOPIC, ODOM_TOPIC, image_topic
        from dima_core.constants import CAMERA_NAMES

        self.node, self.answer, self.delay_s = node, answer, delay_s
        self.lock = threading.Lock()
        self.frames: list[int] = []
        self.metrics: list[dict] = []
        self.diagnostics: list[str] = []
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        best_effort = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT)
        for cam in CAMERA_NAMES:
            node.create_subscription(CompressedImage, image_topic(cam), lambda msg: None, best_effort)
        node.create_subscription(Odometry, ODOM_TOPIC, lambda msg: None, qos)
        node.create_subscription(DrivingCommand, COMMAND_TOPIC, self._on_command, qos)
        self.pub = node.create_publisher(Trajectory, "/stand_in/trajectory", qos)
        metrics_qos = QoSProfile(
            depth=100, reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.TRANSIENT_LOCAL
        )
        node.create_subscription(
            String,
            "/dima_sim/output/episode_metrics",
            lambda msg: self._locked(self.metrics.append, json.loads(msg.data)),
            metrics_qos,
        )
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, QoSProfile(depth=100))

    def _locked(self, fn: Callable, *args: Any) -> None:
        with self.lock:
            fn(*args)

    def _on_diag(self, msg: Any) -> None:
        with self.lock:
            self.diagnostics += [s.message for s in msg.status if "dima_sim" in s.name]

    def _on_command(self, msg: Any) -> None:
        from dima_ros.sim_node import CLOCK_START_NS, PROBE_INTERVAL_S

        ns = msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec
        probe_ns = int(PROBE_INTERVAL_S * 1e9)
        if (ns - CLOCK_START_NS) % probe_ns == 0:
            sends = [(ns, straight(), "base_link", 0.5)]
        else:
            with self.lock:
                index = len(self.frames)
                self.frames.append(ns)
            sends = self.answer(index, ns)
        if self.delay_s:  # a planner that takes delay_s per frame (publishing from another thread is fine)
            threading.Timer(self.delay_s, self._send, args=(sends,)).start()
        else:
            self._send(sends)

    def _send(self, sends: list) -> None:
        from builtin_interfaces.msg import Time

        from dima.msg import Trajectory
        from dima_ros.converters.trajectory import trajectory_messages

        for ns, xy, frame_id, step in sends:
            traj, _ = trajectory_messages(
                Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000),
                frame_id,
                2,
                Trajectory.MODE_VISION,
                np.asarray(xy, np.float64),
                None,
                1.0,
            )
            for i, point in enumerate(traj.points):  # trajectory_messages times the points 0.5 s apart
                t = (i + 1) * step
                point.time_from_start.sec, point.time_from_start.nanosec = int(t), int(round((t - int(t)) * 1e9))
            self.pub.publish(traj)

    def messages(self) -> list[str]:
        with self.lock:
            return list(self.diagnostics)


def straight(speed: float = 2.0, points: int = 6) -> np.ndarray:
    t = 0.5 * np.arange(1, points + 1)
    return np.stack([speed * t, np.zeros_like(t)], axis=1)


def _sim_node(
    tmp_path: Path, sim_yaml: Path, timing: str, plan_timeout_s: float = 3.0
) -> tuple[subprocess.Popen, Path]:
    log_path = tmp_path / f"sim_{timing}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "dima_ros.sim_node",
                "--ros-args",
                "-r",
                "__node:=dima_sim",
                "--params-file",
                "config/sim_node.yaml",
                "-p",
                f"scenarios:=[{SCENARIO}]",
                "-p",
                f"seed:={SEED}",
                "-p",
                f"sim_config:={sim_yaml}",
                "-p",
                "baselines:=[expert]",
                "-p",
                f"output_dir:={tmp_path / 'out'}",
                "-p",
                f"timing:={timing}",
                "-p",
                f"plan_timeout_s:={plan_timeout_s}",
                "-p",
                "episode_gap_s:=0.25",
                "-p",
                "connect_timeout_s:=60.0",
                "-r",
                "~/input/trajectory:=/stand_in/trajectory",
            ],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            start_new_session=True,
        )
    return proc, log_path


def _run_with_stand_in(
    tmp_path: Path,
    ros_node,
    spin_in_background,
    timing: str,
    answer: Callable,
    delay_s: float = 0.0,
    seconds: float = 4.0,
) -> tuple[StandInPlanner, dict, str]:
    planner = StandInPlanner(ros_node("stand_in_planner"), answer, delay_s)
    spin_in_background(planner.node)
    proc, log_path = _sim_node(tmp_path, _sim_config(tmp_path, seconds), timing)
    try:
        rc: int | None = proc.wait(180)  # shutdown_when_done: the node ends itself after the episode
    except subprocess.TimeoutExpired:
        rc = None
    finally:
        _stop(proc)
    output = log_path.read_text(errors="replace")
    assert rc == 0, output
    assert wait_for(lambda: bool(planner.metrics), 10.0), output
    return planner, planner.metrics[0], output


@pytest.mark.ros
def test_bad_trajectories_are_refused_counted_and_diagnosed(tmp_path: Path, ros_node, spin_in_background) -> None:
    nan = straight()
    nan[2, 1] = math.nan

    def answer(index: int, ns: int) -> list:
        return (
            [
                [(ns, nan, "base_link", 0.5)],  # non-finite
                [(ns, straight(points=5), "base_link", 0.5)],  # 5 waypoints
                [(ns, straight(), "map", 0.5)],  # another frame
                [(ns + 1, straight(), "base_link", 0.5)],  # a stamp never published; the frame itself gets nothing
                [(ns, straight(), "base_link", 0.1)],  # waypoints 0.1 s apart
            ][index]
            if index < 5
            else [(ns, straight(), "base_link", 0.5)]
        )

    planner, result, output = _run_with_stand_in(tmp_path, ros_node, spin_in_background, "lockstep", answer)
    ros = result["ros"]
    assert len(planner.frames) == ros["frames"] == 7, output
    assert (
        ros["refused"],
        ros["refused_frame"],
        ros["unknown_stamp"],
        ros["missed"],
        ros["refused_timing"],
        ros["applied"],
    ) == (2, 1, 1, 1, 1, 2), ros
    assert result["metrics"]["rejected_plans"] == 2  # the episode's own count of refused plans
    assert result["metrics"]["num_steps"] == 36  # the episode ran to its end
    joined = "\n".join(planner.messages())
    for expected in (
        "non-finite",
        "shape (5, 2), expected (6, 2)",
        "frame 'map', expected 'base_link'",
        "a frame the simulator did not publish",
        "waypoints at [0.1, 0.2",
        "no trajectory for frame",
    ):
        assert expected in joined, f"{expected!r} not diagnosed:\n{joined}"
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["ros"]["episodes"][0]["refused"] == 2 and len(report["episodes"]) == 2  # expert + ROS planner


@pytest.mark.ros
def test_realtime_applies_late_plans(tmp_path: Path, ros_node, spin_in_background) -> None:
    """The stand-in answers 0.3 s after each frame: the simulation does not wait, the plans land late."""
    planner, result, output = _run_with_stand_in(
        tmp_path,
        ros_node,
        spin_in_background,
        "realtime",
        lambda index, ns: [(ns, straight(), "base_link", 0.5)],
        delay_s=0.3,
    )
    ros = result["ros"]
    assert ros["frames"] == 7 and ros["refused"] == 0, ros
    # Every frame but possibly the last (its plan may arrive after the episode's end) is applied, >= 0.3 s late.
    assert ros["applied"] >= 6 and ros["applied"] + ros["missed"] == 7, ros
    assert ros["latency_ms_p50"] >= 300.0, ros
    assert result["metrics"]["num_steps"] == 36
    assert 3.0 <= ros["wall_s"] < 20.0, ros
