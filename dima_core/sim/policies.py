"""Policies the simulator can drive with. Every policy returns, per planning cycle, 6 waypoints at 0.5 .. 3.0 s in
the current ego frame, and the same tracking controller executes them; so the learned planner and every baseline
are scored through one loop.

- :class:`PlannerPolicy` (``checkpoint:PATH`` / ``onnx:PATH``): the deployed planner through the runtime backends
  and the planner node's own preprocessing (JPEG decode, resize, calibration, ego status, command).
- :class:`ExpertPolicy` (``expert``): the dataset's expert driver, reactive: each cycle it is synchronised to the
  actual ego and rolled out 3 s in a copy of the live traffic (which reacts to it as to the ego); its rollout is
  the plan. The reference, not a competitor.
- :class:`LogReplayPolicy` (``log_replay``): the expert's logged drive (the dataset's, which did not see the
  planner-driven ego), replayed in time.
- :class:`ConstantVelocityPolicy` (``cv``) and :class:`ADMLPPolicy` (``ad_mlp:PATH``): the open-loop baselines.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from dima_core.constants import CAMERA_NAMES, FUTURE_STEPS, STEP_SECONDS
from dima_core.data.synth.traffic import Driver
from dima_core.data.synth.world import SynthScene
from dima_core.eval.baselines import ADMLPBaseline, ConstantVelocityBaseline
from dima_core.export.backends import BackendConfig, PlannerBackend, create_backend
from dima_core.runtime.postprocess import select_trajectory
from dima_core.runtime.preprocess import PreprocessSettings, TemporalState, build_inputs, camera_tensors
from dima_core.sim.observation import SimObservation
from dima_core.sim.traffic import ReactiveTraffic


class PolicyLoadError(ValueError):
    """A policy specification that cannot be turned into a policy (unknown kind, missing or unreadable file)."""


@dataclass
class EpisodeContext:
    """What a policy may know about the episode when it is reset: the reference scene (logged expert drive), the
    live traffic, the expert driver of the live scene, the simulation step and the planning interval."""

    scene: SynthScene
    traffic: ReactiveTraffic
    expert: Driver
    dt: float
    plan_interval_s: float


class Policy(Protocol):
    name: str
    needs_images: bool  # False: the loop skips rendering the cameras for this policy

    def reset(self, context: EpisodeContext) -> None: ...

    def plan(self, obs: SimObservation) -> np.ndarray:
        """(6, 2) waypoints at 0.5 .. 3.0 s in the current ego frame."""
        ...


def to_ego_frame(points_xy: np.ndarray, x: float, y: float, yaw: float) -> np.ndarray:
    c, s = math.cos(yaw), math.sin(yaw)
    d = np.asarray(points_xy, np.float64) - np.array([x, y])
    return np.stack([c * d[:, 0] + s * d[:, 1], -s * d[:, 0] + c * d[:, 1]], axis=1)


def _pose_of(obs: SimObservation) -> tuple[float, float, float]:
    m = obs.ego_pose
    return float(m[0, 3]), float(m[1, 3]), math.atan2(m[1, 0], m[0, 0])


class PlannerPolicy:
    """A trained planner behind a :class:`PlannerBackend` (torch checkpoint or ONNX export)."""

    def __init__(self, backend_config: BackendConfig, name: str | None = None):
        self.backend: PlannerBackend = create_backend(backend_config)
        if self.backend.model_config is None:
            raise PolicyLoadError("the planner backend has no model config; cannot size its inputs")
        self.specs = tuple(self.backend.input_specs)
        self.settings = PreprocessSettings(image_size_wh=tuple(self.backend.model_config.image_size))  # type: ignore
        self.temporal = TemporalState() if any(s.name == "prev_bev" for s in self.specs) else None
        self.name = name or f"planner ({backend_config.backend})"
        self.needs_images = True

    def reset(self, context: EpisodeContext) -> None:
        if self.temporal is not None:
            self.temporal.reset()

    def plan(self, obs: SimObservation) -> np.ndarray:
        images, intrinsics, cam_to_ego = camera_tensors(obs.images_rgb(), obs.cameras, self.settings, CAMERA_NAMES)
        temporal = self.temporal.inputs({s.name: s for s in self.specs}, obs.ego_pose) if self.temporal else None
        inputs = build_inputs(
            self.specs, images, intrinsics, cam_to_ego, obs.ego_status.as_vector(), obs.command, temporal
        )
        outputs = self.backend.infer(inputs)
        if self.temporal is not None:
            self.temporal.update(outputs.get("bev_map"), obs.ego_pose)
        selected, _ = select_trajectory(outputs, obs.command)
        return np.asarray(selected, np.float64)


class ConstantVelocityPolicy:
    """Keeps the current speed along the current heading (the open-loop constant-velocity baseline)."""

    name = "const_velocity"
    needs_images = False  # reads the ego state only: the loop need not render for it

    def __init__(self) -> None:
        self._baseline = ConstantVelocityBaseline()

    def reset(self, context: EpisodeContext) -> None:
        pass

    def plan(self, obs: SimObservation) -> np.ndarray:
        return self._baseline.plan(obs)  # type: ignore[arg-type]  # reads ego_status / ego_past only


class ADMLPPolicy:
    """The ego-status MLP (AD-MLP) fitted on a training split (``dima_core.eval.baselines.ADMLPBaseline``)."""

    name = "ad_mlp"
    needs_images = False  # reads the ego state only: the loop need not render for it

    def __init__(self, path: str | os.PathLike):
        if not os.path.isfile(path):
            raise PolicyLoadError(f"AD-MLP model {path} not found (fit one with `dima sim fit-admlp`)")
        try:
            self._model = ADMLPBaseline.load(path)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is the same user error
            raise PolicyLoadError(f"AD-MLP model {path} cannot be read: {exc}") from None

    def reset(self, context: EpisodeContext) -> None:
        pass

    def plan(self, obs: SimObservation) -> np.ndarray:
        return self._model.plan(obs)  # type: ignore[arg-type]  # reads ego_status / ego_past / command only


class LogReplayPolicy:
    """The expert's logged positions 0.5 .. 3.0 s after now (held at the log's end), in the current ego frame."""

    name = "log_replay"
    needs_images = False  # reads the ego state only: the loop need not render for it

    def reset(self, context: EpisodeContext) -> None:
        self._times = context.scene.record.times
        self._xy = context.scene.record.ego[:, :2]

    def plan(self, obs: SimObservation) -> np.ndarray:
        t = obs.time + STEP_SECONDS * np.arange(1, FUTURE_STEPS + 1)
        pts = np.stack([np.interp(t, self._times, self._xy[:, 0]), np.interp(t, self._times, self._xy[:, 1])], 1)
        return to_ego_frame(pts, *_pose_of(obs))


class ExpertPolicy:
    """The dataset's expert driver in the loop (see the module docstring)."""

    name = "expert"
    needs_images = False  # reads the ego state only: the loop need not render for it

    def reset(self, context: EpisodeContext) -> None:
        self._traffic = context.traffic
        self._driver = copy.deepcopy(context.expert)
        self._steps_per_cycle = max(1, int(round(context.plan_interval_s / context.dt)))
        self._dt = context.dt

    # The expert's own state (arc length, speed) stays authoritative while the tracked ego is this close to it:
    # re-synchronising on every small tracking error would, for example, keep resetting a driver that has just
    # come to rest at a stop sign a few decimetres short of its stop point, so it never counts its dwell.
    SYNC_TOLERANCE_M = 1.0
    SYNC_TOLERANCE_MPS = 1.0

    def _synchronise(self, x: float, y: float, v: float) -> None:
        """Put the expert where the ego actually is (arc length on its current leg, speed) when they differ."""
        d = self._driver
        if d.finished or d.dwell_left >= 0.0:
            return
        path = d.path
        lo, hi = path.index(d.s - 5.0), path.index(d.s + 10.0)
        window = path.xy[lo : hi + 1]
        i = int(np.argmin(np.linalg.norm(window - np.array([x, y]), axis=1)))
        t = path.tangent[lo + i]
        along = (x - window[i, 0]) * math.cos(t) + (y - window[i, 1]) * math.sin(t)
        s_actual = float(min(max(path.s[lo + i] + along, 0.0), path.length))
        if abs(s_actual - d.s) > self.SYNC_TOLERANCE_M:
            d.s = s_actual
        if abs(abs(v) - d.v) > self.SYNC_TOLERANCE_MPS:
            d.v = abs(v)

    def plan(self, obs: SimObservation) -> np.ndarray:
        x, y, yaw = _pose_of(obs)
        self._synchronise(x, y, obs.ego_status.speed)
        rollout = self._traffic.start_rollout(self._driver)
        ego = rollout.ego
        points, next_state = [], None
        for k in range(1, FUTURE_STEPS * int(round(STEP_SECONDS / self._dt)) + 1):
            rollout.step()
            if k == self._steps_per_cycle:
                next_state = copy.deepcopy(ego)
            if k % int(round(STEP_SECONDS / self._dt)) == 0:
                points.append(ego.pose()[:2])
        self._driver = next_state if next_state is not None else ego
        return to_ego_frame(np.array(points), x, y, yaw)


