"""Planned positions <-> ``dima/msg/Trajectory`` (and the same poses as a ``nav_msgs/Path`` for RViz).

One builder for every node that publishes a plan (the planner's vision trajectory, the MLLM node's DiMA-Dual
trajectory), so the two cannot differ in timing, heading or velocity conventions: waypoint ``i`` is at
``(i + 1) * STEP_SECONDS``, its heading is the direction of the segment that reaches it (the previous heading for a
segment under 1 mm), its velocity that segment's length over the step (``dima_core.runtime.postprocess``).

The readers take a received message apart for the simulator (which executes a plan and refuses one it cannot,
:func:`plan_from_trajectory`) and the evaluator (which scores positions, :func:`trajectory_positions`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from builtin_interfaces.msg import Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion
from nav_msgs.msg import Path

from dima.msg import Trajectory, TrajectoryPoint
from dima_core.bag.topics import BASE_FRAME
from dima_core.constants import FUTURE_STEPS, STEP_SECONDS
from dima_core.data.geometry import yaw_to_quaternion
from dima_core.runtime.postprocess import trajectory_points
from dima_ros.converters.stamps import duration_to_seconds, seconds_to_duration

# A waypoint's time_from_start may differ from (i + 1) * STEP_SECONDS by this much (the builder's nanosecond rounding).
TIME_TOLERANCE_S = 1e-3


def trajectory_messages(
    stamp: Time,
    frame_id: str,
    command: int,
    mode: str,
    selected: np.ndarray,
    candidates: np.ndarray | None,
    processing_ms: float,
) -> tuple[Trajectory, Path]:
    """The Trajectory (and the same poses as a Path) of one planned frame.

    Args:
        stamp, frame_id: the header (the planned frame's camera stamp; base_link).
        command: the driving command that selected ``selected``; mode: a ``Trajectory.MODE_*`` value.
        selected: (T, 2) positions, metres, ego frame, one per ``STEP_SECONDS``. Values are not judged here: a
            consumer refuses what it cannot execute (the planner never plans non-finite positions).
        candidates: (M, T, 2) every command's positions, or None to leave the candidate fields empty.
        processing_ms: the model's wall time for this frame.

    Raises:
        ValueError: ``selected`` is not (T, 2) or ``candidates`` not (M, T', 2).
    """
    selected = np.asarray(selected, np.float64)
    if selected.ndim != 2 or selected.shape[1] != 2:
        raise ValueError(f"a trajectory is (T, 2) positions, got shape {list(selected.shape)}")
    traj = Trajectory()
    traj.header.stamp = stamp
    traj.header.frame_id = frame_id
    traj.command = int(command)
    traj.mode = mode
    path = Path()
    path.header = traj.header
    for pt in trajectory_points(selected, STEP_SECONDS):
        qx, qy, qz, qw = yaw_to_quaternion(pt.yaw)
        pose = Pose(position=Point(x=pt.x, y=pt.y, z=0.0), orientation=Quaternion(x=qx, y=qy, z=qz, w=qw))
        traj.points.append(
            TrajectoryPoint(
                time_from_start=seconds_to_duration(pt.time_from_start_s),
                pose=pose,
                longitudinal_velocity_mps=float(pt.velocity_mps),
            )
        )
        path.poses.append(PoseStamped(header=traj.header, pose=pose))
    if candidates is not None:
        candidates = np.asarray(candidates, np.float32)
        if candidates.ndim != 3 or candidates.shape[2] != 2:
            raise ValueError(f"trajectory candidates are (M, T, 2) positions, got shape {list(candidates.shape)}")
        traj.num_candidate_modes = int(candidates.shape[0])
        traj.num_candidate_points = int(candidates.shape[1])
        traj.candidate_positions = candidates.reshape(-1).tolist()
    traj.processing_time_ms = float(processing_ms)
    return traj, path


def trajectory_positions(msg: Trajectory) -> np.ndarray:
    """(N, 2) float64 waypoint positions (x forward, y left, metres, in ``msg.header.frame_id``); N may be 0."""
    return np.array([[p.pose.position.x, p.pose.position.y] for p in msg.points], np.float64).reshape(-1, 2)


def waypoint_times(msg: Trajectory) -> np.ndarray:
    """(N,) float64 ``time_from_start`` of each waypoint, seconds."""
    return np.array([duration_to_seconds(p.time_from_start) for p in msg.points], np.float64)


def candidates_from_msg(msg: Trajectory) -> np.ndarray | None:
    """(M, T, 2) float32 candidate positions, or None when the message carries none.

    Raises:
        ValueError: ``candidate_positions`` does not hold ``num_candidate_modes x num_candidate_points x 2`` values.
    """
    values = np.asarray(msg.candidate_positions, np.float32)
    modes, points = int(msg.num_candidate_modes), int(msg.num_candidate_points)
    if values.size == 0 and modes == 0:
        return None
    if values.size != modes * points * 2:
        raise ValueError(
            f"Trajectory.candidate_positions has {values.size} values for {modes} modes x {points} points x 2"
        )
    return values.reshape(modes, points, 2)


class TrajectoryRejected(ValueError):
    """A dima/Trajectory the simulator cannot execute for a reason its header or timing shows (``kind``:
    ``frame`` or ``timing``); shape and finiteness are the episode's own check (``dima_core.sim.episode``)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def plan_from_trajectory(msg: Any, frame_id: str = BASE_FRAME) -> np.ndarray:
    """(N, 2) float64 waypoint positions (x forward, y left, metres) of a dima/Trajectory in ``frame_id``.

    Raises :class:`TrajectoryRejected` for another frame, or for waypoints not at 0.5, 1.0 .. 3.0 s when there are
    FUTURE_STEPS of them (a plan timed otherwise would be executed at the wrong speed). The number of points and
    non-finite values are left to ``ClosedLoopEpisode.apply_plan``, which refuses and counts them.
    """
    if msg.header.frame_id != frame_id:
        raise TrajectoryRejected(
            "frame",
            f"trajectory in frame {msg.header.frame_id!r}, expected {frame_id!r} (the "
            "ego frame of the stamped camera frame)",
        )
    xy = trajectory_positions(msg)
    if len(xy) == FUTURE_STEPS:
        times = waypoint_times(msg)
        expected = STEP_SECONDS * np.arange(1, FUTURE_STEPS + 1)
        if not np.all(np.abs(times - expected) <= TIME_TOLERANCE_S):
            raise TrajectoryRejected(
                "timing", f"waypoints at {np.round(times, 3).tolist()} s, expected {expected.tolist()} s"
            )
    return xy


__all__ = [
    "TIME_TOLERANCE_S",
    "TrajectoryRejected",
    "candidates_from_msg",
    "plan_from_trajectory",
    "trajectory_messages",
    "trajectory_positions",
    "waypoint_times",
]
