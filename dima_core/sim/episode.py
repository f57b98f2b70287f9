"""One closed-loop episode: the planner drives, the world reacts.

Loop (``dt`` = 1 / ``sim_hz``; a plan every ``steps_per_plan`` steps)::

    for k in 0 .. K-1:
        log the world at step k
        if k is a planning step: render the cameras, build the observation, ask the policy, hand the plan to the
            tracking controller (a plan with NaN or the wrong shape is refused and counted; the last plan stays)
        controller -> (acceleration, steering) from the ego state at k
        traffic steps with the ego at k (every road user decides on the same instant), then the bicycle model
        moves the ego to k + 1

Determinism: the same (world config, sim config, scenario, seed, policy) gives the same episode; nothing reads a
clock except the optional latency measurement, which is logged but never fed back.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from dima_core.constants import EGO_FOOTPRINT_FORWARD_OFFSET_M, FUTURE_STEPS, STEP_SECONDS
from dima_core.data.synth.config import SynthConfig
from dima_core.sim.config import SimConfig
from dima_core.sim.controller import TrajectoryTracker
from dima_core.sim.episode_log import EpisodeLog, LaneGeometry, PlanRecord
from dima_core.sim.observation import (
    SimObservation,
    camera_models,
    ego_history,
    ego_pose_matrix,
    ego_status,
    encode_jpeg,
)
from dima_core.sim.policies import EpisodeContext, Policy
from dima_core.sim.route import route_of_driver
from dima_core.sim.scene import episode_scene, simulator_world_config
from dima_core.sim.traffic import ReactiveTraffic
from dima_core.sim.vehicle import KinematicBicycle, VehicleState

PLAN_HORIZON_S = FUTURE_STEPS * STEP_SECONDS


class RejectedPlan(ValueError):
    """A policy output that cannot be executed (wrong shape or non-finite values)."""


def check_plan(plan: object) -> np.ndarray:
    """(6, 2) float64 or :class:`RejectedPlan` naming what is wrong."""
    arr = np.asarray(plan, dtype=np.float64) if not isinstance(plan, np.ndarray) else plan.astype(np.float64)
    if arr.shape != (FUTURE_STEPS, 2):
        raise RejectedPlan(f"plan has shape {arr.shape}, expected ({FUTURE_STEPS}, 2)")
    if not np.isfinite(arr).all():
        raise RejectedPlan("plan has non-finite values (NaN or inf)")
    return arr


@dataclass
class StepView:
    """What a progress callback sees after each planning cycle."""

    step: int
    num_steps: int
    time: float
    command: int


class ClosedLoopEpisode:
    """Build the world of (scenario, seed) once; :meth:`run` drives it with a policy.

    ``run`` can be called with several policies: each run rebuilds the live scene, so runs are independent.
    The pieces of one cycle (``observe``, ``apply_plan``, ``advance``) are public so the ROS simulator node can
    drive the same loop with plans that arrive over DDS.
    """

    def __init__(self, world_cfg: SynthConfig, sim_cfg: SimConfig, scenario: str, seed: int):
        sim_cfg.validate()
        self.sim_cfg = sim_cfg
        seconds = sim_cfg.episode_seconds if sim_cfg.episode_seconds is not None else world_cfg.scene_seconds
        self.world_cfg = simulator_world_config(world_cfg, seconds, sim_cfg.sim_hz)
        self.scenario = scenario
        self.seed = seed
        # The dataset's scene of N keyframes ends at its last keyframe, (N - 1) / 2 s: so does the episode.
        self.num_steps = (self.world_cfg.num_keyframes - 1) * self.world_cfg.steps_per_keyframe + 1
        self.dt = sim_cfg.dt
        self.reference, self._fresh = episode_scene(self.world_cfg, scenario, seed, reference_extra_s=PLAN_HORIZON_S)
        self.expert_progress_curve = self._reference_progress()
        self.expert_progress = float(self.expert_progress_curve[-1])
        self.bicycle = KinematicBicycle(sim_cfg.vehicle)
        self.cameras = camera_models(self.reference.cameras)

    def _reference_progress(self) -> np.ndarray:
        """(K,) metres of route the logged expert had covered at each step of the episode."""
        route = route_of_driver(self._fresh.ego)  # matched at the start, before the reference drove
        s0 = route.matched_s
        out = np.zeros(self.num_steps)
        for k, row in enumerate(self.reference.record.ego[: self.num_steps]):
            route.project(row[:2])
            out[k] = route.matched_s - s0
        return out

    # ---- one episode ------------------------------------------------------------------------------------------
    def start(self, policy_name: str) -> None:
        """Fresh live scene, traffic, vehicle and log buffers."""
        live = copy.deepcopy(self._fresh)
        self.live = live
        self.route = route_of_driver(live.ego)
        self.traffic = ReactiveTraffic(live, self.dt, self.route.xy)
        x, y, yaw = live.ego.pose()
        self.state = VehicleState(x=x, y=y, yaw=yaw, v=live.ego.signed_speed(), a=0.0, steer=0.0)
        self.tracker = TrajectoryTracker(self.sim_cfg.controller, self.sim_cfg.vehicle)
        self.traffic.set_ego(x, y, yaw, live.ego.signed_speed(), route_s=self.route.matched_s)
        self.k = 0
        self.frame = 0
        self.policy_name = policy_name
        self._times: list[float] = []
        self._ego: list[tuple[float, ...]] = []
        self._agents: list[np.ndarray] = []
        self._present: list[np.ndarray] = []
        self.plans: list[PlanRecord] = []
        self.rejected = 0
        self.rejections: list[str] = []
        self.frames: list[list[bytes]] = []
        self.ended_early = ""
        self._last_command = 2

    def context(self) -> EpisodeContext:
        return EpisodeContext(self.reference, self.traffic, self.live.ego, self.dt, 1.0 / self.sim_cfg.planning_hz)

    @property
    def time(self) -> float:
        return self.k * self.dt

    @property
    def done(self) -> bool:
        return self.k >= self.num_steps - 1 or bool(self.ended_early)

    def is_planning_step(self) -> bool:
        return self.k % self.sim_cfg.steps_per_plan == 0

    def yaw_rate(self) -> float:
        s = self.state
        return s.v * math.tan(s.steer) / self.sim_cfg.vehicle.wheelbase_m

    def render_cameras(self) -> list[bytes]:
        """The six cameras at the current step, as JPEG bytes (the dataset's renderer and quality)."""
        s = self.state
        actors = [(a, *a.state()[:3]) for a in self.live.actors if a.visible_now(self.traffic.t)]
        images, _, _ = self.reference.renderer.render((s.x, s.y, s.yaw), actors, True, self.frame, False)
        return encode_jpeg(images, self.world_cfg.camera.jpeg_quality)

    def observe(self, with_images: bool = True) -> SimObservation:
        """Build the planner's inputs at the current step (``with_images`` False: no cameras, for the policies
        that do not look; the run still renders when it keeps frames for a video)."""
        s = self.state
        jpegs = self.render_cameras() if with_images else []
        times = np.asarray(self._times)
        poses = np.asarray(self._ego)[:, :2] if self._ego else np.zeros((0, 2))
        past, past_mask = ego_history(times, poses, self.time, s.x, s.y, s.yaw)
        command = self.route.command(s.x, s.y, s.yaw, s.v)
        self._last_command = command
        return SimObservation(
            time=self.time,
            frame=self.frame,
            images_jpeg=jpegs,
            cameras=self.cameras,
            ego_pose=ego_pose_matrix(s.x, s.y, s.yaw),
            ego_status=ego_status(s.v, s.a, self.yaw_rate()),
            ego_past=past,
            ego_past_mask=past_mask,
            command=command,
        )

    def apply_plan(
        self, plan: object, command: int, latency_ms: float = 0.0, planned_at: tuple[float, VehicleState] | None = None
    ) -> bool:
        """Hand a policy output to the controller; False (and counted) when it is refused.

        ``planned_at`` (time, ego state): the planning cycle the plan was made for, when that is earlier than the
        current step (a plan that arrives over ROS in real time, after the simulation went on: its waypoints are in
        that state's ego frame and timed from then); None: the current step."""
        t, s = planned_at if planned_at is not None else (self.time, self.state)
        try:
            arr = check_plan(plan)
            self.tracker.set_plan(arr, s, t)
        except ValueError as exc:
            self.rejected += 1
            self.rejections.append(f"t={self.time:.1f}s: {exc}")
            return False
        c, sn = math.cos(s.yaw), math.sin(s.yaw)
        world = np.stack([s.x + c * arr[:, 0] - sn * arr[:, 1], s.y + sn * arr[:, 0] + c * arr[:, 1]], axis=1)
        self.plans.append(PlanRecord(t, arr, world, int(command), float(latency_ms)))
        return True

    def log_step(self) -> None:
        s = self.state
        self._times.append(self.time)
        self._ego.append((s.x, s.y, s.yaw, s.v, s.a, s.steer))
        self._agents.append(np.array([a.state() for a in self.live.actors], np.float64).reshape(-1, 4))
        self._present.append(np.array([a.visible_now(self.traffic.t) for a in self.live.actors], bool))

    def advance(self) -> None:
        """Controller, traffic and vehicle from step k to k + 1."""
        s = self.state
        if self.plans:
            accel, steer = self.tracker.command(s, self.time)
        else:  # nothing accepted yet: brake gently to a standstill (never into reverse), keep the wheel
            accel, steer = (-math.copysign(2.0, s.v) if s.v else 0.0), s.steer
        self.traffic.set_ego(s.x, s.y, s.yaw, s.v, route_s=self.route.matched_s)
        self.traffic.step()
        self.state = self.bicycle.step(s, accel, steer, self.dt)
        self.k += 1
        if self.is_planning_step():
            self.frame += 1
        _, off_route = self.route.project(np.array([self.state.x, self.state.y]))
        if off_route > self.sim_cfg.max_route_deviation_m:
            self.ended_early = f"lost: {off_route:.1f} m from the route"

    def run(
        self,
        policy: Policy,
        progress: Callable[[StepView], None] | None = None,
        time_policy: bool = True,
        keep_frames: bool = False,
    ) -> EpisodeLog:
        """Drive the whole episode with ``policy``; returns its log (with the camera frames if ``keep_frames``)."""
        self.start(policy.name)
        policy.reset(self.context())
        needs_images = bool(getattr(policy, "needs_images", True))
        while True:
            self.log_step()
            if self.is_planning_step() and not self.done:
                obs = self.observe(with_images=needs_images or keep_frames)
                if keep_frames:
                    self.frames.append(list(obs.images_jpeg))
                t0 = time.perf_counter()
                try:
                    plan = policy.plan(obs)
                except Exception as exc:  # noqa: BLE001 - a policy that fails on one frame is counted, not fatal
                    plan = exc
                latency = (time.perf_counter() - t0) * 1000.0 if time_policy else 0.0
                if isinstance(plan, Exception):
                    self.rejected += 1
                    self.rejections.append(f"t={self.time:.1f}s: policy raised {type(plan).__name__}: {plan}")
                else:
                    self.apply_plan(plan, obs.command, latency)
                if progress is not None:
                    progress(StepView(self.k, self.num_steps, self.time, obs.command))
            if self.done:
                break
            self.advance()
        return self.log()

    def log(self) -> EpisodeLog:
        """The :class:`EpisodeLog` of the steps run so far."""
        actors = self.live.actors
        agents = np.stack(self._agents, axis=1) if actors else np.zeros((0, len(self._times), 4))
        present = np.stack(self._present, axis=1) if actors else np.zeros((0, len(self._times)), bool)
        lanes = [
            LaneGeometry(
                lane.id, np.asarray(lane.centerline), np.concatenate([lane.left, lane.right[::-1]]), lane.road is None
            )
            for lane in self.live.net.lanes.values()
        ]
        return EpisodeLog(
            scenario=self.scenario,
            seed=self.seed,
            policy=self.policy_name,
            dt=self.dt,
            times=np.asarray(self._times),
            ego=np.asarray(self._ego, np.float64),
            ego_length=float(self.live.ego.length),
            ego_width=float(self.live.ego.width),
            ego_centre_offset=EGO_FOOTPRINT_FORWARD_OFFSET_M,
            agent_ids=np.array([a.id for a in actors], np.int64),
            agent_categories=[a.category for a in actors],
            agent_sizes=np.array([[a.length, a.width] for a in actors], np.float64).reshape(-1, 2),
            agent_static=np.array([a.driver is None and a.walker is None for a in actors], bool),
            agents=agents,
            agent_present=present,
            drivable_area=self.live.net.surface(),
            lanes=lanes,
            route=self.route.xy,
            expert_progress=self.expert_progress,
            route_reverse_segments=list(self.route.reverse_spans),
            expert_route_progress=self.expert_progress_curve[: len(self._times)].copy(),
            camera_frames=list(self.frames),
            plans=list(self.plans),
            ended_early=self.ended_early,
            rejected_plans=self.rejected,
            info={
                "rejections": self.rejections[:20],
                "world_camera": [self.world_cfg.camera.width, self.world_cfg.camera.height],
            },
        )


__all__ = ["ClosedLoopEpisode", "RejectedPlan", "StepView", "check_plan"]
