"""Ego motion of a keyframe: GT future/past trajectory, driving command and ego status (speed, accel, yaw rate).

Everything here is a pure function of poses (``ego_to_global`` 4x4 matrices) or CAN-bus messages, so it can be
tested without a dataset. Frames: the *current* ego frame is x forward, y left, z up (docs/design.md, Frames and
shapes).

Ego status, two sources (``EgoStatus.source``):

- ``"can_bus"``: the nuScenes CAN-bus expansion ``pose`` messages (about 50 Hz). Their ``vel``, ``accel`` and
  ``rotation_rate`` are already expressed in the ego frame; we interpolate each linearly to the sample timestamp:
  speed = vel[0], (ax, ay) = accel[:2], yaw rate = rotation_rate[2].
- ``"ego_pose"``: finite differences of ego poses around the sample. With poses ``T_k`` at times ``t_k``
  (current index ``i``) and positions ``p_k`` / headings ``psi_k`` expressed in the current ego frame:

  * segment velocity ``v_{k+1/2} = (p_{k+1} - p_k) / (t_{k+1} - t_k)``;
  * velocity ``v = (p_{i+1} - p_{i-1}) / (t_{i+1} - t_{i-1})`` (central; one-sided at a scene end);
    speed = ``v_x`` (signed: negative when reversing);
  * acceleration ``a = (v_{i+1/2} - v_{i-1/2}) / ((t_{i+1} - t_{i-1}) / 2)``; at a scene end the same formula on
    the two segments next to it. Because velocities of different times are all expressed in the *current* frame,
    ``a`` is the inertial acceleration in body axes, centripetal term included, as the CAN ``accel`` (which is an
    IMU reading with gravity only on z);
  * yaw rate ``= wrap(psi_{i+1} - psi_{i-1}) / (t_{i+1} - t_{i-1})`` (one-sided at a scene end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from dima_core.constants import (
    COMMAND_LATERAL_THRESHOLD_M,
    COMMAND_LEFT,
    COMMAND_RIGHT,
    COMMAND_STRAIGHT,
)
from dima_core.data.geometry import invert, wrap_angle, yaw_of
from dima_core.data.sample import EgoStatus

EGO_STATUS_FROM_CAN_BUS = "can_bus"
EGO_STATUS_FROM_EGO_POSE = "ego_pose"


def relative_trajectory(
    ego_to_global: np.ndarray, poses: Sequence[np.ndarray | None]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Express a sequence of ego poses in the current ego frame.

    Args:
        ego_to_global: (4, 4) current ego pose.
        poses: T entries, each a (4, 4) ``ego_to_global`` of a future (or past) keyframe, or None where that
            keyframe does not exist (scene boundary).

    Returns:
        positions (T, 2) float32 x, y in the current ego frame; yaws (T,) float32 heading relative to the current
        heading, wrapped to [-pi, pi); mask (T,) bool. Missing steps repeat the last valid step (the current pose
        when none is valid), as VAD's converter pads its futures, so that a consumer that ignores the mask still
        sees a standing-still continuation rather than a jump to the origin.
    """
    global_to_ego = invert(ego_to_global)
    num = len(poses)
    positions = np.zeros((num, 2), np.float32)
    yaws = np.zeros((num,), np.float32)
    mask = np.zeros((num,), bool)
    last_xy, last_yaw = np.zeros(2), 0.0
    for k, pose in enumerate(poses):
        if pose is not None:
            rel = global_to_ego @ pose
            last_xy, last_yaw = rel[:2, 3], yaw_of(rel[:3, :3])
            mask[k] = True
        positions[k] = last_xy
        yaws[k] = last_yaw
    return positions, yaws, mask


def driving_command(
    future_xy: np.ndarray, future_mask: np.ndarray, threshold_m: float = COMMAND_LATERAL_THRESHOLD_M
) -> int:
    """VAD's high-level command from the GT future, in our ego frame (x forward, y left).

    The lateral offset ``y`` of the last *valid* future waypoint decides: ``y <= -threshold`` is COMMAND_RIGHT,
    ``y >= +threshold`` COMMAND_LEFT, otherwise COMMAND_STRAIGHT. VAD pads a truncated future with its last valid
    position and reads the final step, which is the same as reading the last valid one; with no valid step the
    offset is 0 and the command is straight. (VAD's lidar frame has x to the right, hence its ``x >= 2 -> right``.)

    Args:
        future_xy: (T, 2) future positions in the current ego frame.
        future_mask: (T,) bool validity.
    """
    valid = np.flatnonzero(np.asarray(future_mask, bool))
    if valid.size == 0:
        return COMMAND_STRAIGHT
    lateral = float(future_xy[valid[-1], 1])
    if lateral <= -threshold_m:
        return COMMAND_RIGHT
    if lateral >= threshold_m:
        return COMMAND_LEFT
    return COMMAND_STRAIGHT