POLICY_KINDS = ("checkpoint:PATH", "onnx:PATH", "expert", "log_replay", "cv", "ad_mlp:PATH")


def make_policy(spec: str, threads: int = 1) -> Policy:
    """A policy from its command-line form (``POLICY_KINDS``); a bad spec or unloadable file is PolicyLoadError."""
    kind, _, arg = spec.partition(":")
    if kind == "expert":
        return ExpertPolicy()
    if kind == "log_replay":
        return LogReplayPolicy()
    if kind in ("cv", "const_velocity"):
        return ConstantVelocityPolicy()
    if kind == "ad_mlp":
        return ADMLPPolicy(arg)
    if kind in ("checkpoint", "onnx"):
        if not arg:
            raise PolicyLoadError(f"policy {spec!r} needs a path: {kind}:PATH")
        if not os.path.exists(arg):
            raise PolicyLoadError(f"policy {spec!r}: {arg} does not exist")
        cfg = (
            BackendConfig(backend="torch", checkpoint=arg, threads=threads)
            if kind == "checkpoint"
            else BackendConfig(backend="onnxruntime", onnx=arg, threads=threads)
        )
        try:
            return PlannerPolicy(cfg, name=f"planner ({os.path.basename(os.path.normpath(arg))})")
        except PolicyLoadError:
            raise
        except Exception as exc:  # noqa: BLE001 - the backends raise many types for a file that does not load
            raise PolicyLoadError(f"policy {spec!r} does not load: {exc}") from None
    raise PolicyLoadError(f"unknown policy {spec!r}; use one of {', '.join(POLICY_KINDS)}")


__all__ = [
    "ADMLPPolicy",
    "ConstantVelocityPolicy",
    "EpisodeContext",
    "ExpertPolicy",
    "LogReplayPolicy",
    "POLICY_KINDS",
    "PlannerPolicy",
    "Policy",
    "PolicyLoadError",
    "make_policy",
    "to_ego_frame",
]
