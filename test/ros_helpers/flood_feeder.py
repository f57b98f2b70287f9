"""Flood the planner node with full-size camera frames faster than it can plan, and record what it does.

    python test/ros_helpers/flood_feeder.py CONFIG.json OUT.json

Run by test/test_planner_node_overload.py in its own process so that its DDS participant uses the shipped
large-segment Fast DDS profile (six 1600x900 JPEGs are ~1.3 MB per frame; a participant created earlier in the test
process would keep the 512 KiB default). CONFIG: ``target`` (node name), ``node_pid`` (for its resident memory),
``bursts``, ``burst_s``, ``pause_s``, ``overload`` (publish rate / the node's measured planning rate) or ``rate_hz``
(a fixed camera rate instead: tools/soak_planner_node.py), ``sample_s`` (optional: the node's memory and counters
every so many seconds during a burst), ``start_timeout_s``.

Per frame, all inputs share one stamp, the wall time its publishing starts (ROS time is the system time on this host,
so the node's ``input_latency_ms`` puts its worker start on the same clock): odometry, acceleration, command, the six
CameraInfo, then the six images with CAM_FRONT last. OUT (JSON): the frames sent (stamp, wall time its last message
was published, burst), the trajectories in arrival order, the node's per-frame timings, its counters and
"no trajectory" reports, its resident memory after each burst, and the publishing period used.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

NS = 1_000_000_000
SIZE = (1600, 900)


def _render_jpegs() -> list[bytes]:
    """Six camera JPEGs (quality 90) of one synthetic-world frame at the nuScenes size (~200 KiB each)."""
    import cv2

    from dima_core.config import config_from_dict
    from dima_core.data.synth import SynthConfig, SynthWorld

    cfg = config_from_dict(
        {"scene_seconds": 3.0, "camera": {"width": SIZE[0], "height": SIZE[1]}}, SynthConfig, source="flood_feeder"
    )
    images, _, _ = SynthWorld.generate(cfg, 8, 1, ["follow"]).scenes[0].render(2)
    return [cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes() for im in images]


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for process {pid}")


class Flood:
    """Publishers of every input of the node and recorders of its trajectories and diagnostics."""

    def __init__(self, node, target: str, jpegs: list[bytes]) -> None:
        from diagnostic_msgs.msg import DiagnosticArray
        from geometry_msgs.msg import AccelWithCovarianceStamped
        from nav_msgs.msg import Odometry
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, CompressedImage

        from dima.msg import DrivingCommand, Trajectory
        from dima_core.constants import CAMERA_NAMES

        self.node, self.target = node, target
        base = f"/{target}"
        # A camera driver's writer: reliable, newest frame only (it matches the node's best-effort reader).
        cam_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
        aux_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.order = [c for c in CAMERA_NAMES if c != "CAM_FRONT"] + ["CAM_FRONT"]
        self.pub_img = {
            c: node.create_publisher(CompressedImage, f"{base}/input/camera/{c}/image", cam_qos) for c in CAMERA_NAMES
        }
        self.pub_info = {
            c: node.create_publisher(CameraInfo, f"{base}/input/camera/{c}/camera_info", aux_qos) for c in CAMERA_NAMES
        }
        self.pub_odom = node.create_publisher(Odometry, f"{base}/input/odometry", aux_qos)
        self.pub_accel = node.create_publisher(AccelWithCovarianceStamped, f"{base}/input/acceleration", aux_qos)
        self.pub_cmd = node.create_publisher(DrivingCommand, f"{base}/input/command", aux_qos)
        self.images, self.infos = {}, {}
        for cam, data in zip(CAMERA_NAMES, jpegs, strict=True):
            msg = CompressedImage(format="jpeg")
            msg.header.frame_id, msg.data = cam, data
            self.images[cam] = msg
            info = CameraInfo(width=SIZE[0], height=SIZE[1], distortion_model="plumb_bob")
            info.header.frame_id = cam
            info.k = [1266.0, 0.0, SIZE[0] / 2, 0.0, 1266.0, SIZE[1] / 2, 0.0, 0.0, 1.0]
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
        self.trajectories: list[tuple[int, int]] = []  # (stamp, wall ns received), arrival order
        self.values: dict[int, dict[str, float]] = {}
        self.counters: dict[str, str] = {}
        self.reports: list[str] = []
        out_qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.traj_topic = f"{base}/output/trajectory"
        node.create_subscription(Trajectory, self.traj_topic, self._on_traj, out_qos)
        node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diag, out_qos)

    def _on_traj(self, msg) -> None:
        arrived = time.time_ns()
        with self.lock:
            self.trajectories.append((msg.header.stamp.sec * NS + msg.header.stamp.nanosec, arrived))

    def _on_diag(self, msg) -> None:
        for status in msg.status:
            values = {kv.key: kv.value for kv in status.values}
            with self.lock:
                if status.name == f"{self.target}: inference":
                    if "stamp_ns" in values and "input_latency_ms" in values:
                        self.values[int(values["stamp_ns"])] = {
                            k: float(values[k]) for k in ("input_latency_ms", "processing_time_ms", "model_time_ms")
                        }
                    if "dropped_busy" in values:
                        self.counters = values
                if status.message.startswith("no trajectory") and status.message not in self.reports[-50:]:
                    self.reports.append(status.message)

    def connected(self) -> bool:
        pubs = [*self.pub_img.values(), *self.pub_info.values(), self.pub_odom, self.pub_accel, self.pub_cmd]
        return all(p.get_subscription_count() >= 1 for p in pubs) and self.node.count_publishers(self.traj_topic) >= 1

    def publish_frame(self) -> tuple[int, int]:
        """One frame stamped now; returns (stamp, wall ns after its last message was published)."""
        from builtin_interfaces.msg import Time

        stamp_ns = time.time_ns()
        stamp = Time(sec=stamp_ns // NS, nanosec=stamp_ns % NS)
        for msg, pub in ((self.odom, self.pub_odom), (self.accel, self.pub_accel), (self.command, self.pub_cmd)):
            msg.header.stamp = stamp
            pub.publish(msg)
        for cam in self.order:
            self.infos[cam].header.stamp = stamp
            self.pub_info[cam].publish(self.infos[cam])
        for cam in self.order:
            self.images[cam].header.stamp = stamp
            self.pub_img[cam].publish(self.images[cam])
        return stamp_ns, time.time_ns()


def _wait(predicate, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def run(cfg: dict) -> dict:
    from dima_ros.dds_profile import use_large_data_profile

    use_large_data_profile()  # before rclpy.init: Fast DDS reads it when the participant is created
    import rclpy
    from rclpy.executors import SingleThreadedExecutor

    jpegs = _render_jpegs()
    rclpy.init()
    node = rclpy.create_node(f"{cfg['target']}_flood")
    flood = Flood(node, cfg["target"], jpegs)
    executor = SingleThreadedExecutor()
    executor.add_node(node)
    stop = threading.Event()

    def spin() -> None:
        while not stop.is_set():
            executor.spin_once(timeout_sec=0.05)

    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    try:
        if not _wait(flood.connected, float(cfg["start_timeout_s"])):
            return {"error": "the planner node did not connect"}
        # Warm-up at 4 Hz (the node keeps up): discovery of the best-effort readers, then the node's own planning
        # time per frame, which sets the flood's rate.
        warm = []
        for _ in range(60):
            warm.append(flood.publish_frame()[0])
            time.sleep(0.25)
            with flood.lock:
                timed = [flood.values[s]["processing_time_ms"] for s in warm if s in flood.values]
            if len(timed) >= 4:
                break
        else:
            return {"error": f"fewer than 4 warm-up trajectories; node reports: {flood.reports[-3:]}"}
        processing_ms = float(np.median(timed[1:]))
        if cfg.get("rate_hz"):
            period_s = 1.0 / float(cfg["rate_hz"])
        else:
            period_s = processing_ms / 1000.0 / float(cfg["overload"])
        sample_s = float(cfg.get("sample_s") or 0.0)
        time.sleep(1.0)
        sent, rss, samples = [], [_rss_kib(int(cfg["node_pid"]))], []
        for burst in range(int(cfg["bursts"])):
            start = time.monotonic()
            end = start + float(cfg["burst_s"])
            next_t, next_sample = start, start
            while time.monotonic() < end:
                time.sleep(max(0.0, next_t - time.monotonic()))
                next_t = max(next_t + period_s, time.monotonic())  # after a stall: keep the rate, no catch-up burst
                stamp, done = flood.publish_frame()
                sent.append({"stamp": stamp, "done": done, "burst": burst})
                if sample_s and time.monotonic() >= next_sample:
                    next_sample += sample_s
                    with flood.lock:
                        samples.append(
                            {
                                "t_s": time.monotonic() - start,
                                "rss_kib": _rss_kib(int(cfg["node_pid"])),
                                "counters": dict(flood.counters),
                            }
                        )
            time.sleep(float(cfg["pause_s"]))  # the node finishes the newest set, then idles
            rss.append(_rss_kib(int(cfg["node_pid"])))
        time.sleep(1.5)  # one more periodic /diagnostics summary with the counters
        with flood.lock:
            return {
                "warmup": warm,
                "sent": sent,
                "trajectories": flood.trajectories,
                "values": {str(k): v for k, v in flood.values.items()},
                "counters": dict(flood.counters),
                "reports": list(flood.reports),
                "rss_kib": rss,
                "samples": samples,
                "period_ms": period_s * 1000.0,
                "processing_ms": processing_ms,
                "jpeg_kib": sum(len(b) for b in jpegs) / 6 / 1024,
            }
    finally:
        stop.set()
        spinner.join(timeout=5.0)
        executor.shutdown(timeout_sec=1.0)
        node.destroy_node()
        rclpy.try_shutdown()


def main() -> int:
    cfg = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    result = run(cfg)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result))
    tmp.replace(out)
    return 0 if "error" not in result else 1


if __name__ == "__main__":
    sys.exit(main())
