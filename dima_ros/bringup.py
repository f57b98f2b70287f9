"""``dima ros bringup``: the DiMA nodes of :mod:`dima_ros.launch_spec` in ONE process on a MultiThreadedExecutor.

    dima ros bringup --config config/bringup.yaml [--with-mllm] [--with-evaluator] [--bag BAG [--report R.json]]
                     [--set planner.model.onnx_path=model.onnx ...] [--echo] [--linger S]
    dima ros bringup --sim [--scenarios cruise follow] [--episodes N] [--seed S] [--seconds T] [--timing lockstep]
                     [--sim-out DIR] --set planner.model.onnx_path=model.onnx [--with-mllm]

The pip-only counterpart of ``ros2 launch dima dima.launch.py`` (``launch`` is not installable pip-only). Each
node is built exactly as launch builds it, from ROS command-line arguments: ``-r __node:=<name>``, ``--params-file
<config_dir>/<node>.yaml``, ``-p`` for every override and ``use_sim_time``, ``-r`` for every remapping of the
shared spec. rclpy has no Python components (ros_ecosystem.md section 5), so "composition" is several nodes on one
executor.

``--bag BAG`` replays a ``dima bag convert`` bag with the pip-only player (a child process, as ``ros2 bag play``
would be): it turns on ``use_sim_time`` and the evaluator, waits until the planner and evaluator subscribe, plays,
waits until no trajectory has arrived for ``replay_settle_s``, then prints the latency and the online metrics and
writes the evaluator report. ``--linger S`` keeps serving (e.g. the MLLM node's ``~/ask``) S seconds after that;
without ``--bag`` the nodes run until Ctrl-C / SIGTERM.

``--sim`` closes the loop: the simulator node (``dima_ros/sim_node.py``) publishes the vehicle topics and drives
its episodes with the planner's trajectories, ``use_sim_time`` is on (the simulator publishes ``/clock``), the
planner takes the rig's camera extrinsics (:func:`dima_ros.launch_spec.graph_parameter_overrides`) and the
simulator's CameraInfo. When the last episode is scored the bringup prints the closed-loop table (the planner beside
the simulator's in-process baselines) and the per-episode plan counters, then exits (``--linger`` keeps serving);
the exit status is 1 when the simulation stopped early (e.g. no planner answered).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import yaml

from dima_core.bag.topics import GROUND_TRUTH_TOPIC, image_topic
from dima_core.runtime.bringup_config import BringupConfig
from dima_ros.dds_profile import use_large_data_profile
from dima_ros.launch_spec import (
    MLLM_NAME,
    NODES,
    PLANNER_NAME,
    NodeSpec,
    graph_parameter_overrides,
    is_enabled,
    params_path,
)

log = logging.getLogger(__name__)


def ros_value(value: Any) -> str:
    """A parameter value as the ``-p name:=value`` text rcl parses as YAML: JSON is valid one-line YAML and keeps
    types exact (a string "true" stays a string, 1.0 stays a double)."""
    return json.dumps(value)


def node_arguments(spec: NodeSpec, config: BringupConfig) -> list[str]:
    """The ``--ros-args`` of one node: name, its YAML file, overrides, use_sim_time, remappings."""
    args = ["--ros-args", "-r", f"__node:={spec.name}"]
    path = params_path(spec, config.config_dir or None)
    if not path.is_file():
        raise FileNotFoundError(f"{spec.key} node: parameter file {path} does not exist")
    args += ["--params-file", str(path)]
    flags = {"with_mllm": config.with_mllm, "with_evaluator": config.with_evaluator, "with_sim": config.with_sim}
    overrides = {**graph_parameter_overrides(spec, flags), **(config.parameters.get(spec.key) or {})}
    for name, value in overrides.items():
        args += ["-p", f"{name}:={ros_value(value)}"]
    args += ["-p", f"use_sim_time:={'true' if config.use_sim_time else 'false'}"]
    for source, target in spec.remappings:
        args += ["-r", f"{source}:={target}"]
    return args


def enabled_nodes(config: BringupConfig) -> list[NodeSpec]:
    flags = {"with_mllm": config.with_mllm, "with_evaluator": config.with_evaluator, "with_sim": config.with_sim}
    return [spec for spec in NODES if is_enabled(spec, flags)]


@dataclass
class TrajectoryLog:
    """What ``--echo`` and the replay summary print: per-trajectory processing times and arrival times."""

    processing_ms: list[float] = field(default_factory=list)
    last_arrival: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _monitor_node(echo: bool, record: TrajectoryLog, dual_record: TrajectoryLog | None = None) -> Any:
    """A small node that watches the planner's trajectories (for the latency summary and ``--echo``) and, given
    ``dual_record``, the MLLM node's DiMA-Dual trajectories."""
    import rclpy
    from rclpy.qos import QoSProfile, ReliabilityPolicy

    from dima.msg import Trajectory

    node = rclpy.create_node("dima_bringup_monitor")

    def recorder(log_: TrajectoryLog, label: str):
        def on_trajectory(msg: Trajectory) -> None:
            with log_.lock:
                log_.processing_ms.append(float(msg.processing_time_ms))
                log_.last_arrival = time.monotonic()
                count = len(log_.processing_ms)
            if echo and msg.points:
                end = msg.points[-1].pose.position
                first = msg.points[0].pose.position
                print(
                    f"[{label} {count:3d}] stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d} "
                    f"mode {msg.mode} command {msg.command} first ({first.x:.2f}, {first.y:.2f}) "
                    f"last ({end.x:.2f}, {end.y:.2f}) m, model {msg.processing_time_ms:.1f} ms",
                    flush=True,
                )

        return on_trajectory

    qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
    node.create_subscription(Trajectory, f"/{PLANNER_NAME}/output/trajectory", recorder(record, "trajectory"), qos)
    if dual_record is not None:
        node.create_subscription(
            Trajectory, f"/{MLLM_NAME}/output/dual_trajectory", recorder(dual_record, "dual trajectory"), qos
        )
    return node


