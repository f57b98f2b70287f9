"""Motion facts the answers are derived from: agent motion classes, the ego path, and ego behaviour bins.

All positions are in the current ego frame (x forward, y left, metres); futures are FUTURE_STEPS waypoints at
STEP_SECONDS spacing with validity masks, as in :class:`~dima_core.data.sample.DrivingSample`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from dima_core.constants import FUTURE_STEPS, STEP_SECONDS
from dima_core.data.qa.config import QAConfig
from dima_core.data.sample import AgentAnnotations, DrivingSample

# DriveLM's answers to "What is the moving status of object <c>?" (challenge/convert_data.py lists the choices).
MOVING_GOING_AHEAD = "Going ahead."
MOVING_TURN_LEFT = "Turn left."
MOVING_TURN_RIGHT = "Turn right."
MOVING_STOPPED = "Stopped."
MOVING_BACK_UP = "Back up."
MOVING_STATUS_CHOICES: tuple[str, ...] = (
    MOVING_GOING_AHEAD, MOVING_TURN_RIGHT, MOVING_TURN_LEFT, MOVING_STOPPED, MOVING_BACK_UP,
    "Reverse parking.", "Drive backward.",
)  # fmt: skip

# DriveLM's behaviour answer parts (challenge/convert_data.py lists the 21 combinations that occur).
STEER_PHRASES: tuple[str, ...] = (
    "steering to the right", "slightly steering to the right", "going straight",
    "slightly steering to the left", "steering to the left",
)  # fmt: skip
SPEED_PHRASES: tuple[str, ...] = (
    "not moving", "driving slowly", "driving with normal speed", "driving fast", "driving very fast",
)  # fmt: skip


@dataclass
class AgentMotion:
    """How one agent moves, in words and numbers."""

    speed: float  # m/s, from the annotated velocity (or the future when the velocity is unknown)
    moving: bool
    moving_status: str  # one of MOVING_STATUS_CHOICES
    future_state: str  # DriveLM's "What is the future state of <c>?" answer
    future_xy: np.ndarray  # (FUTURE_STEPS, 2) future centres, invalid steps filled by constant-position hold
    future_yaw: np.ndarray  # (FUTURE_STEPS,) future headings in the current ego frame


def _heading_from_motion(start: np.ndarray, end: np.ndarray, fallback: float) -> float:
    d = end - start
    return float(math.atan2(d[1], d[0])) if float(np.hypot(*d)) > 1e-3 else fallback


def _wrap(a: float) -> float:
    return (a + math.pi) % (2.0 * math.pi) - math.pi


def agent_motion(agents: AgentAnnotations, i: int, cfg: QAConfig) -> AgentMotion:
    """Classify agent ``i`` from its velocity and annotated future (current ego frame)."""
    box = agents.boxes[i]
    pos = np.asarray(box[:2], np.float64)
    yaw = float(box[6])
    mask = np.asarray(agents.future_mask[i], bool)
    future = np.asarray(agents.future[i], np.float64).copy()
    future_yaw_raw = getattr(agents, "future_yaw", None)
    yaws = np.full(FUTURE_STEPS, yaw) if future_yaw_raw is None else np.asarray(future_yaw_raw[i], np.float64).copy()
    # Hold the last known state where the future is missing (annotation track ended): the conservative guess.
    last_xy, last_yaw = pos, yaw
    for t in range(FUTURE_STEPS):
        if mask[t]:
            last_xy, last_yaw = future[t], yaws[t]
        else:
            future[t], yaws[t] = last_xy, last_yaw

    vel = np.asarray(agents.velocities[i], np.float64)
    valid = np.flatnonzero(mask)
    if np.all(np.isfinite(vel)):
        speed = float(np.hypot(*vel))
    elif valid.size:
        speed = float(np.hypot(*(future[valid[0]] - pos))) / ((valid[0] + 1) * STEP_SECONDS)
    else:
        speed = 0.0
    end = future[valid[-1]] if valid.size else pos
    displacement = float(np.hypot(*(end - pos)))
    moving = speed > cfg.moving_speed_mps or displacement > cfg.stationary_displacement_m

    # Motion in the agent's own frame: forward/lateral shift and heading change over the known future.
    c, s = math.cos(yaw), math.sin(yaw)
    d = end - pos
    forward, lateral = c * d[0] + s * d[1], -s * d[0] + c * d[1]
    end_heading = (
        float(yaws[valid[-1]])
        if (valid.size and future_yaw_raw is not None)
        else (_heading_from_motion(future[valid[-2]] if valid.size > 1 else pos, end, yaw) if valid.size else yaw)
    )
    turn = math.degrees(_wrap(end_heading - yaw))

    if not moving or displacement <= cfg.stationary_displacement_m:
        moving_status = MOVING_STOPPED if not moving else MOVING_GOING_AHEAD
        future_state = "Stationary." if not moving else "Keep going straight."
    elif forward < -cfg.stationary_displacement_m:
        moving_status = future_state = MOVING_BACK_UP
    elif abs(turn) >= cfg.turn_angle_deg:
        moving_status = future_state = MOVING_TURN_LEFT if turn > 0 else MOVING_TURN_RIGHT
    else:
        moving_status = MOVING_GOING_AHEAD
        if abs(lateral) >= cfg.offset_lateral_m:
            side = "left" if lateral > 0 else "right"
            future_state = f"Slightly offset to the {side} in maneuvering."
        else:
            future_state = "Keep going straight."
    return AgentMotion(speed, moving, moving_status, future_state, future, yaws)


class EgoPath:
    """The corridor the ego will drive: GT future path from the ego origin, extended at both ends.

    ``frenet((x, y))`` gives arc length ``s`` along the path (0 at the ego origin, negative behind) and signed
    lateral offset ``d`` (left positive).
    """

    def __init__(self, sample: DrivingSample, cfg: QAConfig):
        mask = np.asarray(sample.ego_future_mask, bool)
        pts = [np.zeros(2)]
        for t in range(FUTURE_STEPS):
            if mask[t] and float(np.hypot(*(sample.ego_future[t] - pts[-1]))) > 0.2:
                pts.append(np.asarray(sample.ego_future[t], np.float64))
        if len(pts) == 1 or float(np.hypot(*pts[-1])) < cfg.min_path_length_m:
            # Stopped (or unknown future): look straight ahead along the heading of the travelled part.
            heading = pts[-1] / max(float(np.hypot(*pts[-1])), 1e-6) if len(pts) > 1 else np.array([1.0, 0.0])
            pts.append(pts[-1] + heading * max(cfg.min_path_length_m - float(np.hypot(*pts[-1])), 0.0))
        tail = pts[-1] - pts[-2]
        pts.append(pts[-1] + tail / max(float(np.hypot(*tail)), 1e-6) * cfg.path_extension_m)
        head = pts[1] - pts[0]
        back = pts[0] - head / max(float(np.hypot(*head)), 1e-6) * 50.0  # long enough to place anything behind
        self.points = np.vstack([back] + pts)  # (K, 2); points[1] is the ego origin
        seg = np.diff(self.points, axis=0)
        self._seg = seg
        self._seg_len = np.maximum(np.hypot(seg[:, 0], seg[:, 1]), 1e-9)
        self._cum = np.concatenate([[0.0], np.cumsum(self._seg_len)]) - self._seg_len[0]  # s = 0 at the ego
        self.half_width = cfg.path_half_width_m
        # Arc length of the ego's own future positions (its GT progress along the path at each step).
        self.ego_s = np.array([self.frenet(p)[0] for p in np.asarray(sample.ego_future, np.float64)])

    @property
    def length_ahead(self) -> float:
        return float(self._cum[-1])

    def frenet(self, xy: np.ndarray) -> tuple[float, float]:
        p = np.asarray(xy, np.float64)
        rel = p - self.points[:-1]
        t = np.clip(np.einsum("ij,ij->i", rel, self._seg) / self._seg_len**2, 0.0, 1.0)
        closest = self.points[:-1] + t[:, None] * self._seg
        dist = np.hypot(*(p - closest).T)
        k = int(np.argmin(dist))
        cross = self._seg[k, 0] * rel[k, 1] - self._seg[k, 1] * rel[k, 0]
        return float(self._cum[k] + t[k] * self._seg_len[k]), float(math.copysign(dist[k], cross))

    def pose_at(self, s: float) -> tuple[np.ndarray, float]:
        """Point (2,) and heading (rad) at arc length ``s``; straight extrapolation past either end."""
        k = int(np.clip(np.searchsorted(self._cum, s, side="right") - 1, 0, len(self._seg) - 1))
        t = (s - self._cum[k]) / self._seg_len[k]
        return self.points[k] + t * self._seg[k], float(math.atan2(self._seg[k, 1], self._seg[k, 0]))

    def in_corridor(self, xy: np.ndarray, extra: float = 0.0) -> bool:
        """Inside the corridor ahead of the ego (0 < s <= end of the extended path, |d| <= half width + extra)."""
        s, d = self.frenet(xy)
        return 0.0 < s <= self.length_ahead and abs(d) <= self.half_width + extra


def lateral_extent(path: EgoPath, box: np.ndarray) -> float:
    """Half of the box's extent across the ego path at the box's position: w/2 for a box parallel to the path,
    l/2 for one across it."""
    s, _ = path.frenet(box[:2])
    _, heading = path.pose_at(s)
    rel = float(box[6]) - heading
    return 0.5 * (float(box[4]) * abs(math.sin(rel)) + float(box[3]) * abs(math.cos(rel)))


def in_ego_path(path: EgoPath, agents: AgentAnnotations, i: int, motion: AgentMotion) -> bool:
    """The agent is in the ego corridor ahead of the ego now, or ahead of where the ego will be at a future step
    (so a car following the ego is not "in its moving direction")."""
    box = agents.boxes[i]
    reach = path.half_width + lateral_extent(path, box)
    s, d = path.frenet(box[:2])
    if 0.0 < s <= path.length_ahead and abs(d) <= reach:
        return True
    for t, p in enumerate(motion.future_xy):
        s, d = path.frenet(p)
        if path.ego_s[t] < s <= path.length_ahead and abs(d) <= reach:
            return True
    return False


def crosses_ego_path(path: EgoPath, agents: AgentAnnotations, i: int, motion: AgentMotion) -> bool:
    """The moving agent gets across the ego corridor ahead within the known future: it enters the corridor from
    beside it, or moves from beside one side to beside the other, ahead of the ego's current position. An agent
    already inside the corridor (a lead vehicle) does not cross it."""
    if not motion.moving:
        return False
    box = agents.boxes[i]
    reach = path.half_width + lateral_extent(path, box)
    sd = [path.frenet(p) for p in [box[:2]] + list(motion.future_xy)]
    beside = [abs(d) > reach for _, d in sd]
    ahead = [0.0 < s <= path.length_ahead for s, _ in sd]
    if beside[0] and any(a and not b for a, b in zip(ahead[1:], beside[1:], strict=True)):
        return True
    # From one side of the corridor to the other between two steps (fast agents can jump over it).
    sides = {math.copysign(1.0, d) for a, b, (_, d) in zip(ahead, beside, sd, strict=True) if a and b}
    return len(sides) > 1


@dataclass
class EgoBehaviour:
    """The ego's upcoming motion in DriveLM's vocabulary."""

    steer: str  # one of STEER_PHRASES
    speed: str  # one of SPEED_PHRASES
    mean_speed: float  # m/s over the known future (current speed when none is known)
    lateral_offset: float  # m, y of the last valid future waypoint
    longitudinal: str  # "accelerate", "decelerate", "keep" or "stop": speed trend over the future

    @property
    def answer(self) -> str:
        """'The ego vehicle is going straight. The ego vehicle is driving fast.'"""
        return f"The ego vehicle is {self.steer}. The ego vehicle is {self.speed}."


def ego_behaviour(sample: DrivingSample, cfg: QAConfig) -> EgoBehaviour:
    """Steering bin from the lateral offset of the last valid GT waypoint (same rule as the driving command, with a
    'slightly' band below it); speed bin from the mean GT future speed (the ego status speed when the future is
    unknown); trend from the current speed vs the speed over the last known future step."""
    mask = np.asarray(sample.ego_future_mask, bool)
    valid = np.flatnonzero(mask)
    current = float(sample.ego_status.speed)
    if valid.size:
        pts = np.vstack([np.zeros(2), np.asarray(sample.ego_future, np.float64)[: valid[-1] + 1]])
        steps = np.hypot(*np.diff(pts, axis=0).T)
        mean_speed = float(steps.sum() / ((valid[-1] + 1) * STEP_SECONDS))
        end_speed = float(steps[-1] / STEP_SECONDS)
        lateral = float(sample.ego_future[valid[-1], 1])
    else:
        mean_speed, end_speed, lateral = abs(current), abs(current), 0.0

    a = abs(lateral)
    if a < cfg.slight_steer_offset_m:
        steer = "going straight"
    else:
        side = "left" if lateral > 0 else "right"
        steer = f"{'slightly ' if a < cfg.steer_offset_m else ''}steering to the {side}"
    speed_phrase = SPEED_PHRASES[int(np.searchsorted(np.asarray(cfg.speed_bins_mps), mean_speed, side="right"))]

    if max(mean_speed, end_speed) < cfg.speed_bins_mps[0]:
        trend = "stop"
    elif end_speed < cfg.speed_bins_mps[0]:
        trend = "stop"
    elif end_speed < current - 1.0:
        trend = "decelerate"
    elif end_speed > current + 1.0:
        trend = "accelerate"
    else:
        trend = "keep"
    return EgoBehaviour(steer, speed_phrase, mean_speed, lateral, trend)


__all__ = [
    "AgentMotion",
    "EgoBehaviour",
    "EgoPath",
    "MOVING_STATUS_CHOICES",
    "SPEED_PHRASES",
    "STEER_PHRASES",
    "agent_motion",
    "crosses_ego_path",
    "ego_behaviour",
    "in_ego_path",
]
