"""CAN bus expansion files for one synthetic scene, as ``NuScenesCanBus`` reads them:
``can_bus/<scene-name>_<message>.json`` for pose, ms_imu, vehicle_monitor, steeranglefeedback, route and meta.

Pose messages: utime (us), pos (global map frame, m, same frame as ego_pose), orientation [w, x, y, z], vel and
accel in the ego frame (accel includes +9.81 m/s^2 on z like an IMU), rotation_rate (rad/s, ego frame).
"""

from __future__ import annotations

import json
import math
import os

import numpy as np

from dima_core.data.geometry import yaw_quaternion

WHEELBASE_M = 2.588  # Renault Zoe, the nuScenes car


def _r(v: float, nd: int = 5) -> float:
    return round(float(v), nd)


def write_can_bus(
    can_dir: str, scene_name: str, t0_us: int, times: np.ndarray, ego: np.ndarray, rate_hz: float
) -> None:
    """Write the CAN files of a scene.

    ``times`` (K,) seconds from ``t0_us``; ``ego`` (K, 5) x, y, yaw, signed speed (m/s), longitudinal acceleration
    (m/s^2) at those times (the simulation record). Messages are interpolated to ``rate_hz``.
    """
    os.makedirs(can_dir, exist_ok=True)
    tq = np.arange(0.0, times[-1] + 1e-9, 1.0 / rate_hz)
    yaw_u = np.unwrap(ego[:, 2])
    x = np.interp(tq, times, ego[:, 0])
    y = np.interp(tq, times, ego[:, 1])
    yaw = np.interp(tq, times, yaw_u)
    v = np.interp(tq, times, ego[:, 3])
    a = np.interp(tq, times, ego[:, 4])
    yaw_rate = np.gradient(yaw, tq) if len(tq) > 1 else np.zeros_like(tq)
    pose, imu, steer = [], [], []
    for k, t in enumerate(tq):
        utime = int(t0_us + round(t * 1e6))
        q = yaw_quaternion(float(yaw[k]))
        lat = float(v[k] * yaw_rate[k])
        pose.append(
            {
                "utime": utime,
                "pos": [_r(x[k], 4), _r(y[k], 4), 0.0],
                "orientation": [_r(c, 7) for c in q],
                "vel": [_r(v[k]), 0.0, 0.0],
                "accel": [_r(a[k]), _r(lat), 9.81],
                "rotation_rate": [0.0, 0.0, _r(yaw_rate[k])],
            }
        )
        imu.append(
            {
                "utime": utime,
                "linear_accel": [_r(a[k]), _r(lat), 9.81],
                "q": [_r(c, 7) for c in q],
                "rotation_rate": [0.0, 0.0, _r(yaw_rate[k])],
            }
        )
        # Bicycle model: steering-wheel angle ~ road-wheel angle * ratio 15.
        wheel = math.atan(WHEELBASE_M * yaw_rate[k] / v[k]) if abs(v[k]) > 0.3 else 0.0
        steer.append({"utime": utime, "value": _r(wheel * 15.0)})
    monitor = []
    for k in range(0, len(tq), max(1, int(round(rate_hz / 2.0)))):
        monitor.append(
            {
                "utime": pose[k]["utime"],
                "vehicle_speed": _r(abs(v[k]) * 3.6, 3),
                "steering": steer[k]["value"],
                "steering_speed": 0.0,
                "yaw_rate": _r(math.degrees(yaw_rate[k]), 4),
                "left_signal": 0,
                "right_signal": 0,
                "brake": int(a[k] < -0.5),
                "brake_switch": 1 if a[k] < -0.5 else 0,
                "throttle": int(max(0.0, a[k]) * 100),
                "gear_position": 7 if v[k] < -0.05 else 3,
                "available_distance": 100,
                "battery_level": 80,
                "odom": 0,
                "odom_speed": _r(abs(v[k]) * 3.6, 3),
                "rear_left_rpm": 0,
                "rear_right_rpm": 0,
                "front_left_wheel_speed": 0,
                "front_right_wheel_speed": 0,
            }
        )
    route = [
        [_r(px, 3), _r(py, 3)] for px, py in zip(x[:: max(1, int(rate_hz))], y[:: max(1, int(rate_hz))], strict=True)
    ]
    messages = {"pose": pose, "ms_imu": imu, "steeranglefeedback": steer, "vehicle_monitor": monitor, "route": route}
    meta = {
        name: {"message_count": len(msgs), "message_freq": rate_hz if name != "vehicle_monitor" else 2.0}
        for name, msgs in messages.items()
        if name != "route"
    }
    messages["meta"] = meta
    for name, msgs in messages.items():
        with open(os.path.join(can_dir, f"{scene_name}_{name}.json"), "w") as f:
            json.dump(msgs, f, separators=(",", ":"))