def ego_status_from_poses(times_s: Sequence[float], poses: Sequence[np.ndarray], current: int) -> EgoStatus:
    """Finite-difference ego status at ``poses[current]`` (formula in the module docstring).

    Args:
        times_s: (K,) strictly increasing timestamps in seconds.
        poses: K (4, 4) ``ego_to_global`` matrices, ordered as ``times_s``.
        current: index of the current pose.

    Returns:
        EgoStatus with source ``"ego_pose"``; zero motion when K == 1 (a single-pose scene).
    """
    times = np.asarray(times_s, np.float64)
    num = len(times)
    if num != len(poses) or not 0 <= current < num:
        raise ValueError(f"need one pose per timestamp and a valid current index, got {num}, {len(poses)}, {current}")
    if num > 1 and np.any(np.diff(times) <= 0.0):
        raise ValueError(f"pose timestamps must be strictly increasing, got {times.tolist()}")
    if num == 1:
        return EgoStatus(0.0, np.zeros(2, np.float32), 0.0, EGO_STATUS_FROM_EGO_POSE)

    global_to_ego = invert(poses[current])
    rel = [global_to_ego @ pose for pose in poses]
    xy = np.stack([r[:2, 3] for r in rel])
    yaw = np.array([yaw_of(r[:3, :3]) for r in rel])

    lo = max(current - 1, 0)
    hi = min(current + 1, num - 1)
    span = times[hi] - times[lo]
    velocity = (xy[hi] - xy[lo]) / span
    yaw_rate = float(wrap_angle(yaw[hi] - yaw[lo])) / span

    # Two segments around the current pose; at a scene end shift to the two segments next to it.
    if num >= 3:
        mid = min(max(current, 1), num - 2)
        v_before = (xy[mid] - xy[mid - 1]) / (times[mid] - times[mid - 1])
        v_after = (xy[mid + 1] - xy[mid]) / (times[mid + 1] - times[mid])
        accel = (v_after - v_before) / (0.5 * (times[mid + 1] - times[mid - 1]))
    else:
        accel = np.zeros(2)
    return EgoStatus(
        speed=float(velocity[0]),
        acceleration=accel.astype(np.float32),
        yaw_rate=yaw_rate,
        source=EGO_STATUS_FROM_EGO_POSE,
    )


@dataclass
class CanPoseSeries:
    """The CAN-bus ``pose`` messages of one scene as arrays, sorted by time.

    Attributes:
        utime: (K,) int64 microseconds.
        vel: (K, 3) m/s in the ego frame.
        accel: (K, 3) m/s^2 in the ego frame (z carries gravity).
        rotation_rate: (K, 3) rad/s in the ego frame.
    """

    utime: np.ndarray
    vel: np.ndarray
    accel: np.ndarray
    rotation_rate: np.ndarray

    @staticmethod
    def from_messages(messages: Sequence[Mapping[str, object]]) -> CanPoseSeries:
        """Build from ``NuScenesCanBus.get_messages(scene_name, "pose")``."""
        if len(messages) == 0:
            raise ValueError("no CAN-bus pose messages")
        order = np.argsort([int(m["utime"]) for m in messages], kind="stable")
        msgs = [messages[i] for i in order]
        return CanPoseSeries(
            utime=np.array([int(m["utime"]) for m in msgs], np.int64),
            vel=np.array([m["vel"] for m in msgs], np.float64).reshape(-1, 3),
            accel=np.array([m["accel"] for m in msgs], np.float64).reshape(-1, 3),
            rotation_rate=np.array([m["rotation_rate"] for m in msgs], np.float64).reshape(-1, 3),
        )

    def ego_status(self, timestamp_us: int, max_gap_us: int) -> EgoStatus | None:
        """Linearly interpolated ego status at ``timestamp_us``; None when no message lies within ``max_gap_us``.

        Outside the message time span the nearest message is used (still subject to ``max_gap_us``).
        """
        nearest_gap = np.min(np.abs(self.utime - timestamp_us))
        if nearest_gap > max_gap_us:
            return None
        t = float(timestamp_us)
        times = self.utime.astype(np.float64)

        def interp(values: np.ndarray) -> np.ndarray:
            return np.array([np.interp(t, times, values[:, d]) for d in range(values.shape[1])])

        vel, accel, rate = interp(self.vel), interp(self.accel), interp(self.rotation_rate)
        return EgoStatus(
            speed=float(vel[0]),
            acceleration=accel[:2].astype(np.float32),
            yaw_rate=float(rate[2]),
            source=EGO_STATUS_FROM_CAN_BUS,
        )


__all__ = [
    "CanPoseSeries",
    "EGO_STATUS_FROM_CAN_BUS",
    "EGO_STATUS_FROM_EGO_POSE",
    "driving_command",
    "ego_status_from_poses",
    "relative_trajectory",
]
