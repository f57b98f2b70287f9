"""Helpers for the planner node tests: a micro ONNX model, parameter files, and a frame publisher (test process).

The node runs in its own process (``python -m dima_ros.planner_node``, real DDS); the test process publishes the six
cameras, CameraInfo, odometry, acceleration and command with chosen stamps and records outputs and diagnostics.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from ros_helpers.testing import REPO_ROOT, wait_for

IMAGE_W, IMAGE_H = 160, 90
NS = 1_000_000_000


def export_micro_onnx(root: Path) -> Path:
    """A random-weight micro planner checkpoint exported with `dima export --format onnx` (the real path)."""
    import torch

    from dima_core.cli import main as dima_main
    from dima_core.config import config_to_dict
    from dima_core.export.planner_loading import load_planner
    from dima_core.io.checkpoint import save_checkpoint
    from training_fixtures import write_micro_model_config

    torch.set_num_threads(1)
    loaded = load_planner(model_config=write_micro_model_config(root), seed=3)
    ckpt = save_checkpoint(
        {
            "stage": 1,
            "epoch": 0,
            "epoch_step": 0,
            "step": 1,
            "model": loaded.model.state_dict(),
            "optimizer": {},
            "scheduler": {},
            "scaler": {},
            "rng": [],
            "sampler": {},
            "config": {},
            "model_config": config_to_dict(loaded.config),
        },
        root / "run" / "checkpoint_step00000001.pt",
    )
    out = root / "models"
    # --with-beam as the demo deploys it: the node also publishes BeamTokens (with the ego feature) for the MLLM node
    assert dima_main(["export", "--format", "onnx", "--checkpoint", str(ckpt), "--out", str(out), "--with-beam"]) == 0
    return next(out.glob("*.onnx"))


def node_parameters(onnx: Path, **overrides: Any) -> dict[str, Any]:
    """The shipped config/planner_node.yaml values with the test model and ``overrides`` (nested dicts)."""
    from dima_ros.parameters import flatten_parameters, load_parameter_file

    flat = load_parameter_file(REPO_ROOT / "config" / "planner_node.yaml", "planner")
    flat["model.onnx_path"] = str(onnx)
    flat["model.warmup_iters"] = 1
    flat["model.threads"] = 1
    flat["output.processing_time_budget_ms"] = 5000.0
    flat.update(flatten_parameters(overrides))
    return flat


def write_params(path: Path, flat: dict[str, Any]) -> Path:
    from dima_ros.parameters import nest_parameters, write_parameter_file

    return write_parameter_file(path, nest_parameters(flat))


class NodeProcess:
    """``python -m dima_ros.planner_node --ros-args --params-file F -r __node:=NAME`` in its own process group."""

    def __init__(self, params: Path, name: str, log_dir: Path) -> None:
        self.name = name
        self.log = log_dir / f"{name}.{time.monotonic_ns()}.log"
        self._fh = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "dima_ros.planner_node",
                "--ros-args",
                "--params-file",
                str(params),
                "-r",
                f"__node:={name}",
            ],
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
            start_new_session=True,
        )

    def output(self) -> str:
        self._fh.flush()
        return self.log.read_text(errors="replace")

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig in (signal.SIGINT, signal.SIGKILL):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                if self.wait(5.0) is not None:
                    break
        self._fh.close()


def jpeg(seed: int) -> bytes:
    import cv2

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, (IMAGE_H, IMAGE_W, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".jpg", image)
    assert ok
    return buf.tobytes()


class FrameRig:
    """Publishers for every input of a node named ``node_name`` and recorders of its outputs, in this process."""

    def __init__(self, node, node_name: str, raw: bool = False) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import AccelWithCovarianceStamped
        from nav_msgs.msg import Odometry
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        from dima.msg import BeamTokens, DrivingCommand, Trajectory
        from dima_core.constants import CAMERA_NAMES

        self.node = node
        self.raw = raw
        base = f"/{node_name}"
        q = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.cams = CAMERA_NAMES
        img_type = Image if raw else CompressedImage
        self.pub_img = {c: node.create_publisher(img_type, f"{base}/input/camera/{c}/image", q) for c in CAMERA_NAMES}
        self.pub_info = {
            c: node.create_publisher(CameraInfo, f"{base}/input/camera/{c}/camera_info", q) for c in CAMERA_NAMES
        }
        self.pub_odom = node.create_publisher(Odometry, f"{base}/input/odometry", q)
        self.pub_accel = node.create_publisher(AccelWithCovarianceStamped, f"{base}/input/acceleration", q)
        self.pub_cmd = node.create_publisher(DrivingCommand, f"{base}/input/command", q)
        self.lock = threading.Lock()
        self.trajectories: list[Any] = []
        self.beam_tokens: list[Any] = []
        self.diagnostics: list[tuple[int, str, str]] = []  # (level, name, message)
        self.traj_topic = f"{base}/output/trajectory"
        node.create_subscription(Trajectory, self.traj_topic, self._on_traj, q)
        node.create_subscription(BeamTokens, f"{base}/output/beam_tokens", self._on_beam, q)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, QoSProfile(depth=100))

    def _on_traj(self, msg) -> None:
        with self.lock:
            self.trajectories.append(msg)

    def _on_beam(self, msg) -> None:
        with self.lock:
            self.beam_tokens.append(msg)

    def _on_diag(self, msg) -> None:
        with self.lock:
            for s in msg.status:
                self.diagnostics.append(
                    (
                        int.from_bytes(s.level, "little") if isinstance(s.level, bytes) else int(s.level),
                        s.name,
                        s.message,
                    )
                )

    def connected(self) -> bool:
        pubs = (
            list(self.pub_img.values()) + list(self.pub_info.values()) + [self.pub_odom, self.pub_accel, self.pub_cmd]
        )
        return all(p.get_subscription_count() >= 1 for p in pubs) and self.node.count_publishers(self.traj_topic) >= 1

    def stamps(self) -> list[int]:
        with self.lock:
            return [m.header.stamp.sec * NS + m.header.stamp.nanosec for m in self.trajectories]

    def messages(self) -> list[str]:
        with self.lock:
            return [m for _, _, m in self.diagnostics]

    def publish_frame(
        self,
        t_ns: int,
        skip: tuple[str, ...] = (),
        corrupt: tuple[str, ...] = (),
        speed: float = 5.0,
        encoding: str = "rgb8",
        command: int = 2,
        formats: dict[str, str] | None = None,
    ) -> None:
        """All inputs of one frame stamped ``t_ns`` (CAM_FRONT last, as a driver-agnostic worst case)."""
        self.publish_aux(t_ns, speed=speed, command=command)
        self.publish_cameras(t_ns, skip=skip, corrupt=corrupt, encoding=encoding, formats=formats)

    def publish_aux(self, t_ns: int, speed: float = 5.0, command: int = 2) -> None:
        """Odometry, acceleration and driving command stamped ``t_ns``."""
        from geometry_msgs.msg import AccelWithCovarianceStamped
        from nav_msgs.msg import Odometry

        from dima.msg import DrivingCommand

        stamp = _stamp(t_ns)
        odom = Odometry()
        odom.header.stamp, odom.header.frame_id, odom.child_frame_id = stamp, "map", "base_link"
        odom.pose.pose.orientation.w = 1.0
        odom.twist.twist.linear.x = speed
        self.pub_odom.publish(odom)
        acc = AccelWithCovarianceStamped()
        acc.header.stamp, acc.header.frame_id = stamp, "base_link"
        self.pub_accel.publish(acc)
        cmd = DrivingCommand(command=command)
        cmd.header.stamp, cmd.header.frame_id = stamp, "base_link"
        self.pub_cmd.publish(cmd)

    def publish_cameras(
        self,
        t_ns: int,
        skip: tuple[str, ...] = (),
        corrupt: tuple[str, ...] = (),
        encoding: str = "rgb8",
        formats: dict[str, str] | None = None,
    ) -> None:
        """CameraInfo and images of the six cameras stamped ``t_ns`` (CAM_FRONT last); ``formats`` overrides the
        CompressedImage format of some cameras (their bytes stay JPEG)."""
        from sensor_msgs.msg import CameraInfo, CompressedImage, Image

        stamp = _stamp(t_ns)
        for cam in self.cams:
            info = CameraInfo()
            info.header.stamp, info.header.frame_id = stamp, cam
            info.width, info.height = IMAGE_W, IMAGE_H
            f = 1266.0 * IMAGE_W / 1600.0
            info.k = [f, 0.0, IMAGE_W / 2, 0.0, f, IMAGE_H / 2, 0.0, 0.0, 1.0]
            self.pub_info[cam].publish(info)
        order = [c for c in self.cams if c != "CAM_FRONT"] + ["CAM_FRONT"]
        for i, cam in enumerate(order):
            if cam in skip:
                continue
            if self.raw:
                msg = Image(height=IMAGE_H, width=IMAGE_W, encoding=encoding, step=IMAGE_W * 3)
                msg.data = np.random.default_rng(i).integers(0, 255, IMAGE_H * IMAGE_W * 3, dtype=np.uint8).tobytes()
            else:
                msg = CompressedImage(format=(formats or {}).get(cam, "jpeg"))
                msg.data = b"\xff\xd8 definitely not a jpeg" if cam in corrupt else jpeg(i)
            msg.header.stamp, msg.header.frame_id = stamp, cam
            self.pub_img[cam].publish(msg)
            time.sleep(0.005)


def _stamp(t_ns: int):
    from builtin_interfaces.msg import Time

    return Time(sec=t_ns // NS, nanosec=t_ns % NS)


def warm_up(rig: FrameRig, start_s: float, attempts: int = 20) -> list[int]:
    """Publish good frames 0.1 s apart until one is planned: best-effort camera readers drop frames sent before the
    node side has matched the writers, so the first frame after discovery may be lost (Autoware's node tests
    republish for the same reason). Returns the stamps published."""
    sent = []
    for i in range(attempts):
        t = seconds(start_s + 0.1 * i)
        rig.publish_frame(t, encoding="rgb8")
        sent.append(t)
        if wait_for(lambda: bool(rig.stamps()), 3.0):
            return sent
    raise AssertionError(f"no trajectory after {attempts} warm-up frames: {rig.messages()[-5:]}")


def wait_trajectory(rig: FrameRig, t_ns: int, timeout: float = 30.0) -> bool:
    return wait_for(lambda: t_ns in rig.stamps(), timeout)


def wait_diag(rig: FrameRig, text: str, timeout: float = 30.0) -> bool:
    return wait_for(lambda: any(text in m for m in rig.messages()), timeout)


def seconds(t: float) -> int:
    return int(round(t * NS))


__all__ = [
    "FrameRig",
    "NodeProcess",
    "export_micro_onnx",
    "jpeg",
    "node_parameters",
    "seconds",
    "wait_diag",
    "wait_trajectory",
    "warm_up",
    "write_params",
]
