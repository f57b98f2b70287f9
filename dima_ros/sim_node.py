"""The closed-loop simulator as a ROS 2 node (``python -m dima_ros.sim_node`` / ``ros2 run dima sim_node``): the
synthetic world publishes what a vehicle would, the planner node drives it over DDS, the episode is scored.

A thin adapter: every piece of simulation (scene, traffic, vehicle, controller, observation, plan checks, metrics)
is ``dima_core.sim`` / ``dima_core.eval.closed_loop``, driven through the episode's public steps (``start``,
``log_step``, ``observe``, ``apply_plan``, ``advance``) in the same order as ``ClosedLoopEpisode.run``. What this
node adds is the transport and the timing. Topics, parameters, timing modes: docs/ros_nodes.md (Simulator node).

Per episode, at every planning step the node publishes, stamped with the simulation time: ``/CAM_*/
image_rect_compressed`` (JPEG) and ``/CAM_*/camera_info``, the route command (``/planning/command``); at every
simulation step ``/clock``, ``/odom``, ``/accel`` and ``/tf`` (``/tf_static`` once per episode; both only where
``tf2_msgs`` imports). It subscribes to ``~/input/trajectory`` (dima/Trajectory; remapped to the planner node's
``~/output/trajectory``) and hands each plan to the episode:

- ``lockstep``: after a frame the simulation waits (``plan_timeout_s`` of wall time) for the trajectory stamped
  with that frame, applies it and goes on; without one it counts a missed plan and the ego keeps its last plan.
  Same seed and policy give the same episode as the Python loop (test/test_sim_node.py).
- ``realtime``: one simulation step per ``dt / realtime_rate`` of wall time; a trajectory is applied at the first
  step after it arrives, in the ego frame and time of the frame it is stamped with
  (``apply_plan(planned_at=...)``), so the planner's latency counts; a frame without a plan leaves the ego tracking
  its last plan, as a vehicle would.

A trajectory stamped for a frame the simulator did not publish, in another frame than ``base_link``, timed
otherwise than 0.5 .. 3.0 s, with the wrong number of points or non-finite values is refused, counted and
reported on ``/diagnostics``; the simulation goes on. Before the first episode the node waits until the planner
subscribes and answers a probe frame (best-effort camera readers can lose the first frames after discovery).

After each episode it scores it (``score_episode``, against the in-process expert's metrics as ``dima sim run``
does), publishes the metrics as JSON (std_msgs/String on ``~/output/episode_metrics``, transient local) and writes
``report.json``, ``table.md`` and the episode's poses and plans (``episodes/*.npz``) to ``output_dir``.

Threading: the episodes run on one worker thread (nothing else touches the episode); the trajectory callback only
classifies the message and hands it over under a lock.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from std_msgs.msg import String
from visualization_msgs.msg import MarkerArray

from dima.msg import Trajectory
from dima_core.bag.topics import COMMAND_TOPIC, ODOM_TOPIC, image_topic
from dima_core.constants import CAMERA_NAMES
from dima_core.eval.closed_loop import EpisodeMetrics, score_episode
from dima_core.runtime.sim_node_config import SimNodeConfig, load_sim_setup
from dima_core.sim.episode import ClosedLoopEpisode
from dima_core.sim.observation import ego_status
from dima_core.sim.policies import make_policy
from dima_core.sim.runner import ClosedLoopReport, config_record, machine_line, write_report
from dima_core.sim.vehicle import VehicleState
from dima_ros.converters.markers import MarkerScene, scene_markers
from dima_ros.converters.stamps import NS_PER_S, ns_to_stamp, stamp_to_ns
from dima_ros.converters.trajectory import TrajectoryRejected, plan_from_trajectory
from dima_ros.node_main import run_node
from dima_ros.parameters import ConfigParameters
from dima_ros.sim_messages import VehicleTopics, metrics_json

NODE_NAME = "dima_sim"
log = logging.getLogger(__name__)

TRAJECTORY_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
# Transient local: a subscriber that joins after an episode (``ros2 topic echo``) still gets every episode's metrics.
METRICS_QOS = QoSProfile(
    history=HistoryPolicy.KEEP_LAST,
    depth=100,
    reliability=ReliabilityPolicy.RELIABLE,
    durability=DurabilityPolicy.TRANSIENT_LOCAL,
)
MARKER_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=1, reliability=ReliabilityPolicy.RELIABLE)
DIAGNOSTICS_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=10, reliability=ReliabilityPolicy.RELIABLE)
OK, WARN, ERROR = DiagnosticStatus.OK, DiagnosticStatus.WARN, DiagnosticStatus.ERROR
DIAG_EPISODE, DIAG_PLANS, DIAG_CONNECTION, DIAG_TOPICS = "episode", "plans", "connection", "topics"

# The simulation clock starts here (a zero stamp reads as "unset" to many tools) and never goes back: the probe
# frames come first, every episode starts episode_gap_s after the previous one ended.
CLOCK_START_NS = NS_PER_S
PROBE_INTERVAL_S = 1.0  # wall time between two probe frames while waiting for the planner's first answer
STOP_POLL_S = 0.1


class SimNodeError(ValueError):
    """The node cannot run its episodes (bad parameters, no planner); the message says what to fix."""


class _Stopped(Exception):
    """The node is being destroyed: the worker returns."""


@dataclass
class Frame:
    """A published camera frame: when and from which ego state it was taken, the command it carried."""

    stamp_ns: int
    time: float
    state: VehicleState
    command: int
    published_wall: float


@dataclass
class Reply:
    """A trajectory for a published frame: its (N, 2) waypoints (unchecked) or why it was refused."""

    stamp_ns: int
    xy: np.ndarray | None
    arrival_wall: float
    refused: str = ""


@dataclass
class EpisodeStats:
    """What happened to the frames of one ROS-driven episode (counted plans, by outcome)."""

    frames: int = 0
    applied: int = 0
    missed: int = 0  # lockstep: no trajectory within plan_timeout_s; realtime: none before the episode ended
    refused: int = 0  # the episode refused the plan (wrong number of points, non-finite values)
    refused_frame: int = 0  # not in base_link
    refused_timing: int = 0  # waypoints not at 0.5 .. 3.0 s
    unknown_stamp: int = 0  # stamped for no frame the simulator published
    stale: int = 0  # for an earlier frame, after that frame's wait ended (lockstep) or a newer plan (realtime)
    superseded: int = 0  # realtime: replaced by a newer plan before the simulation could apply it
    overruns: int = 0  # realtime: steps that started more than one step late (the simulation could not keep up)
    latency_ms: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        out = {k: v for k, v in asdict(self).items() if k != "latency_ms"}
        lat = np.asarray(self.latency_ms, np.float64)
        out["latency_ms_p50"] = float(np.percentile(lat, 50)) if lat.size else None
        out["latency_ms_max"] = float(lat.max()) if lat.size else None
        return out


class SimNode(Node):
    """Closed-loop episodes of the synthetic world, driven by a planner over ROS (see the module docstring)."""

    def __init__(self, node_name: str = NODE_NAME, **kwargs: Any) -> None:
        super().__init__(node_name, **kwargs)
        self._params = ConfigParameters(self, SimNodeConfig, on_change=self._apply_config)
        self.cfg: SimNodeConfig = self._params.config
        try:
            self.setup = load_sim_setup(self.cfg)
            specs = sorted(dict.fromkeys(self.cfg.baselines), key=lambda s: s.partition(":")[0] != "expert")
            self.baselines = [make_policy(spec) for spec in specs]
        except (OSError, ValueError) as exc:  # missing file, bad config, unknown scenario or policy
            raise SimNodeError(f"{self.get_fully_qualified_name()}: {exc}") from None
        setup = self.setup
        self.report = ClosedLoopReport()
        self.episode_stats: list[dict[str, Any]] = []
        self.finished = threading.Event()
        self.failure = ""  # why the run stopped before its last episode ("" when it did not)

        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._stop = False
        self._frames: dict[int, Frame] = {}  # this episode's published frames by stamp
        self._old_stamps: set[int] = set()  # frames of earlier episodes
        self._probe_stamps: set[int] = set()
        self._probe_answered = False
        self._pending: int | None = None  # lockstep: the frame being waited for
        self._reply: Reply | None = None  # lockstep: its answer; realtime: the newest unapplied plan
        self._last_applied_ns = -1
        self._answered: set[int] = set()  # frames of this episode a trajectory arrived for
        self._stats = EpisodeStats()
        self._status: dict[str, tuple[int, str]] = {
            DIAG_CONNECTION: (OK, "waiting for the planner"),
            DIAG_EPISODE: (OK, "not started"),
            DIAG_PLANS: (OK, "no plan yet"),
        }
        self._clock_ns = CLOCK_START_NS

        self.topics = VehicleTopics(self)
        for topic, why in self.topics.skipped.items():
            self.get_logger().warning(f"not publishing {topic}: {why}")
        if self.topics.skipped:  # pip-only: no tf2_msgs; the planner does not need /tf (calibration from config)
            self._status[DIAG_TOPICS] = (
                WARN,
                f"not published (message type not installed): {', '.join(sorted(self.topics.skipped))}",
            )
        self.pub_metrics = self.create_publisher(String, "~/output/episode_metrics", METRICS_QOS)
        self.pub_markers = self.create_publisher(MarkerArray, "~/output/markers", MARKER_QOS)
        self.pub_diag = self.create_publisher(DiagnosticArray, "/diagnostics", DIAGNOSTICS_QOS)
        self.create_subscription(Trajectory, "~/input/trajectory", self._on_trajectory, TRAJECTORY_QOS)
        self._traj_topic = self.resolve_topic_name("~/input/trajectory")
        self.create_timer(self.cfg.diagnostics_period_s, self._publish_diagnostics)
        self.get_logger().info(
            f"simulator ready: {len(setup.scenarios)} scenario(s) x {len(setup.seeds)} seed(s), {self.cfg.timing}, "
            f"world {setup.files['world_config']}, cameras {setup.world_cfg.camera.width}x"
            f"{setup.world_cfg.camera.height}; plans from {self._traj_topic}"
        )
        self._worker = threading.Thread(target=self._main, name="dima-sim", daemon=True)
        self._worker.start()

    # -- parameters ---------------------------------------------------------------------------------------------

    def _apply_config(self, cfg: SimNodeConfig) -> None:
        """Only the non-read-only parameters (plan_timeout_s, realtime_rate, publish_markers) can change."""
        self.cfg = cfg

    # -- trajectory callback (executor thread) ------------------------------------------------------------------

    def _on_trajectory(self, msg: Trajectory) -> None:
        ns = stamp_to_ns(msg.header.stamp)
        arrival = time.monotonic()
        with self._cv:
            if ns in self._probe_stamps:
                self._probe_answered = True
                self._cv.notify_all()
                return
            known = ns in self._frames
            if not known:
                self._stats.stale += ns in self._old_stamps
                self._stats.unknown_stamp += ns not in self._old_stamps
        if not known:
            if ns in self._old_stamps:
                self._report(DIAG_PLANS, WARN, f"trajectory for frame {ns} of an earlier episode ignored")
            else:
                self._report(
                    DIAG_PLANS,
                    ERROR,
                    f"trajectory refused: stamped {ns} ns, a frame the simulator did "
                    "not publish (its header.stamp must be the camera frame's)",
                    {"stamp_ns": str(ns)},
                )
            return
        try:
            reply = Reply(ns, plan_from_trajectory(msg), arrival)
        except TrajectoryRejected as exc:
            with self._cv:
                if exc.kind == "frame":
                    self._stats.refused_frame += 1
                else:
                    self._stats.refused_timing += 1
            self._report(
                DIAG_PLANS, ERROR, f"trajectory for frame {ns} refused: {exc}", {"stamp_ns": str(ns), "kind": exc.kind}
            )
            reply = Reply(ns, None, arrival, refused=str(exc))
        self._deliver(reply)

    def _deliver(self, reply: Reply) -> None:
        """Hand a reply to the worker: the awaited frame's (lockstep) or the newest plan (realtime). A refused
        reply (``xy`` None, already counted) still ends a lockstep wait: the planner has answered that frame."""
        stale = False
        with self._cv:
            self._answered.add(reply.stamp_ns)
            if self.cfg.timing == "lockstep":
                if reply.stamp_ns == self._pending and self._reply is None:
                    self._reply = reply
                    self._cv.notify_all()
                else:
                    stale = reply.xy is not None
            elif reply.xy is None:
                pass
            elif reply.stamp_ns <= self._last_applied_ns:
                stale = True
            elif self._reply is None:
                self._reply = reply
            elif reply.stamp_ns > self._reply.stamp_ns:
                self._stats.superseded += 1  # the newer plan wins; the older one was never executed
                self._reply = reply
            else:
                stale = True
            self._stats.stale += stale
        if stale:
            self._report(
                DIAG_PLANS,
                WARN,
                f"trajectory for frame {reply.stamp_ns} arrived too late: "
                + ("its wait had ended" if self.cfg.timing == "lockstep" else "a newer plan is in use"),
            )

    # -- worker -------------------------------------------------------------------------------------------------

    def _main(self) -> None:
        try:
            self._connect()
            for scenario in self.setup.scenarios:
                for seed in self.setup.seeds:
                    self._run_episode(scenario, seed)
            self._report(DIAG_EPISODE, OK, f"done: {len(self.episode_stats)} episode(s)")
            where = f"; table in {os.path.join(self.cfg.output_dir, 'table.md')}" if self.cfg.output_dir else ""
            self.get_logger().info(f"closed loop done: {len(self.episode_stats)} episode(s){where}")
        except _Stopped:
            self.failure = "stopped before the last episode"
        except Exception as exc:  # noqa: BLE001 - report why the run ended, never die silently on the worker
            self.failure = str(exc) if isinstance(exc, SimNodeError) else f"{type(exc).__name__}: {exc}"
            self._report(DIAG_EPISODE, ERROR, f"simulation stopped: {self.failure}")
            self.get_logger().error(f"simulation stopped: {self.failure}")
        finally:
            self.finished.set()

    def _check_stop(self) -> None:
        if self._stop:
            raise _Stopped()

    def _sleep(self, seconds: float) -> None:
        with self._cv:
            self._cv.wait_for(lambda: self._stop, timeout=max(seconds, 0.0))
        self._check_stop()

    def _connect(self) -> None:
        """Wait for the planner: subscribers on the cameras, odometry and command, a publisher on the trajectory
        topic, then a trajectory for one of the probe frames (the first episode's first frame, stamped before it)."""
        deadline = time.monotonic() + self.cfg.connect_timeout_s
        wanted = [image_topic(cam) for cam in CAMERA_NAMES] + [ODOM_TOPIC, COMMAND_TOPIC]
        while True:
            counts = self.topics.subscription_counts()
            missing = [t for t in wanted if counts.get(t, 0) == 0]
            if self.count_publishers(self._traj_topic) == 0:
                missing.append(f"a publisher on {self._traj_topic}")
            if not missing:
                break
            if time.monotonic() > deadline:
                raise SimNodeError(
                    f"no planner within {self.cfg.connect_timeout_s:g} s: nobody on {', '.join(missing)}"
                )
            self._sleep(STOP_POLL_S)
        scenario, seed = self.setup.scenarios[0], self.setup.seeds[0]
        episode = ClosedLoopEpisode(self.setup.world_cfg, self.setup.sim_cfg, scenario, seed)
        episode.start("probe")
        obs = episode.observe(with_images=True)
        self.topics.publish_static(self._clock_ns, episode.reference.cameras)
        probes = 0
        while True:
            ns = self._clock_ns
            with self._cv:
                self._probe_stamps.add(ns)
            s = episode.state
            self.topics.publish_clock(ns)
            self.topics.publish_state(ns, s.x, s.y, s.yaw, obs.ego_status)
            self.topics.publish_frame(ns, episode.reference.cameras, obs.images_jpeg, obs.command)
            probes += 1
            self._clock_ns += int(PROBE_INTERVAL_S * NS_PER_S)
            with self._cv:
                self._cv.wait_for(lambda: self._probe_answered or self._stop, timeout=PROBE_INTERVAL_S)
                answered = self._probe_answered
            self._check_stop()
            if answered:
                break
            if time.monotonic() > deadline:
                raise SimNodeError(
                    f"the planner subscribed but answered none of {probes} probe frames within "
                    f"{self.cfg.connect_timeout_s:g} s (see its /diagnostics)"
                )
        self._report(DIAG_CONNECTION, OK, f"planner answered probe frame {probes}")
        self.get_logger().info(f"planner connected (answered probe frame {probes})")

    def _run_episode(self, scenario: str, seed: int) -> None:
        episode = ClosedLoopEpisode(self.setup.world_cfg, self.setup.sim_cfg, scenario, seed)
        reference: EpisodeMetrics | None = None
        baseline_metrics = {}
        for policy in self.baselines:  # the expert first (validated in SimNodeConfig, sorted at start)
            self._check_stop()
            ep_log = episode.run(policy)
            # As dima_core.sim.runner scores: the expert is its own reference (its sanctioned manoeuvre's map-rule
            # breach is waived for it too); every other policy is compared with the expert's raw metrics.
            if policy.name == "expert":
                reference = score_episode(ep_log)
            metrics = score_episode(ep_log, reference)
            baseline_metrics[policy.name] = metrics
            self.report.metrics.append(metrics)
        self._report(DIAG_EPISODE, OK, f"{scenario} seed {seed}: driving ({self.cfg.timing})")
        t0 = time.perf_counter()
        ep_log, stats = self._drive(episode)
        metrics = score_episode(ep_log, reference)
        self.report.metrics.append(metrics)
        summary = {
            "scenario": scenario,
            "seed": seed,
            "timing": self.cfg.timing,
            **stats.summary(),
            "rejections": list(episode.rejections[:20]),
            "wall_s": time.perf_counter() - t0,
        }
        self.episode_stats.append(summary)
        self.pub_metrics.publish(
            String(
                data=metrics_json(
                    {
                        "scenario": scenario,
                        "seed": seed,
                        "policy": metrics.policy,
                        "metrics": metrics.to_dict(),
                        "ros": summary,
                        "baselines": {n: m.to_dict() for n, m in baseline_metrics.items()},
                    }
                )
            )
        )
        self._write_outputs(episode, ep_log, metrics)
        line = (
            f"{scenario} seed {seed} {metrics.policy}: score {metrics.score:.3f}, "
            f"{'success' if metrics.success else 'fail'}, progress {metrics.progress_m:.0f} m; "
            f"{stats.applied}/{stats.frames} plans applied, {stats.missed} missed, "
            f"{stats.refused + stats.refused_frame + stats.refused_timing + stats.unknown_stamp} refused"
        )
        self._report(DIAG_EPISODE, OK, line)
        self.get_logger().info(line)

    # -- one ROS-driven episode -----------------------------------------------------------------------------------

    def _begin(self, episode: ClosedLoopEpisode) -> int:
        """Fresh episode state; returns its clock origin (ns)."""
        episode.start(self.cfg.policy_name)
        base = self._clock_ns + int(round(self.cfg.episode_gap_s * NS_PER_S))
        with self._cv:
            self._old_stamps.update(self._frames)
            self._frames = {}
            self._pending, self._reply, self._last_applied_ns = None, None, -1
            self._answered = set()
            self._stats = EpisodeStats()
        self.topics.publish_static(base, episode.reference.cameras)
        return base

    def _drive(self, episode: ClosedLoopEpisode):
        base = self._begin(episode)
        dt_ns = int(round(episode.dt * NS_PER_S))
        driven: list[tuple[float, float]] = []
        wall0 = time.monotonic()
        realtime = self.cfg.timing == "realtime"
        while True:
            self._check_stop()
            if realtime:
                self._pace(wall0, episode)
                self._apply_newest(episode)
            episode.log_step()
            s = episode.state
            driven.append((s.x, s.y))
            ns = base + episode.k * dt_ns
            self._clock_ns = ns
            self.topics.publish_clock(ns)
            if episode.is_planning_step() and not episode.done:
                obs = episode.observe(with_images=True)
                frame = Frame(ns, episode.time, s, obs.command, time.monotonic())
                with self._cv:
                    self._frames[ns] = frame
                    self._stats.frames += 1
                    if not realtime:
                        self._pending, self._reply = ns, None
                self.topics.publish_state(ns, s.x, s.y, s.yaw, obs.ego_status)
                self.topics.publish_frame(ns, episode.reference.cameras, obs.images_jpeg, obs.command)
                if self.cfg.publish_markers:
                    self._publish_markers(episode, driven, ns)
                if not realtime:
                    self._await_plan(episode, frame)
            else:
                self.topics.publish_state(ns, s.x, s.y, s.yaw, ego_status(s.v, s.a, episode.yaw_rate()))
            if episode.done:
                break
            episode.advance()
        with self._cv:
            stats = self._stats
            self._pending = None
            if realtime:  # frames no trajectory arrived for before the episode ended
                stats.missed = len(set(self._frames) - self._answered)
        return episode.log(), stats

    def _await_plan(self, episode: ClosedLoopEpisode, frame: Frame) -> None:
        """Lockstep: wait for the frame's trajectory, then apply it (or count it missed)."""
        deadline = time.monotonic() + self.cfg.plan_timeout_s
        with self._cv:
            while self._reply is None and not self._stop and time.monotonic() < deadline:
                self._cv.wait(timeout=max(0.0, deadline - time.monotonic()))
            reply, self._reply, self._pending = self._reply, None, None
            if reply is None and not self._stop:
                self._stats.missed += 1
        self._check_stop()
        if reply is None:
            self._report(
                DIAG_PLANS,
                WARN,
                f"no trajectory for frame {frame.stamp_ns} within "
                f"{self.cfg.plan_timeout_s:g} s: the ego keeps its last plan",
            )
        elif reply.xy is not None:
            self._apply(episode, reply, frame)

    def _pace(self, wall0: float, episode: ClosedLoopEpisode) -> None:
        """Realtime: start step k at wall0 + k dt / realtime_rate (count the step when it starts late)."""
        due = wall0 + episode.k * episode.dt / self.cfg.realtime_rate
        late = time.monotonic() - due
        if late > episode.dt / self.cfg.realtime_rate:
            with self._cv:
                self._stats.overruns += 1
        elif late < 0:
            self._sleep(-late)

    def _apply_newest(self, episode: ClosedLoopEpisode) -> None:
        with self._cv:
            reply, self._reply = self._reply, None
            frame = self._frames.get(reply.stamp_ns) if reply is not None else None
            if reply is not None:
                self._last_applied_ns = reply.stamp_ns
        if reply is not None and frame is not None:
            self._apply(episode, reply, frame, planned_at=(frame.time, frame.state))

    def _apply(
        self,
        episode: ClosedLoopEpisode,
        reply: Reply,
        frame: Frame,
        planned_at: tuple[float, VehicleState] | None = None,
    ) -> None:
        latency_ms = (reply.arrival_wall - frame.published_wall) * 1000.0
        accepted = episode.apply_plan(reply.xy, frame.command, latency_ms, planned_at=planned_at)
        with self._cv:
            if accepted:
                self._stats.applied += 1
                self._stats.latency_ms.append(latency_ms)
            else:
                self._stats.refused += 1
        if accepted:
            self._report(DIAG_PLANS, OK, f"plan for frame {frame.stamp_ns} applied ({latency_ms:.0f} ms)")
        else:
            self._report(
                DIAG_PLANS,
                ERROR,
                f"trajectory for frame {frame.stamp_ns} refused: {episode.rejections[-1]}; the ego keeps its last plan",
                {"stamp_ns": str(frame.stamp_ns)},
            )

    # -- outputs ------------------------------------------------------------------------------------------------

    def _publish_markers(self, episode: ClosedLoopEpisode, driven: list[tuple[float, float]], ns: int) -> None:
        s = episode.state
        agents = [
            (a.id, *a.state()[:3], a.length, a.width, a.category)
            for a in episode.live.actors
            if a.visible_now(episode.traffic.t)
        ]
        plan = episode.plans[-1].trajectory_global if episode.plans else None
        scene = MarkerScene(
            (s.x, s.y, s.yaw),
            (float(episode.live.ego.length), float(episode.live.ego.width)),
            agents,
            episode.route.xy,
            np.asarray(driven),
            plan,
        )
        self.pub_markers.publish(scene_markers(scene, ns_to_stamp(ns)))

    def _write_outputs(self, episode: ClosedLoopEpisode, ep_log: Any, metrics: EpisodeMetrics) -> None:
        out = self.cfg.output_dir
        if not out:
            return
        setup = self.setup
        stem = os.path.join(out, "episodes", episode_file_stem(metrics.scenario, metrics.seed, metrics.policy))
        os.makedirs(os.path.dirname(stem), exist_ok=True)
        plans = ep_log.plans
        np.savez(
            stem + ".npz",
            times=ep_log.times,
            ego=ep_log.ego,
            plan_times=np.array([p.time for p in plans], np.float64),
            plans_ego=np.array([p.trajectory_ego for p in plans], np.float64).reshape(-1, 6, 2),
            plan_commands=np.array([p.command for p in plans], np.int64),
            plan_latency_ms=np.array([p.latency_ms for p in plans], np.float64),
            rejected_plans=np.int64(ep_log.rejected_plans),
        )
        write_report(
            self.report,
            os.path.join(out, "report.json"),
            command="dima_ros.sim_node",
            machine=machine_line(),
            seeds=setup.seeds,
            scenarios=setup.scenarios,
            config=config_record(setup.world_cfg, setup.sim_cfg),
            files_used=setup.files,
            ros={"node": self.get_fully_qualified_name(), "timing": self.cfg.timing, "episodes": self.episode_stats},
        )
        with open(os.path.join(out, "table.md"), "w") as f:
            f.write(self.report.table() + "\n")

    # -- diagnostics --------------------------------------------------------------------------------------------

    def _diag_status(self, name: str, level: int, message: str, values: dict[str, str]) -> DiagnosticStatus:
        status = DiagnosticStatus(
            level=level, name=f"{self.get_name()}: {name}", message=message, hardware_id=self.get_fully_qualified_name()
        )
        status.values = [KeyValue(key=k, value=v) for k, v in values.items()]
        return status

    def _report(self, name: str, level: int, message: str, values: dict[str, str] | None = None) -> None:
        """Remember the latest status of ``name``; publish problems (and changes) at once."""
        with self._lock:
            changed = self._status.get(name) != (level, message)
            self._status[name] = (level, message)
        if level != OK:
            self.get_logger().warning(message, throttle_duration_sec=1.0)
        if level != OK or changed:
            array = DiagnosticArray(status=[self._diag_status(name, level, message, values or {})])
            array.header.stamp = self.get_clock().now().to_msg()
            self.pub_diag.publish(array)

    def counters(self) -> dict[str, str]:
        """The current episode's plan counters (the DIAG_PLANS status values of the periodic summary)."""
        with self._lock:
            summary = self._stats.summary()
        return {k: str(v) for k, v in summary.items()}

    def _publish_diagnostics(self) -> None:
        with self._lock:
            statuses = dict(self._status)
        counters = self.counters()
        array = DiagnosticArray()
        array.header.stamp = self.get_clock().now().to_msg()
        for name, (level, message) in statuses.items():
            array.status.append(self._diag_status(name, level, message, counters if name == DIAG_PLANS else {}))
        self.pub_diag.publish(array)

    def destroy_node(self) -> None:
        # Also reached for a node whose constructor failed half-way (no worker yet).
        worker = getattr(self, "_worker", None)
        if worker is not None and worker is not threading.current_thread():
            with self._cv:
                self._stop = True
                self._cv.notify_all()
            worker.join(timeout=10.0)
        super().destroy_node()


def episode_file_stem(scenario: str, seed: int, policy: str) -> str:
    """``<scenario>_s<seed>_<policy>`` with the policy name reduced to file-name characters."""
    safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in policy).strip("_") or "policy"
    return f"{scenario}_s{seed}_{safe}"


class _UntilFinished(SingleThreadedExecutor):
    """Spins until ROS shuts down or, with ``shutdown_when_done``, until the node's last episode is scored (the
    process then exits, which ends a launch: sim_closed_loop.launch.py)."""

    def __init__(self, node: SimNode) -> None:
        super().__init__()
        self.node = node

    def spin(self) -> None:
        node = self.node
        while self.context.ok() and not (node.cfg.shutdown_when_done and node.finished.is_set()):
            self.spin_once(timeout_sec=STOP_POLL_S)


def main(args: list[str] | None = None) -> int:
    """``python -m dima_ros.sim_node --ros-args --params-file config/sim_node.yaml -r ~/input/trajectory:=...``;
    exit status 1 when the simulation stopped before its last episode (e.g. no planner answered)."""
    executors: list[_UntilFinished] = []

    def make_executor(node: SimNode) -> _UntilFinished:
        executors.append(_UntilFinished(node))
        return executors[0]

    status = run_node("sim_node", SimNode, make_executor, args)
    if status == 0 and executors and executors[0].node.failure:
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["EpisodeStats", "NODE_NAME", "SimNode", "SimNodeError", "episode_file_stem", "main"]