def latency_summary(record: TrajectoryLog, what: str = "trajectories") -> str:
    with record.lock:
        values = np.asarray(record.processing_ms, np.float64)
    if values.size == 0:
        return f"no {what} received"
    return (
        f"{values.size} {what}; processing time p50 {np.percentile(values, 50):.1f} ms, "
        f"p99 {np.percentile(values, 99):.1f} ms, max {values.max():.1f} ms"
    )


class Bringup:
    """The nodes of one bringup on a MultiThreadedExecutor spinning on a background thread."""

    def __init__(self, config: BringupConfig, echo: bool = False) -> None:
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        self.config = config
        self.nodes: dict[str, Any] = {}
        self.record = TrajectoryLog()
        self.dual_record = TrajectoryLog()  # the MLLM node's DiMA-Dual trajectories (publish_dual_trajectory)
        self._settle_start = time.monotonic()
        try:
            for spec in enabled_nodes(config):
                log.info("starting %s (%s.%s)", spec.name, spec.module, spec.class_name)
                self.nodes[spec.key] = spec.node_class()(cli_args=node_arguments(spec, config))
            self.monitor = _monitor_node(echo, self.record, self.dual_record if "mllm" in self.nodes else None)
        except BaseException:
            self.destroy()
            raise
        # Threads: one per node for its ordinary callbacks, plus the MLLM queue's waiting service callbacks.
        mllm_waiters = self.nodes["mllm"].config.queue_size if "mllm" in self.nodes else 0
        threads = config.executor_threads or (len(self.nodes) + 2 + mllm_waiters)
        self.executor = MultiThreadedExecutor(num_threads=threads)
        for node in [*self.nodes.values(), self.monitor]:
            self.executor.add_node(node)
        self._thread = threading.Thread(target=self._spin, name="bringup-executor", daemon=True)
        self._thread.start()
        self._rclpy = rclpy

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except ExternalShutdownException:
            pass

    @property
    def running(self) -> bool:
        return self._rclpy.ok() and self._thread.is_alive()

    def wait_settled(self, settle_s: float, timeout_s: float = 600.0) -> None:
        """Return once no trajectory has arrived for ``settle_s`` (the planner drained its queue)."""
        deadline = time.monotonic() + timeout_s
        while self.running and time.monotonic() < deadline:
            with self.record.lock:
                last = self.record.last_arrival
            if time.monotonic() - max(last, self._settle_start) >= settle_s:
                return
            time.sleep(0.1)

    def mark_settle_start(self) -> None:
        self._settle_start = time.monotonic()

    def destroy(self) -> None:
        """Destroy the nodes (the evaluator writes its report) and shut the executor down."""
        executor = getattr(self, "executor", None)
        if executor is not None:
            executor.shutdown(timeout_sec=2.0)
        for node in list(self.nodes.values())[::-1]:
            node.destroy_node()
        self.nodes.clear()
        monitor = getattr(self, "monitor", None)
        if monitor is not None:
            monitor.destroy_node()


