"""ROS-free postprocessing: the command-selected trajectory as Autoware-style points, and decoded BEAM outputs.

Waypoints are 0.5 s apart (``constants.STEP_SECONDS``) starting 0.5 s ahead, in base_link. Yaw of point i is the
heading of the segment from point i-1 (the ego origin for i = 0) to point i; velocity is that segment's length over
0.5 s. A segment shorter than ``min_segment_m`` (standing still) keeps the previous yaw, since atan2 of noise is
meaningless.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from dima_core.constants import STEP_SECONDS


@dataclass(frozen=True)
class PlanPoint:
    """One planned waypoint."""

    time_from_start_s: float
    x: float
    y: float
    yaw: float
    velocity_mps: float


def select_trajectory(outputs: Mapping[str, np.ndarray], command: int) -> tuple[np.ndarray, np.ndarray]:
    """``(T, 2)`` trajectory of ``command`` and ``(num_commands, T, 2)`` candidates from backend outputs."""
    candidates = np.asarray(outputs["trajectories"], np.float64)[0]
    if not 0 <= int(command) < candidates.shape[0]:
        raise ValueError(f"command {command} out of range for {candidates.shape[0]} modes")
    selected = candidates[int(command)]
    if not np.isfinite(candidates).all():
        raise ValueError("the model returned non-finite trajectories")
    return selected, candidates


def trajectory_points(xy: np.ndarray, dt: float = STEP_SECONDS, min_segment_m: float = 1e-3) -> list[PlanPoint]:
    """Points with time, yaw and velocity from consecutive positions (see module docstring)."""
    points: list[PlanPoint] = []
    prev = np.zeros(2)
    yaw = 0.0
    for i, p in enumerate(np.asarray(xy, np.float64)):
        d = p - prev
        length = float(math.hypot(d[0], d[1]))
        if length >= min_segment_m:
            yaw = math.atan2(d[1], d[0])
        points.append(PlanPoint((i + 1) * dt, float(p[0]), float(p[1]), yaw, length / dt))
        prev = p
    return points


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, np.float64)))


@dataclass(frozen=True)
class AgentDetection:
    box: tuple[float, ...]  # x, y, z, w, l, h, yaw in base_link
    label: int
    score: float


@dataclass(frozen=True)
class MapElement:
    points: np.ndarray  # (P, 2)
    label: int
    score: float


def decode_agents(outputs: Mapping[str, np.ndarray], threshold: float) -> list[AgentDetection]:
    """Agents whose best class score (sigmoid of ``agent_logits``) reaches ``threshold``; [] without BEAM outputs."""
    if "agent_boxes" not in outputs or "agent_logits" not in outputs:
        return []
    boxes = np.asarray(outputs["agent_boxes"])[0]
    scores = _sigmoid(np.asarray(outputs["agent_logits"])[0])
    out = []
    for box, s in zip(boxes, scores, strict=True):
        label = int(np.argmax(s))
        if s[label] >= threshold and np.isfinite(box).all():
            out.append(AgentDetection(tuple(float(v) for v in box), label, float(s[label])))
    return out


def decode_map(outputs: Mapping[str, np.ndarray], threshold: float) -> list[MapElement]:
    """Map polylines whose best class score reaches ``threshold``; [] without BEAM outputs."""
    if "map_polylines" not in outputs or "map_logits" not in outputs:
        return []
    lines = np.asarray(outputs["map_polylines"])[0]
    scores = _sigmoid(np.asarray(outputs["map_logits"])[0])
    out = []
    for line, s in zip(lines, scores, strict=True):
        label = int(np.argmax(s))
        if s[label] >= threshold and np.isfinite(line).all():
            out.append(MapElement(np.asarray(line, np.float64), label, float(s[label])))
    return out


def beam_token_arrays(outputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray] | None:
    """``{bev, ego, agents, map}`` without the batch dimension, or None when the backend has no BEAM outputs."""
    names = ("bev", "ego", "agents", "map")
    if not all(n in outputs for n in names):
        return None
    return {n: np.asarray(outputs[n], np.float32)[0] for n in names}


def plan_feature_array(outputs: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """The planner's penultimate ego feature of the first sample as (1, C_plan) float32 (dima/msg/BeamTokens
    ``plan_feature``, what DiMA-Dual fuses), or None when the backend does not output ``ego_feature``."""
    if "ego_feature" not in outputs:
        return None
    return np.asarray(outputs["ego_feature"], np.float32)[:1].reshape(1, -1)


__all__ = [
    "AgentDetection",
    "MapElement",
    "PlanPoint",
    "beam_token_arrays",
    "decode_agents",
    "decode_map",
    "plan_feature_array",
    "select_trajectory",
    "trajectory_points",
]
