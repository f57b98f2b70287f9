"""ROS overhead of the planner node, measured over real DDS (the ``ros`` pipeline of ``dima bench latency``).

The real planner node (:mod:`dima_ros.planner_node`, started as its own process exactly as ``ros2 run`` /
``dima ros bringup`` would, with the shipped ``config/planner_node.yaml`` and only the model parameters changed) is
fed by a publisher node in a separate process at a fixed rate: six ``sensor_msgs/CompressedImage`` JPEG cameras
with their ``CameraInfo`` (the node's default ``calibration.source: camera_info``), odometry, acceleration and the
driving command, all stamped with the wall time at which the frame's publishing starts (its "capture" time). The
same publisher node records per frame:

- **pipeline latency**: trajectory received here (wall clock) minus the frame stamp: serialisation and DDS transport
  of the six JPEGs, the node's callbacks and synchroniser, decode + preprocess + model + publish in its worker, DDS
  transport of the trajectory and this subscriber's callback;
- **input latency**: the node's clock when its worker starts on the frame minus the stamp (publishing, transport,
  callbacks and synchronisation: the input side);
- **node latency**: the node's own ``~/debug/pipeline_latency_ms`` (its clock at the end of processing, after all
  its outputs are published, minus the stamp);
- **processing time**: the node's ``~/debug/processing_time_ms`` (decode + preprocess + model + publish);
- **model latency**: the backend call alone (``backend.infer``);
- **ROS overhead** = pipeline latency - model latency of the same frame.

The node's four numbers are read from its per-frame ``/diagnostics`` inference status, which carries the values it
publishes on the two debug topics plus the input and model times, keyed by the frame stamp: the debug topics are plain
``std_msgs/Float64`` without a stamp, and pairing by arrival order would silently shift every value by one after a
single lost message.

Three processes: the node, the feeder (``python -m benchmarks.pipeline FEEDER.json OUT.json``: publisher, recorder)
and the caller, which only orchestrates (parameter file, DDS profile, start, watch, stop) and never initialises
rclpy, so the middleware settings of both ROS processes are exactly the ones given here. All run on one host and ROS
time is the system time (``use_sim_time`` is off): frame stamps and arrival times are on one clock. Frames the node
drops because it is still busy (a fixed rate faster than the model) get no trajectory and are counted, not timed.
No model logic lives here: the model is whatever the node loads.

DDS: six full-size JPEGs are ~1.2 MB per frame. Fast DDS's default shared-memory segment (512 KiB per participant)
cannot hold one frame, so samples are overwritten before the reader takes them: best-effort camera frames are lost
and reliable odometry/command samples are only repaired by the writer's next heartbeat, seconds later. The bench
therefore runs both processes with ``config/fastdds_large_data.xml`` (a 16 MiB segment) unless told otherwise
(``dds_profile=None`` keeps the middleware defaults, to measure exactly that loss); a vehicle with full-size
cameras needs the same (docs/planner_node.md, Transport).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dima_core.constants import CAMERA_NAMES
from dima_ros.launch_spec import node_spec, params_path, repository_root

log = logging.getLogger(__name__)

NODE_NAME = "dima_bench_planner"
# Full-size nuScenes camera (what a vehicle's driver publishes); the node resizes to the model's input itself.
DEFAULT_IMAGE_SIZE = (1600, 900)
# Fast DDS profile with a shared-memory segment large enough for six full-size JPEGs (see the module docstring).
DEFAULT_DDS_PROFILE = repository_root() / "config" / "fastdds_large_data.xml"


class RosBenchError(RuntimeError):
    """The measurement could not run (node failed to start, no trajectory in time); the message says why."""


@dataclass
class RosBenchSettings:
    """What to measure: the backend the node loads and how the frames are published."""

    backend: str  # torch | onnxruntime | tensorrt (model.backend of the node)
    model_config: Path | None = None  # torch: model YAML, random weights (model.model_config_path)
    checkpoint: Path | None = None  # torch: a training checkpoint instead
    onnx_path: Path | None = None  # onnxruntime / tensorrt
    device: str = "auto"
    threads: int = 1
    precision: str = "fp16"
    engine_dir: str | None = None
    frames: int = 30  # timed trajectories wanted
    warmup: int = 3  # trajectories received before timing starts (after DDS discovery)
    rate_hz: float = 2.0
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE  # (width, height) of the published JPEGs
    jpeg_quality: int = 90
    node_name: str = NODE_NAME
    dds_profile: Path | None = DEFAULT_DDS_PROFILE  # FASTDDS_DEFAULT_PROFILES_FILE of both processes; None: defaults
    start_timeout_s: float = 300.0
    log_dir: Path | None = None  # logs, parameter file, feeder files (default: a temporary directory)

    def node_parameters(self) -> dict[str, Any]:
        """The shipped node parameters with this model; nothing else changed (the node as deployed)."""
        from dima_ros.parameters import load_parameter_file

        flat = load_parameter_file(params_path(node_spec("planner")), self.node_name)
        flat.update(
            {
                "model.backend": self.backend,
                "model.device": self.device,
                "model.threads": int(self.threads),
                "model.precision": self.precision,
                "model.engine_dir": self.engine_dir or "",
                "model.onnx_path": str(self.onnx_path or ""),
                "model.checkpoint_path": str(self.checkpoint or ""),
                "model.model_config_path": str(self.model_config or ""),
            }
        )
        return flat


def _percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p99": None, "mean": None}
    a = np.asarray(values, np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


@dataclass
class RosBenchResult:
    """Per-frame measurements (ms) of the timed frames, and what happened to the frames that were not timed."""

    backend: str
    cameras: int
    image_size: tuple[int, int]
    jpeg_kib: float  # mean size of one published JPEG
    rate_hz: float
    frames_sent: int  # timed phase
    pipeline_ms: list[float] = field(default_factory=list)
    input_ms: list[float] = field(default_factory=list)
    node_latency_ms: list[float] = field(default_factory=list)
    processing_ms: list[float] = field(default_factory=list)
    model_ms: list[float] = field(default_factory=list)
    overhead_ms: list[float] = field(default_factory=list)
    node_counters: dict[str, str] = field(default_factory=dict)  # the node's last /diagnostics counters (whole run)
    sync_issues: list[str] = field(default_factory=list)  # the node's "no trajectory" reasons (whole run)
    node_backend: str = ""  # the backend as the node describes it in its log
    middleware: str = ""  # RMW implementation and DDS profile of both processes

    @property
    def frames_planned(self) -> int:
        return len(self.pipeline_ms)

    def summary(self) -> dict[str, dict[str, float | None]]:
        """p50 / p99 / mean of each metric."""
        return {
            name: _percentiles(getattr(self, f"{name}_ms"))
            for name in ("pipeline", "input", "node_latency", "processing", "model", "overhead")
        }


def synthetic_jpegs(size: tuple[int, int], quality: int, variants: int = 2) -> dict[str, list[bytes]]:
    """Deterministic street-like pictures per camera (sky, road, lane marks, boxes, sensor noise), JPEG-encoded.

    Noise alone would compress to several times a real camera's JPEG and make decoding unrealistically slow; a flat
    image the other way round. These are ~200 KiB per 1600x900 frame at quality 90, as nuScenes' camera JPEGs."""
    import cv2

    width, height = size
    out: dict[str, list[bytes]] = {}
    for ci, cam in enumerate(CAMERA_NAMES):
        frames = []
        for v in range(variants):
            rng = np.random.default_rng(1000 * ci + v)
            img = np.zeros((height, width, 3), np.uint8)
            horizon = height // 2
            sky = np.linspace(200, 140, horizon, dtype=np.float32)[:, None]
            img[:horizon] = np.stack([sky * 0.8, sky * 0.9, sky], axis=-1).astype(np.uint8)
            road = np.linspace(90, 60, height - horizon, dtype=np.float32)[:, None]
            img[horizon:] = np.repeat(road, 3, axis=1)[:, None, :].astype(np.uint8)
            for _ in range(12):  # buildings, vehicles
                x0, y0 = int(rng.integers(0, width)), int(rng.integers(horizon // 2, horizon + height // 4))
                w, h = int(rng.integers(width // 30, width // 6)), int(rng.integers(height // 20, height // 3))
                colour = tuple(int(c) for c in rng.integers(30, 230, 3))
                cv2.rectangle(img, (x0, y0), (x0 + w, y0 + h), colour, thickness=-1)
            for k in range(-3, 4):  # lane marks converging to the horizon
                cv2.line(img, (width // 2, horizon), (width // 2 + k * width // 4, height), (230, 230, 230), 3)
            noise = rng.normal(0.0, 3.0, img.shape)
            img = np.clip(img.astype(np.float32) + noise, 0, 255).astype(np.uint8)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
            if not ok:
                raise RosBenchError("OpenCV could not encode a JPEG")
            frames.append(buf.tobytes())
        out[cam] = frames
    return out


class _Process:
    """A Python module run as its own process group, output to a log file; stopped with SIGINT, then SIGKILL."""

    def __init__(self, argv: list[str], env: dict[str, str], log_path: Path) -> None:
        self.log_path = log_path
        self._fh = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-u", *argv],
            stdin=subprocess.DEVNULL,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def output(self, tail: int = 3000) -> str:
        self._fh.flush()
        return self.log_path.read_text(errors="replace")[-tail:]

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self) -> None:
        if self.proc.poll() is None:
            for sig, grace in ((signal.SIGINT, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.killpg(self.proc.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    self.proc.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if not self._fh.closed:
            self._fh.close()


class _Rig:
    """The publisher + recorder node (the feeder process): inputs of the planner node out, its outputs in."""

    def __init__(
        self,
        target: str,
        jpegs: dict[str, list[bytes]],
        size: tuple[int, int],
        intrinsics: dict[str, tuple[list[float], int, int]],
    ) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import AccelWithCovarianceStamped
        from nav_msgs.msg import Odometry
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage

        from dima.msg import DrivingCommand, Trajectory

        self.node = rclpy.create_node(f"{target}_feeder")
        base = f"/{target}"
        self.target = target
        # Reliable writers, as camera drivers and the bag player offer them (they match the node's best-effort
        # camera readers); depth 1 like a driver that only ever has its newest frame.
        cam_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        aux_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub_img = {
            c: self.node.create_publisher(CompressedImage, f"{base}/input/camera/{c}/image", cam_qos)
            for c in CAMERA_NAMES
        }
        self.pub_info = {
            c: self.node.create_publisher(CameraInfo, f"{base}/input/camera/{c}/camera_info", aux_qos)
            for c in CAMERA_NAMES
        }
        self.pub_odom = self.node.create_publisher(Odometry, f"{base}/input/odometry", aux_qos)
        self.pub_accel = self.node.create_publisher(AccelWithCovarianceStamped, f"{base}/input/acceleration", aux_qos)
        self.pub_cmd = self.node.create_publisher(DrivingCommand, f"{base}/input/command", aux_qos)

        # Messages built once; only stamps change per frame (a driver does not rebuild its calibration either).
        width, height = size
        self.images: dict[str, list[Any]] = {}
        for cam in CAMERA_NAMES:
            variants = []
            for data in jpegs[cam]:
                msg = CompressedImage(format="jpeg")
                msg.header.frame_id = cam
                msg.data = data
                variants.append(msg)
            self.images[cam] = variants
        self.infos: dict[str, Any] = {}
        for cam in CAMERA_NAMES:
            k, full_w, full_h = intrinsics[cam]
            sx, sy = width / full_w, height / full_h
            info = CameraInfo(width=width, height=height, distortion_model="plumb_bob")
            info.header.frame_id = cam
            info.k = [k[0] * sx, 0.0, k[2] * sx, 0.0, k[4] * sy, k[5] * sy, 0.0, 0.0, 1.0]
            self.infos[cam] = info
        self.odom = Odometry()
        self.odom.header.frame_id, self.odom.child_frame_id = "map", "base_link"
        self.odom.pose.pose.orientation.w = 1.0
        self.odom.twist.twist.linear.x = 5.0
        self.accel = AccelWithCovarianceStamped()
        self.accel.header.frame_id = "base_link"
        self.command = DrivingCommand(command=2)
        self.command.header.frame_id = "base_link"

        self.lock = threading.Lock()
        self.received: dict[int, int] = {}  # frame stamp -> wall ns the trajectory arrived here
        self.last_arrival = time.monotonic()
        self.node_values: dict[int, dict[str, float]] = {}  # frame stamp -> the node's per-frame timings (ms)
        self.counters: dict[str, str] = {}
        self.sync_issues: list[str] = []
        self._seen_issues: set[str] = set()
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.traj_topic = f"{base}/output/trajectory"
        self.node.create_subscription(Trajectory, self.traj_topic, self._on_traj, out_qos)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, out_qos)

    def _on_traj(self, msg: Any) -> None:
        arrived = time.time_ns()  # first thing: the callback's own work must not count as latency
        from dima_ros.converters.stamps import stamp_to_ns

        stamp = stamp_to_ns(msg.header.stamp)
        with self.lock:
            self.received[stamp] = arrived
            self.last_arrival = time.monotonic()

    def _on_diag(self, msg: Any) -> None:
        for status in msg.status:
            if status.name == f"{self.target}: inference":
                values = {kv.key: kv.value for kv in status.values}
                with self.lock:
                    if "stamp_ns" in values:
                        self.node_values[int(values["stamp_ns"])] = {
                            k: float(values[k])
                            for k in ("input_latency_ms", "processing_time_ms", "model_time_ms", "pipeline_latency_ms")
                        }
                    if "dropped_busy" in values:
                        self.counters = values
            elif status.name == f"{self.target}: synchronisation" and status.message.startswith("no trajectory"):
                with self.lock:  # the periodic summary repeats the latest status: keep each report once
                    if status.message not in self._seen_issues:
                        self._seen_issues.add(status.message)
                        self.sync_issues.append(status.message)

    def connected(self) -> bool:
        publishers = [*self.pub_img.values(), *self.pub_info.values(), self.pub_odom, self.pub_accel, self.pub_cmd]
        return (
            all(p.get_subscription_count() >= 1 for p in publishers)
            and self.node.count_publishers(self.traj_topic) >= 1
        )

    def publish_frame(self, index: int) -> int:
        """All inputs of one frame, stamped with the wall time publishing starts; returns the stamp."""
        from dima_ros.converters.stamps import ns_to_stamp

        stamp_ns = time.time_ns()
        stamp = ns_to_stamp(stamp_ns)
        for msg, pub in ((self.odom, self.pub_odom), (self.accel, self.pub_accel), (self.command, self.pub_cmd)):
            msg.header.stamp = stamp
            pub.publish(msg)
        for cam in CAMERA_NAMES:
            info = self.infos[cam]
            info.header.stamp = stamp
            self.pub_info[cam].publish(info)
            image = self.images[cam][index % len(self.images[cam])]
            image.header.stamp = stamp
            self.pub_img[cam].publish(image)
        return stamp_ns

    def trajectory_count(self) -> int:
        with self.lock:
            return len(self.received)


def _wait(predicate: Any, timeout_s: float, interval_s: float = 0.02) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval_s)
    return True


def _intrinsics(flat: dict[str, Any]) -> dict[str, tuple[list[float], int, int]]:
    """Full-size K, width, height per camera from the node's calibration parameters (the shipped rig)."""
    out = {}
    for cam in CAMERA_NAMES:
        k = [float(v) for v in flat.get(f"calibration.{cam}.intrinsics") or []]
        w, h = int(flat.get(f"calibration.{cam}.width") or 0), int(flat.get(f"calibration.{cam}.height") or 0)
        if len(k) != 9 or w <= 0 or h <= 0:
            raise RosBenchError(
                f"config/planner_node.yaml has no full calibration for {cam} (intrinsics, width, "
                "height): the bench publishes CameraInfo from it"
            )
        out[cam] = (k, w, h)
    return out


def _node_backend(output: str) -> str:
    for line in output.splitlines():
        if "backend ready:" in line:
            return line.split("backend ready:", 1)[1].split(", inputs", 1)[0].strip()
    return ""


class _Pacer:
    """Publishes the rig's frames at a fixed rate: a slot the publishing itself overran is skipped, not caught up."""

    def __init__(self, rig: _Rig, period: float) -> None:
        self.rig, self.period = rig, period
        self.index = 0  # frames sent so far
        self.next_t = time.monotonic()

    def send(self) -> int:
        """Wait for the next slot, publish one frame; returns its stamp (ns)."""
        time.sleep(max(0.0, self.next_t - time.monotonic()))
        self.next_t += self.period
        if time.monotonic() > self.next_t:  # publishing itself overran the period: keep the rate, skip the slot
            self.next_t = time.monotonic() + self.period
        stamp = self.rig.publish_frame(self.index)
        self.index += 1
        return stamp


def _feed(cfg: dict[str, Any]) -> dict[str, Any]:
    """The feeder process's work: publish at the fixed rate, record, return the per-frame timings (JSON-able)."""
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    size = (int(cfg["image_size"][0]), int(cfg["image_size"][1]))
    jpegs = synthetic_jpegs(size, int(cfg["jpeg_quality"]))
    intrinsics = {cam: (list(v[0]), int(v[1]), int(v[2])) for cam, v in cfg["intrinsics"].items()}
    frames, warmup, period = int(cfg["frames"]), int(cfg["warmup"]), 1.0 / float(cfg["rate_hz"])
    rclpy.init()
    rig = _Rig(cfg["target"], jpegs, size, intrinsics)
    executor = SingleThreadedExecutor()
    executor.add_node(rig.node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set() and rclpy.ok():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, name="dima-bench-feeder-spin", daemon=True)
    spinner.start()
    try:
        if not _wait(rig.connected, float(cfg["start_timeout_s"])):
            raise RosBenchError(f"the planner node /{cfg['target']} did not connect in {cfg['start_timeout_s']} s")
        print("[feeder] connected", flush=True)
        pacer = _Pacer(rig, period)
        _warm_up(rig, pacer, warmup)
        timed = _send_timed_frames(rig, pacer, frames)
        _wait_until_settled(rig, timed, period)
        return _recorded(rig, timed, jpegs)
    finally:
        stop.set()
        spinner.join(timeout=5.0)
        executor.shutdown(timeout_sec=1.0)
        rig.node.destroy_node()
        rclpy.try_shutdown()


def _warm_up(rig: _Rig, pacer: _Pacer, warmup: int) -> None:
    """Publish until ``warmup`` (at least one) trajectories arrived.

    Best-effort camera readers drop frames sent before they matched the writers, and the first planned frames pay
    for lazy allocations; none of them is timed.
    """
    budget = max(1, warmup) + 40
    while rig.trajectory_count() < max(1, warmup):
        if budget == 0:
            raise RosBenchError(
                f"no trajectory after {max(1, warmup) + 40} warm-up frames; the node reported: {rig.sync_issues[-2:]}"
            )
        pacer.send()
        budget -= 1
    time.sleep(min(5.0, 2 * pacer.period))  # the last warm-up frame's processing must not delay the first timed one
    print(f"[feeder] warm-up done after {pacer.index} frames", flush=True)


def _send_timed_frames(rig: _Rig, pacer: _Pacer, frames: int) -> list[int]:
    """Send until ``frames`` of the timed frames got a trajectory (at most ``3 x frames``); returns their stamps."""
    timed: list[int] = []
    while len(timed) < 3 * frames:
        timed.append(pacer.send())
        with rig.lock:
            if sum(1 for s in timed if s in rig.received) >= frames:
                break
    return timed


def _wait_until_settled(rig: _Rig, timed: list[int], period: float) -> None:
    """Wait for the last frames' trajectories and diagnostics, then one more periodic /diagnostics summary.

    A frame the node dropped never comes, so this stops once nothing arrived for a while.
    """

    def settled() -> bool:
        with rig.lock:
            done = all(s in rig.received and s in rig.node_values for s in timed)
            idle = time.monotonic() - rig.last_arrival
        return done or idle > max(5.0, 3 * period)

    _wait(settled, 120.0)
    time.sleep(1.2)  # one more periodic /diagnostics summary (the node's counters)


def _recorded(rig: _Rig, timed: list[int], jpegs: dict[str, list[bytes]]) -> dict[str, Any]:
    """The feeder's JSON result: one row per timed frame with both its trajectory and the node's timings."""
    with rig.lock:
        rows = [
            {"stamp_ns": s, "pipeline_ms": (rig.received[s] - s) / 1e6, **rig.node_values[s]}
            for s in timed
            if s in rig.received and s in rig.node_values
        ]
        return {
            "frames_sent": len(timed),
            "frames": rows,
            "counters": dict(rig.counters),
            "sync_issues": list(rig.sync_issues),
            "jpeg_kib": float(np.mean([len(b) for v in jpegs.values() for b in v])) / 1024.0,
        }


def feeder_main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.pipeline FEEDER.json OUT.json`` (started by :func:`run_ros_bench`)."""
    ap = argparse.ArgumentParser(description="dima bench latency ros pipeline: the publisher/recorder process")
    ap.add_argument("config", type=Path)
    ap.add_argument("out", type=Path)
    args = ap.parse_args(argv)
    try:
        result = _feed(json.loads(args.config.read_text()))
        rc = 0
    except (RosBenchError, KeyboardInterrupt) as exc:
        result, rc = {"error": str(exc) or type(exc).__name__}, 1
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(args.out)  # atomic: the caller never reads half a file
    return rc


def _middleware(env: dict[str, str]) -> str:
    rmw = env.get("RMW_IMPLEMENTATION") or "rmw_fastrtps_cpp (default)"
    profile = env.get("FASTDDS_DEFAULT_PROFILES_FILE") or env.get("FASTRTPS_DEFAULT_PROFILES_FILE")
    try:
        shown = Path(profile).resolve().relative_to(repository_root()) if profile else None
    except ValueError:
        shown = Path(profile) if profile else None
    return f"{rmw}, DDS profile {shown if shown else 'none (middleware defaults)'}"


def run_ros_bench(settings: RosBenchSettings) -> RosBenchResult:
    """Start the planner node and the feeder, wait for the feeder's ``settings.frames`` timed frames (or
    ``3 x frames`` sent), stop both; raises :class:`RosBenchError` if it cannot run."""
    from dima_ros.parameters import nest_parameters, write_parameter_file

    if settings.frames < 1 or settings.rate_hz <= 0:
        raise ValueError("frames must be >= 1 and rate_hz > 0")
    with tempfile.TemporaryDirectory(prefix="dima-bench-ros-") as tmp:
        log_dir = Path(settings.log_dir or tmp)
        log_dir.mkdir(parents=True, exist_ok=True)
        flat = settings.node_parameters()
        params = write_parameter_file(log_dir / f"{settings.node_name}.yaml", nest_parameters(flat))
        feeder_cfg = _write_feeder_config(settings, flat, log_dir / "feeder.json")
        feeder_out = log_dir / "feeder_result.json"
        feeder_out.unlink(missing_ok=True)
        env = _process_environment(settings)
        node = _Process(
            [
                "-m",
                node_spec("planner").module,
                "--ros-args",
                "--params-file",
                str(params),
                "-r",
                f"__node:={settings.node_name}",
            ],
            env,
            log_dir / f"{settings.node_name}.log",
        )
        feeder: _Process | None = None
        try:
            feeder = _Process(["-m", __name__, str(feeder_cfg), str(feeder_out)], env, log_dir / "feeder.log")
            _wait_for_feeder(settings, feeder, node)
            return _collect_result(settings, feeder_out, feeder, node, env)
        finally:
            if feeder is not None:
                feeder.stop()
            node.stop()


def _write_feeder_config(settings: RosBenchSettings, flat: dict[str, Any], path: Path) -> Path:
    """The feeder process's settings (``feeder_main``'s FEEDER.json)."""
    path.write_text(
        json.dumps(
            {
                "target": settings.node_name,
                "frames": settings.frames,
                "warmup": settings.warmup,
                "rate_hz": settings.rate_hz,
                "image_size": list(settings.image_size),
                "jpeg_quality": settings.jpeg_quality,
                "intrinsics": _intrinsics(flat),
                "start_timeout_s": settings.start_timeout_s,
            }
        )
    )
    return path


def _process_environment(settings: RosBenchSettings) -> dict[str, str]:
    """The node's and the feeder's environment: this checkout first on PYTHONPATH, the DDS profile if any."""
    env = os.environ.copy()
    # Both processes must import this very benchmarks / dima_ros / dima_core (a source checkout is not on
    # sys.path by itself).
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    if settings.dds_profile is not None:
        if not Path(settings.dds_profile).is_file():
            raise RosBenchError(f"DDS profile {settings.dds_profile} does not exist")
        env.pop("FASTRTPS_DEFAULT_PROFILES_FILE", None)  # deprecated name; it would compete with ours
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = str(Path(settings.dds_profile).resolve())
    return env


def _wait_for_feeder(settings: RosBenchSettings, feeder: _Process, node: _Process) -> None:
    """Until the feeder exits; RosBenchError when the node dies first or the whole run overruns its limit."""
    # Generous: start-up, warm-up (up to 40 extra frames) and up to 3 x frames timed, then settling.
    limit = settings.start_timeout_s + (3 * settings.frames + settings.warmup + 45) / settings.rate_hz + 180
    deadline = time.monotonic() + limit
    while feeder.alive():
        if not node.alive():
            raise RosBenchError(f"the planner node exited (status {node.proc.returncode}):\n{node.output()}")
        if time.monotonic() > deadline:
            raise RosBenchError(
                f"the bench did not finish in {limit:.0f} s; feeder:\n{feeder.output()}\nnode:\n{node.output()}"
            )
        time.sleep(0.2)


def _collect_result(
    settings: RosBenchSettings, feeder_out: Path, feeder: _Process, node: _Process, env: dict[str, str]
) -> RosBenchResult:
    """The feeder's per-frame rows as a :class:`RosBenchResult` (RosBenchError when it failed or timed nothing)."""
    if not feeder_out.is_file():
        raise RosBenchError(f"the feeder wrote no result (status {feeder.proc.returncode}):\n{feeder.output()}")
    data = json.loads(feeder_out.read_text())
    if "error" in data:
        raise RosBenchError(f"{data['error']}\nnode log:\n{node.output()}")
    result = RosBenchResult(
        settings.backend,
        len(CAMERA_NAMES),
        settings.image_size,
        data["jpeg_kib"],
        settings.rate_hz,
        data["frames_sent"],
        node_counters=data["counters"],
        sync_issues=data["sync_issues"],
        node_backend=_node_backend(node.output(10**6)),
        middleware=_middleware(env),
    )
    for row in data["frames"]:
        result.pipeline_ms.append(row["pipeline_ms"])
        result.input_ms.append(row["input_latency_ms"])
        result.node_latency_ms.append(row["pipeline_latency_ms"])
        result.processing_ms.append(row["processing_time_ms"])
        result.model_ms.append(row["model_time_ms"])
        result.overhead_ms.append(row["pipeline_ms"] - row["model_time_ms"])
    if result.sync_issues:
        log.warning(
            "the node reported %d unsynchronised frames, e.g. %s", len(result.sync_issues), result.sync_issues[-1]
        )
    if not result.pipeline_ms:
        raise RosBenchError(
            f"none of the {result.frames_sent} timed frames got a trajectory; node log:\n{node.output()}"
        )
    return result


__all__ = [
    "DEFAULT_DDS_PROFILE",
    "DEFAULT_IMAGE_SIZE",
    "RosBenchError",
    "RosBenchResult",
    "RosBenchSettings",
    "feeder_main",
    "run_ros_bench",
    "synthetic_jpegs",
]


if __name__ == "__main__":
    sys.exit(feeder_main())