def play_bag(bag: str, rate: float) -> subprocess.Popen:
    """The pip-only player in a child process, waiting until the planner and the evaluator subscribe."""
    cmd = [
        sys.executable,
        "-m",
        "dima_ros.bag_player",
        bag,
        "--rate",
        str(rate),
        "--wait-for",
        image_topic("CAM_FRONT"),
        "--wait-for",
        GROUND_TRUTH_TOPIC,
        "--wait-timeout",
        "120",
    ]
    log.info("replaying: %s", " ".join(cmd))
    return subprocess.Popen(cmd, env=os.environ.copy())


def run(
    config: BringupConfig, bag: str | None = None, report: str | None = None, echo: bool = False, linger_s: float = 0.0
) -> int:
    """Start the nodes; with ``bag`` replay it and print/write the online metrics. Returns an exit status."""
    import rclpy

    from dima_core.eval.planning_metrics import format_table

    if config.with_sim and (bag or report or config.with_evaluator):
        raise ValueError(
            "--sim runs the closed-loop simulator, which scores its own episodes: it cannot be combined "
            "with --bag, --report or the evaluator (there is no replayed ground truth)"
        )
    if bag:
        config.use_sim_time = True
        config.with_evaluator = True
    if report:
        config.with_evaluator = True
        config.parameters.setdefault("evaluator", {})["report_path"] = report
    if config.with_sim:
        config.use_sim_time = True  # the simulator publishes /clock
    use_large_data_profile()  # before init; the bag player child process inherits it
    rclpy.init(args=None)
    bringup: Bringup | None = None
    player: subprocess.Popen | None = None
    status = 0
    try:
        bringup = Bringup(config, echo=echo)
        print(
            f"[bringup] running: {', '.join(n.get_fully_qualified_name() for n in bringup.nodes.values())}", flush=True
        )
        if bag:
            player = play_bag(bag, config.replay_rate)
            while player.poll() is None and bringup.running:
                time.sleep(0.1)
            if player.returncode not in (0, None):
                print(f"[bringup] the bag player failed (exit {player.returncode})", file=sys.stderr)
                status = 1
            bringup.mark_settle_start()
            bringup.wait_settled(config.replay_settle_s)
            print(f"[bringup] replay finished: {latency_summary(bringup.record)}", flush=True)
            mllm = bringup.nodes.get("mllm")
            if mllm is not None and mllm.config.publish_dual_trajectory:
                print(
                    f"[bringup] MLLM node: {latency_summary(bringup.dual_record, 'dual trajectories')} "
                    f"({mllm.dual_summary()})",
                    flush=True,
                )
            evaluator = bringup.nodes.get("evaluator")
            if evaluator is not None:
                result = evaluator.write_report()
                print(format_table({"online": result}, "online metrics (same code as dima eval)"), flush=True)
                print(f"[bringup] {evaluator.evaluator.summary_line()}", flush=True)
                if evaluator.config.report_path:
                    print(f"[bringup] report written to {evaluator.config.report_path}", flush=True)
            deadline = time.monotonic() + linger_s
            if linger_s > 0:
                print(f"[bringup] serving {linger_s:.0f} s more (Ctrl-C to stop)", flush=True)
            while bringup.running and time.monotonic() < deadline:
                time.sleep(0.1)
        elif "sim" in bringup.nodes:
            status = _closed_loop(bringup, linger_s)
        else:
            while bringup.running:
                time.sleep(0.2)
    except KeyboardInterrupt:
        pass
    finally:
        if player is not None and player.poll() is None:
            player.send_signal(signal.SIGINT)
            try:
                player.wait(5.0)
            except subprocess.TimeoutExpired:
                player.kill()
        if bringup is not None:
            bringup.destroy()
        rclpy.try_shutdown()
    return status


