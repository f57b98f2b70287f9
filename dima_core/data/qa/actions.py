"""Candidate ego actions, rolled out for 3 s and checked against agent futures and road boundaries.

An action is a constant longitudinal acceleration plus a lateral manoeuvre, integrated from the current speed at
STEP_SECONDS steps in the current ego frame (x forward, y left). Speed-only actions and lateral offsets follow the
ego's own path (the GT future path, :class:`~dima_core.data.qa.motion.EgoPath`), as "keep going" means keeping
the lane; turns leave it with a smooth 90 degree heading change; backing up reverses straight. The ego footprint is
the planning-metric box (EGO_WIDTH_M x EGO_LENGTH_M, centre EGO_FOOTPRINT_FORWARD_OFFSET_M ahead of the ego
origin) turned with the rollout heading; an agent box sits at its annotated future centre and heading. Two boxes
closer than the margin collide (separating-axis test on boxes grown by the margin). Crossing a road-boundary
polyline makes an action unsafe too.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dima_core.constants import (
    EGO_FOOTPRINT_FORWARD_OFFSET_M,
    EGO_LENGTH_M,
    EGO_WIDTH_M,
    FUTURE_STEPS,
    MAP_CLASSES,
    STEP_SECONDS,
)
from dima_core.data.geometry import box_corners_2d, boxes_overlap
from dima_core.data.qa.motion import AgentMotion, EgoPath


@dataclass(frozen=True)
class EgoAction:
    """A DriveLM action phrase and the motion it stands for."""

    key: str
    phrase: str  # DriveLM's wording, e.g. "Keep going at the same speed"
    accel: float  # m/s^2 along the path (negative brakes; the speed never changes sign)
    lateral_m: float  # lateral shift reached smoothly by 3 s (lane change, offset), left positive
    turn_deg: float  # heading change reached by 3 s (turns), left positive
    reverse: bool = False


# The vocabulary DriveLM uses in its planning answers, in the order answers list them.
ACTIONS: tuple[EgoAction, ...] = (
    EgoAction("keep", "Keep going at the same speed", 0.0, 0.0, 0.0),
    EgoAction("accelerate", "Accelerate and go ahead", 1.5, 0.0, 0.0),
    EgoAction("decelerate", "Decelerate gradually without braking", -1.0, 0.0, 0.0),
    EgoAction("brake_gently", "Brake gently to a stop", -2.5, 0.0, 0.0),
    EgoAction("brake_suddenly", "Brake suddenly", -6.0, 0.0, 0.0),
    EgoAction("offset_left", "Slightly offset to the left", 0.0, 1.0, 0.0),
    EgoAction("offset_right", "Slightly offset to the right", 0.0, -1.0, 0.0),
    EgoAction("change_left", "Change to the left lane", 0.0, 3.5, 0.0),
    EgoAction("change_right", "Change to the right lane", 0.0, -3.5, 0.0),
    EgoAction("turn_left", "Turn left", -1.0, 0.0, 90.0),
    EgoAction("turn_right", "Turn right", -1.0, 0.0, -90.0),
    EgoAction("back_up", "Back up", 0.0, 0.0, 0.0, reverse=True),
)
ACTIONS_BY_KEY: dict[str, EgoAction] = {a.key: a for a in ACTIONS}

_REVERSE_SPEED_MPS = 2.0
_MIN_TURN_SPEED_MPS = 3.0  # a turn from standstill still sweeps the junction


def rollout(action: EgoAction, speed: float, path: EgoPath) -> tuple[np.ndarray, np.ndarray]:
    """Ego poses after each step: positions (FUTURE_STEPS, 2) and headings (FUTURE_STEPS,), current ego frame."""
    horizon = FUTURE_STEPS * STEP_SECONDS
    speed = max(float(speed), 0.0)
    xy = np.zeros((FUTURE_STEPS, 2))
    yaw = np.zeros(FUTURE_STEPS)
    if action.reverse:
        for t in range(FUTURE_STEPS):
            xy[t] = (-_REVERSE_SPEED_MPS * (t + 1) * STEP_SECONDS, 0.0)
        return xy, yaw
    if action.turn_deg:
        speed = max(speed, _MIN_TURN_SPEED_MPS)
    x = y = heading = 0.0
    s = 0.0
    v = speed
    sub = 10  # sub-steps per 0.5 s for the integration
    dt = STEP_SECONDS / sub
    for t in range(FUTURE_STEPS):
        for k in range(sub):
            tau = (t * sub + k + 0.5) * dt / horizon  # normalised time in (0, 1)
            v_next = max(v + action.accel * dt, 0.0)
            ds = 0.5 * (v + v_next) * dt
            v = v_next
            s += ds
            # Smooth (cosine) heading profile of a turn.
            heading = math.radians(action.turn_deg) * 0.5 * (1 - math.cos(math.pi * tau))
            x += ds * math.cos(heading)
            y += ds * math.sin(heading)
        if action.turn_deg:
            xy[t], yaw[t] = (x, y), heading
        else:
            # Along the path, shifted sideways by a smooth (cosine) lateral profile for offsets and lane changes.
            point, path_heading = path.pose_at(s)
            shift = action.lateral_m * 0.5 * (1 - math.cos(math.pi * (t + 1) / FUTURE_STEPS))
            normal = np.array([-math.sin(path_heading), math.cos(path_heading)])
            xy[t], yaw[t] = point + shift * normal, path_heading
    return xy, yaw


def ego_footprint(x: float, y: float, yaw: float, margin: float = 0.0) -> np.ndarray:
    """(4, 2) corners of the ego box at pose (x, y, yaw), grown by ``margin`` on every side."""
    off = EGO_FOOTPRINT_FORWARD_OFFSET_M
    return box_corners_2d(
        x + off * math.cos(yaw), y + off * math.sin(yaw), yaw, EGO_LENGTH_M + 2 * margin, EGO_WIDTH_M + 2 * margin
    )


def min_gap(ego_xy: np.ndarray, ego_yaw: np.ndarray, box: np.ndarray, motion: AgentMotion) -> float:
    """Smallest centre-independent clearance proxy over the rollout: distance between the ego footprint centre and
    the agent centre minus both half-diagonals (<= 0 means the circles overlap), in metres."""
    ego_r = 0.5 * math.hypot(EGO_LENGTH_M, EGO_WIDTH_M)
    agent_r = 0.5 * math.hypot(float(box[3]), float(box[4]))
    gaps = []
    for t in range(FUTURE_STEPS):
        cx = ego_xy[t, 0] + EGO_FOOTPRINT_FORWARD_OFFSET_M * math.cos(ego_yaw[t])
        cy = ego_xy[t, 1] + EGO_FOOTPRINT_FORWARD_OFFSET_M * math.sin(ego_yaw[t])
        ax, ay = motion.future_xy[t]
        gaps.append(math.hypot(cx - ax, cy - ay) - ego_r - agent_r)
    return float(min(gaps))


def collides(ego_xy: np.ndarray, ego_yaw: np.ndarray, box: np.ndarray, motion: AgentMotion, margin: float) -> bool:
    """Whether the rollout's footprint overlaps the agent's box (both grown by ``margin`` / 2) at any step."""
    for t in range(FUTURE_STEPS):
        ego = ego_footprint(ego_xy[t, 0], ego_xy[t, 1], ego_yaw[t], margin / 2)
        ax, ay = motion.future_xy[t]
        agent = box_corners_2d(ax, ay, motion.future_yaw[t], float(box[4]) + margin, float(box[3]) + margin)
        if boxes_overlap(ego, agent):
            return True
    return False


def _segments_intersect(p1: np.ndarray, p2: np.ndarray, q: np.ndarray) -> bool:
    """Whether segment p1-p2 crosses any segment of polyline q (M, 2)."""
    if len(q) < 2:
        return False
    a, b = q[:-1], q[1:]

    def orient(u: np.ndarray, v: np.ndarray, w: np.ndarray) -> np.ndarray:
        return (v[..., 0] - u[..., 0]) * (w[..., 1] - u[..., 1]) - (v[..., 1] - u[..., 1]) * (w[..., 0] - u[..., 0])

    d1 = orient(a, b, p1[None, :])
    d2 = orient(a, b, p2[None, :])
    d3 = orient(p1[None, :], p2[None, :], a)
    d4 = orient(p1[None, :], p2[None, :], b)
    return bool(np.any((d1 * d2 < 0) & (d3 * d4 < 0)))


def crosses_boundary(ego_xy: np.ndarray, boundaries: list[np.ndarray]) -> bool:
    """Whether the rollout path (from the origin) crosses any road-boundary polyline (each (P, 2))."""
    path = np.vstack([np.zeros(2), ego_xy])
    for i in range(len(path) - 1):
        if float(np.hypot(*(path[i + 1] - path[i]))) < 1e-6:
            continue
        for line in boundaries:
            if _segments_intersect(path[i], path[i + 1], line):
                return True
    return False


def boundary_polylines(polylines: np.ndarray, labels: np.ndarray) -> list[np.ndarray]:
    """The vector-map polylines labelled 'boundary'."""
    k = MAP_CLASSES.index("boundary")
    return [np.asarray(polylines[j], np.float64) for j in range(len(labels)) if int(labels[j]) == k]


__all__ = [
    "ACTIONS",
    "ACTIONS_BY_KEY",
    "EgoAction",
    "boundary_polylines",
    "collides",
    "crosses_boundary",
    "ego_footprint",
    "min_gap",
    "rollout",
]
