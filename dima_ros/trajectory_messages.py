"""dima/msg/Trajectory and nav_msgs/Path from planned positions: one builder for every node that publishes a plan
(the planner node's vision trajectory, the MLLM node's DiMA-Dual trajectory), so the two cannot differ in
timing, heading or velocity conventions."""

from __future__ import annotations

from typing import Optional

import numpy as np
from builtin_interfaces.msg import Duration, Time
from geometry_msgs.msg import Point, Pose, PoseStamped, Quaternion
from nav_msgs.msg import Path

from dima.msg import Trajectory, TrajectoryPoint
from dima_core.constants import STEP_SECONDS
from dima_core.runtime.postprocess import trajectory_points, yaw_to_quaternion


def trajectory_messages(stamp: Time, frame_id: str, command: int, mode: str, selected: np.ndarray,
                        candidates: Optional[np.ndarray], processing_ms: float) -> tuple[Trajectory, Path]:
    """The Trajectory (and the same poses as a Path for RViz) of one planned frame.

    Args:
        stamp, frame_id: the header (the planned frame's camera stamp; base_link).
        command: the driving command that selected ``selected``; mode: a ``Trajectory.MODE_*`` value.
        selected: (T, 2) positions, metres, ego frame, one per ``STEP_SECONDS``.
        candidates: (M, T, 2) every command's positions, or None to leave the candidate fields empty.
        processing_ms: the model's wall time for this frame.
    """
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
        secs = int(pt.time_from_start_s)
        traj.points.append(TrajectoryPoint(
            time_from_start=Duration(sec=secs, nanosec=int(round((pt.time_from_start_s - secs) * 1e9))),
            pose=pose, longitudinal_velocity_mps=float(pt.velocity_mps)))
        path.poses.append(PoseStamped(header=traj.header, pose=pose))
    if candidates is not None:
        traj.num_candidate_modes = int(candidates.shape[0])
        traj.num_candidate_points = int(candidates.shape[1])
        traj.candidate_positions = np.asarray(candidates, np.float32).reshape(-1).tolist()
    traj.processing_time_ms = float(processing_ms)
    return traj, path


__all__ = ["trajectory_messages"]