def _closed_loop(bringup: Bringup, linger_s: float) -> int:
    """Wait for the simulator's last episode, print the closed-loop table; 1 when it stopped early."""
    sim = bringup.nodes["sim"]
    while bringup.running and not sim.finished.wait(0.2):
        pass
    if not sim.finished.is_set():
        return 130  # interrupted
    print(f"[bringup] closed loop finished: {latency_summary(bringup.record)}", flush=True)
    for stats in sim.episode_stats:
        print(
            f"[bringup] {stats['scenario']} seed {stats['seed']} ({stats['timing']}): {stats['applied']}/"
            f"{stats['frames']} plans applied, {stats['missed']} missed, "
            f"{stats['refused'] + stats['refused_frame'] + stats['refused_timing']} refused, {stats['stale']} late, "
            f"latency p50 {stats['latency_ms_p50'] or 0.0:.0f} ms",
            flush=True,
        )
    if sim.report.metrics:
        print(sim.report.table(), flush=True)
        print(f"\n{sim.report.to_dict()['formula']}", flush=True)
    if sim.cfg.output_dir and sim.episode_stats:
        print(f"[bringup] report written to {os.path.join(sim.cfg.output_dir, 'report.json')}", flush=True)
    if sim.failure:
        print(f"[bringup] the simulation stopped early: {sim.failure}", file=sys.stderr, flush=True)
    deadline = time.monotonic() + linger_s
    if linger_s > 0:
        print(f"[bringup] serving {linger_s:.0f} s more (Ctrl-C to stop)", flush=True)
    while bringup.running and time.monotonic() < deadline:
        time.sleep(0.1)
    return 1 if sim.failure else 0


def parse_set(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``--set planner.model.onnx_path=x.onnx`` -> ``{"planner": {"model.onnx_path": "x.onnx"}}`` (YAML values)."""
    out: dict[str, dict[str, Any]] = {}
    for item in values:
        key, sep, value = item.partition("=")
        node, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"--set {item!r}: expected NODE.PARAMETER=VALUE (e.g. planner.model.backend=torch)")
        out.setdefault(node, {})[name] = yaml.safe_load(value) if value else ""
    return out


def load_bringup_config(path: str | None, overrides: dict[str, dict[str, Any]]) -> BringupConfig:
    from dima_core.config import load_config

    config = load_config(path, BringupConfig, section="bringup") if path else BringupConfig()
    known = {spec.key for spec in NODES}
    for node in {**config.parameters, **overrides}:
        if node not in known:
            raise ValueError(f"parameters for unknown node '{node}' (known: {sorted(known)})")
    for node, params in overrides.items():
        config.parameters.setdefault(node, {}).update(params)
    return config


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m dima_ros.bringup`` = ``dima ros bringup``."""
    # Through the dima CLI, not dima_ros.commands.ros: that module imports this one (no import cycle).
    from dima_core.cli import main as cli_main

    return cli_main(["ros", "bringup", *(argv if argv is not None else sys.argv[1:])])


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["Bringup", "enabled_nodes", "load_bringup_config", "main", "node_arguments", "parse_set", "ros_value", "run"]
