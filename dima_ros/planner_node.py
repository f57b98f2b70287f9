"""The DiMA vision-only planner as a ROS 2 node (``python -m dima_ros.planner_node`` / ``ros2 run dima planner_node``).

A plain rclpy node, not a lifecycle node: the constructor validates the parameters, loads and warms up the backend
(so a bad parameter or a missing model fails at start with a clear error), then subscribes. Topics, QoS, parameters
and diagnostics: docs/planner_node.md.

Threading: all subscription callbacks share the node's default mutually exclusive callback group, so the
synchroniser state is only touched by one callback at a time and stays cheap (no decoding there). A complete frame
set is handed to one worker thread that decodes (optionally with a small pool for the six cameras), preprocesses,
runs the backend and publishes. A set that completes while the worker is busy waits in a one-slot mailbox; a newer
complete set replaces it (the older one is dropped and counted: a stale plan is worse than a skipped one), so when
the worker becomes free it plans the newest complete set at once, inference never blocks the executor, and the
queues cannot grow.

Safety rule: a trajectory is only published for a complete, synchronised frame set whose every input decoded and
validated; anything else is reported on /diagnostics (with the reason) and the node keeps running.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from geometry_msgs.msg import AccelWithCovarianceStamped
from nav_msgs.msg import Odometry, Path
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CameraInfo, CompressedImage, Image
from std_msgs.msg import Float64
from visualization_msgs.msg import MarkerArray

from dima.msg import BeamTokens, DrivingCommand, Trajectory
from dima_core.constants import CAMERA_NAMES
from dima_core.export import create_backend
from dima_core.runtime.config import PlannerNodeConfig
from dima_core.runtime.frame_sync import NS_PER_MS, FrameSet, FrameSynchronizer, SyncIssue, SyncSettings
from dima_core.runtime.postprocess import (
    beam_token_arrays,
    decode_agents,
    decode_map,
    plan_feature_array,
    select_trajectory,
)
from dima_core.runtime.preprocess import (
    CameraModel,
    CameraPipeline,
    InputError,
    PreprocessSettings,
    TemporalState,
    build_inputs,
)
from dima_ros.converters import beam_tokens
from dima_ros.converters.inputs import camera_model_from_info, decode_image, driving_command, ego_inputs
from dima_ros.converters.markers import planner_markers
from dima_ros.converters.stamps import ns_to_stamp, stamp_to_ns
from dima_ros.converters.trajectory import trajectory_messages
from dima_ros.node_main import run_node
from dima_ros.parameters import ConfigParameters

NODE_NAME = "dima_planner"

# docs/design.md, ROS interfaces: cameras best-effort depth 1 (sensor data: the newest frame only),
# odometry/command reliable, outputs reliable depth 1. A reliable publisher (drivers, the bag player) matches a
# best-effort subscriber.
CAMERA_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=1,
    reliability=ReliabilityPolicy.BEST_EFFORT,
    durability=DurabilityPolicy.VOLATILE,
)
CAMERA_INFO_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.BEST_EFFORT)
RELIABLE_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
OUTPUT_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
DIAGNOSTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)

OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
# Diagnostic status names (one per concern; each keeps its latest level and message).
DIAG_SYNC = "synchronisation"
DIAG_INPUTS = "inputs"
DIAG_INFERENCE = "inference"


def input_topic(camera: str, what: str) -> str:
    """``~/input/camera/CAM_FRONT/image``: camera names as in nuScenes and the bag (upper case is a legal name)."""
    return f"~/input/camera/{camera}/{what}"


def _sync_settings(cfg: PlannerNodeConfig) -> dict[str, Any]:
    s = cfg.sync
    return dict(
        tolerance_ns=int(s.tolerance_ms * NS_PER_MS),
        max_wait_ns=int(s.max_wait_ms * NS_PER_MS),
        max_delay_ns=int(s.max_delay_ms * NS_PER_MS),
        odometry_max_age_ns=int(s.odometry_max_age_ms * NS_PER_MS),
        command_policy=s.command_policy,
        command_max_age_ns=int(s.command_max_age_ms * NS_PER_MS),
        reset_on_jump_back_ns=int(s.reset_on_jump_back_s * 1e9),
    )


class PlannerNode(Node):
    """Six cameras + odometry + command -> dima/Trajectory, Path, markers, BEAM tokens, diagnostics."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._params = ConfigParameters(self, PlannerNodeConfig, on_change=self._apply_config)
        self.cfg: PlannerNodeConfig = self._params.config
        cfg = self.cfg

        self.get_logger().info(f"loading the {cfg.model.backend} backend ...")
        self.backend = create_backend(cfg.model.backend_config())
        assert self.backend.model_config is not None
        self.specs = tuple(self.backend.input_specs)
        self._spec_by_name = {s.name: s for s in self.specs}
        self.preprocess = PreprocessSettings(
            image_size_wh=tuple(self.backend.model_config.image_size),  # type: ignore[arg-type]
            interpolation=cfg.preprocess.interpolation,
            image_mean=tuple(cfg.preprocess.image_mean),  # type: ignore
            image_std=tuple(cfg.preprocess.image_std),  # type: ignore[arg-type]
            jpeg_max_reduction=cfg.preprocess.jpeg_max_reduction,
        )
        self.cameras_pipeline = CameraPipeline(self.preprocess, cfg.preprocess.decode_threads)
        self.temporal = TemporalState() if "prev_bev" in self._spec_by_name else None
        self.get_logger().info(
            f"backend ready: {self.backend.describe()}, inputs {[s.name for s in self.specs]}, "
            f"outputs {list(self.backend.output_names)}"
        )

        self.sync = FrameSynchronizer(
            SyncSettings(
                use_acceleration=cfg.inputs.use_acceleration,
                camera_queue_size=cfg.inputs.camera_queue_size,
                odometry_queue_size=cfg.inputs.odometry_queue_size,
                **_sync_settings(cfg),
            )
        )
        self._camera_info: dict[str, CameraInfo] = {}
        self._config_cameras: dict[str, CameraModel] = {}
        for cam in CAMERA_NAMES:
            c = cfg.calibration.camera(cam)
            if cfg.calibration.source == "config":
                self._config_cameras[cam] = CameraModel.from_lists(c.intrinsics, c.width, c.height, c.cam_to_ego, cam)
        self._cam_to_ego = {
            cam: np.asarray(cfg.calibration.camera(cam).cam_to_ego, np.float64).reshape(4, 4) for cam in CAMERA_NAMES
        }

        # Counters and diagnostic state (read by the diagnostics timer, written by callbacks and the worker).
        self._lock = threading.Lock()
        self.counters = {
            "frames_in": 0,
            "trajectories": 0,
            "incomplete": 0,
            "rejected": 0,
            "dropped_busy": 0,
            "input_errors": 0,
            "backend_errors": 0,
            "over_budget": 0,
        }
        self._status: dict[str, tuple[int, str]] = {
            DIAG_SYNC: (OK, "waiting for inputs"),
            DIAG_INPUTS: (OK, "no frame processed yet"),
            DIAG_INFERENCE: (OK, f"backend {self.backend.describe()} ready"),
        }
        self._last_processing_ms = 0.0

        # Outputs.
        self.pub_traj = self.create_publisher(Trajectory, "~/output/trajectory", OUTPUT_QOS)
        self.pub_path = self.create_publisher(Path, "~/output/path", OUTPUT_QOS)
        self.pub_markers = self.create_publisher(MarkerArray, "~/output/markers", OUTPUT_QOS)
        self.pub_beam = self.create_publisher(BeamTokens, "~/output/beam_tokens", OUTPUT_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self.pub_proc = self.create_publisher(Float64, "~/debug/processing_time_ms", OUTPUT_QOS)
        self.pub_latency = self.create_publisher(Float64, "~/debug/pipeline_latency_ms", OUTPUT_QOS)

        # Worker: one frame set at a time.
        self._job: FrameSet | None = None  # the mailbox: the newest complete set not taken by the worker yet
        self._stop = False
        self._cv = threading.Condition()
        self._worker = threading.Thread(target=self._work, name="dima-planner-infer", daemon=True)
        self._worker.start()

        # Inputs.
        image_type = CompressedImage if cfg.inputs.image_transport == "compressed" else Image
        for cam in CAMERA_NAMES:
            self.create_subscription(
                image_type, input_topic(cam, "image"), lambda msg, cam=cam: self._on_image(cam, msg), CAMERA_QOS
            )
            if cfg.calibration.source == "camera_info":
                self.create_subscription(
                    CameraInfo,
                    input_topic(cam, "camera_info"),
                    lambda msg, cam=cam: self._on_camera_info(cam, msg),
                    CAMERA_INFO_QOS,
                )
        self.create_subscription(Odometry, "~/input/odometry", self._on_odometry, RELIABLE_QOS)
        if cfg.inputs.use_acceleration:
            self.create_subscription(AccelWithCovarianceStamped, "~/input/acceleration", self._on_accel, RELIABLE_QOS)
        self.create_subscription(DrivingCommand, "~/input/command", self._on_command, RELIABLE_QOS)
        self.create_timer(0.05, self._poll_sync)
        self.create_timer(cfg.output.diagnostics_period_s, self._publish_diagnostics)
        self.get_logger().info(
            f"planner node ready: {cfg.inputs.image_transport} images, calibration from "
            f"{cfg.calibration.source}, sync tolerance {cfg.sync.tolerance_ms:.0f} ms"
        )

    # -- parameters ---------------------------------------------------------------------------------------------

    def _apply_config(self, cfg: PlannerNodeConfig) -> None:
        """Apply a validated change (only non-read-only parameters can change)."""
        self.sync.update_settings(**_sync_settings(cfg))
        self.cfg = cfg

    # -- input callbacks (executor thread) ----------------------------------------------------------------------

    @staticmethod
    def _now_mono_ns() -> int:
        return time.monotonic_ns()

    def _on_image(self, cam: str, msg: Any) -> None:
        if cam == "CAM_FRONT":
            with self._lock:
                self.counters["frames_in"] += 1
        self._handle(self.sync.add_image(cam, stamp_to_ns(msg.header.stamp), msg, self._now_mono_ns()))

    def _on_camera_info(self, cam: str, msg: CameraInfo) -> None:
        self._camera_info[cam] = msg

    def _on_odometry(self, msg: Odometry) -> None:
        self._handle(self.sync.add_odometry(stamp_to_ns(msg.header.stamp), msg, self._now_mono_ns()))

    def _on_accel(self, msg: AccelWithCovarianceStamped) -> None:
        self._handle(self.sync.add_acceleration(stamp_to_ns(msg.header.stamp), msg, self._now_mono_ns()))

    def _on_command(self, msg: DrivingCommand) -> None:
        self._handle(self.sync.add_command(stamp_to_ns(msg.header.stamp), driving_command(msg), self._now_mono_ns()))

    def _poll_sync(self) -> None:
        self._handle(self.sync.poll(self._now_mono_ns()))

    def _handle(self, events: list[Any]) -> None:
        for event in events:
            if isinstance(event, SyncIssue):
                level = WARN if event.kind == "reset" else ERROR
                with self._lock:
                    self.counters["incomplete" if event.kind == "incomplete" else "rejected"] += 1
                if self.temporal is not None and event.kind in ("incomplete", "reset"):
                    self.temporal.reset()  # the BEV history has a gap now
                self._report(
                    DIAG_SYNC,
                    level,
                    f"no trajectory for frame {event.stamp_ns}: " + "; ".join(event.reasons),
                    {"stamp_ns": str(event.stamp_ns), "kind": event.kind},
                )
                continue
            # One-slot mailbox: the synchroniser emits complete sets in stamp order, so the set waiting here is
            # always the newest; an older one still waiting is superseded (dropped, counted), and the worker takes
            # the waiting set the moment it is free.
            with self._cv:
                superseded, self._job = self._job, event
                self._cv.notify()
            if superseded is not None:
                with self._lock:
                    self.counters["dropped_busy"] += 1
                self._report(
                    DIAG_INFERENCE,
                    WARN,
                    f"frame {superseded.stamp_ns} dropped: superseded by the newer "
                    f"complete frame {event.stamp_ns} while the worker was busy (inference slower than the "
                    "camera rate)",
                    {},
                )

    # -- worker -------------------------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._cv:
                while self._job is None and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                job, self._job = self._job, None
            try:
                self._process(job)
            except Exception as exc:  # noqa: BLE001 - never let the worker die: report and keep running
                with self._lock:
                    self.counters["backend_errors"] += 1
                self._report(DIAG_INFERENCE, ERROR, f"frame {job.stamp_ns}: unexpected failure: {exc!r}", {})

    def _camera_model(self, cam: str) -> CameraModel:
        if self.cfg.calibration.source == "config":
            return self._config_cameras[cam]
        info = self._camera_info.get(cam)
        if info is None:
            raise InputError("calibration", f"{cam}: no CameraInfo received on {input_topic(cam, 'camera_info')}")
        return camera_model_from_info(info, self._cam_to_ego[cam], cam)

    def _process(self, frame: FrameSet) -> None:
        t0 = time.perf_counter()
        # Stamp -> worker start: publishing, transport, callbacks and synchronisation (the input side of the
        # pipeline latency, reported with the frame's timings below).
        input_latency_ms = (self.get_clock().now().nanoseconds - frame.stamp_ns) / NS_PER_MS
        cfg = self.cfg
        command = int(frame.command.value)
        odom: Odometry = frame.odometry.value
        try:
            imgs, intr, c2e = self.cameras_pipeline.tensors(
                CAMERA_NAMES,
                lambda cam: (decode_image(frame.images[cam].value, self.preprocess, cam), self._camera_model(cam)),
            )
            ego = ego_inputs(odom, frame.acceleration.value if frame.acceleration is not None else None)
            ego_status, pose = ego.status, ego.pose
            temporal = self.temporal.inputs(self._spec_by_name, pose) if self.temporal is not None else None
            inputs = build_inputs(self.specs, imgs, intr, c2e, ego_status, command, temporal)
        except InputError as exc:
            with self._lock:
                self.counters["input_errors"] += 1
            if self.temporal is not None:
                self.temporal.reset()
            self._report(
                DIAG_INPUTS,
                ERROR,
                f"no trajectory for frame {frame.stamp_ns}: {exc.kind} error: {exc}",
                {"stamp_ns": str(frame.stamp_ns), "kind": exc.kind},
            )
            return
        try:
            t_model = time.perf_counter()
            outputs = self.backend.infer(inputs)
            model_ms = (time.perf_counter() - t_model) * 1000.0
            selected, candidates = select_trajectory(outputs, command)
        except Exception as exc:  # noqa: BLE001 - backend failure: report, keep running
            with self._lock:
                self.counters["backend_errors"] += 1
            if self.temporal is not None:
                self.temporal.reset()
            self._report(
                DIAG_INFERENCE,
                ERROR,
                f"no trajectory for frame {frame.stamp_ns}: backend failure: {exc}",
                {"stamp_ns": str(frame.stamp_ns)},
            )
            return
        if self.temporal is not None:
            self.temporal.update(outputs.get("bev_map"), pose)
        self._report(DIAG_INPUTS, OK, f"frame {frame.stamp_ns}: all inputs valid", {})
        processing_ms = (time.perf_counter() - t0) * 1000.0
        self._publish(frame, command, selected, candidates, outputs, ego_status, processing_ms)
        processing_ms = (time.perf_counter() - t0) * 1000.0
        self._last_processing_ms = processing_ms
        self.pub_proc.publish(Float64(data=processing_ms))
        latency_ms = (self.get_clock().now().nanoseconds - frame.stamp_ns) / NS_PER_MS
        self.pub_latency.publish(Float64(data=latency_ms))
        with self._lock:
            self.counters["trajectories"] += 1
        # Keyed by the frame stamp (= the trajectory's stamp) so a tool can pair the model time of each frame with
        # its trajectory (dima bench latency's ros pipeline: ROS overhead = pipeline latency - model latency).
        values = {
            "stamp_ns": str(frame.stamp_ns),
            "input_latency_ms": f"{input_latency_ms:.3f}",
            "processing_time_ms": f"{processing_ms:.3f}",
            "model_time_ms": f"{model_ms:.3f}",
            "pipeline_latency_ms": f"{latency_ms:.3f}",
        }
        if processing_ms > cfg.output.processing_time_budget_ms:
            with self._lock:
                self.counters["over_budget"] += 1
            self._report(
                DIAG_INFERENCE,
                WARN,
                f"frame {frame.stamp_ns}: processing time budget exceeded: "
                f"{processing_ms:.1f} ms > {cfg.output.processing_time_budget_ms:.1f} ms",
                values,
            )
        else:
            # The stamp makes every frame's status a change, so it is published for every frame.
            self._report(
                DIAG_INFERENCE, OK, f"frame {frame.stamp_ns}: trajectory published in {processing_ms:.1f} ms", values
            )
        self._report(DIAG_SYNC, OK, f"frame {frame.stamp_ns} synchronised", {})

    # -- outputs ------------------------------------------------------------------------------------------------

    def _publish(
        self,
        frame: FrameSet,
        command: int,
        selected: np.ndarray,
        candidates: np.ndarray,
        outputs: dict[str, np.ndarray],
        ego_status: np.ndarray,
        processing_ms: float,
    ) -> None:
        cfg = self.cfg
        stamp = ns_to_stamp(frame.stamp_ns)
        frame_id = cfg.output.frame_id
        traj, path = trajectory_messages(
            stamp,
            frame_id,
            command,
            Trajectory.MODE_VISION,
            selected,
            candidates if cfg.output.publish_candidates else None,
            processing_ms,
        )
        self.pub_traj.publish(traj)
        self.pub_path.publish(path)
        self.pub_markers.publish(
            planner_markers(
                traj.header,
                selected,
                decode_agents(outputs, cfg.output.agent_score_threshold),
                decode_map(outputs, cfg.output.map_score_threshold),
            )
        )
        tokens = beam_token_arrays(outputs)
        if cfg.output.publish_beam_tokens and tokens is not None:
            # plan_feature (None without an ``ego_feature`` output) lets the MLLM node plan DiMA-Dual without cameras.
            self.pub_beam.publish(
                beam_tokens.to_msg(
                    beam_tokens.BeamFrame(
                        frame.stamp_ns, frame_id, tokens, plan_feature_array(outputs), ego_status, command
                    )
                )
            )

    # -- diagnostics --------------------------------------------------------------------------------------------

    def _diag_status(self, name: str, level: int, message: str, values: dict[str, str]) -> DiagnosticStatus:
        status = DiagnosticStatus(
            level=level, name=f"{self.get_name()}: {name}", message=message, hardware_id=self.get_fully_qualified_name()
        )
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        return status

    def _report(self, name: str, level: int, message: str, values: dict[str, str]) -> None:
        """Remember the latest status of ``name`` and publish problems at once (not only on the timer)."""
        with self._lock:
            changed = self._status.get(name) != (level, message)
            self._status[name] = (level, message)
        if level != OK:
            self.get_logger().warning(message, throttle_duration_sec=1.0)
        if level != OK or changed:
            array = DiagnosticArray(status=[self._diag_status(name, level, message, values)])
            array.header.stamp = self.get_clock().now().to_msg()
            self.pub_diag.publish(array)

    def _publish_diagnostics(self) -> None:
        with self._lock:
            statuses = dict(self._status)
            counters = {k: str(v) for k, v in self.counters.items()}
        # Frames that completed only because the synchroniser kept waiting for a late but live input (beyond
        # sync.max_wait_ms): a rising count means the machine delivers inputs late, before any frame is lost.
        counters["late_completed"] = str(self.sync.stats.late_completed)
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        for name, (level, message) in statuses.items():
            array.status.append(self._diag_status(name, level, message, counters if name == DIAG_INFERENCE else {}))
        self.pub_diag.publish(array)

    def destroy_node(self) -> None:
        # Also reached (via rclpy's context cleanup) for a node whose constructor failed half-way.
        worker = getattr(self, "_worker", None)
        if worker is not None:
            with self._cv:
                self._stop = True
                self._cv.notify_all()
            worker.join(timeout=5.0)
        pipeline = getattr(self, "cameras_pipeline", None)
        if pipeline is not None:
            pipeline.close()
        super().destroy_node()


def main(args: list[str] | None = None) -> int:
    """``python -m dima_ros.planner_node --ros-args --params-file config/planner_node.yaml``."""
    return run_node("planner_node", PlannerNode, lambda node: SingleThreadedExecutor(), args)


if __name__ == "__main__":
    sys.exit(main())
