"""Hand-built DrivingSample objects for the QA, DriveLM and viz tests (no dataset needed).

Cameras follow nuScenes' rig: mounted 1.5 m up, 1.7 m ahead of the ego origin (rear axle), yawed like the real
six cameras, with a pinhole of nuScenes' focal length scaled to the image width. Images are plain JPEGs drawn with
a horizon so viz output can be checked for size and content.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from dima_core.constants import CAMERA_NAMES, COMMAND_STRAIGHT, FUTURE_STEPS, MAP_CLASSES, PAST_STEPS, STEP_SECONDS
from dima_core.data.sample import AgentAnnotations, CameraView, DrivingSample, EgoStatus, VectorMap

CAMERA_YAW_DEG: dict[str, float] = {
    "CAM_FRONT": 0.0,
    "CAM_FRONT_RIGHT": -55.0,
    "CAM_FRONT_LEFT": 55.0,
    "CAM_BACK": 180.0,
    "CAM_BACK_LEFT": 110.0,
    "CAM_BACK_RIGHT": -110.0,
}
IMAGE_W, IMAGE_H = 400, 225
_NUSCENES_FOCAL_1600 = 1266.0

# Optical frame (x right, y down, z forward) -> ego axes (x forward, y left, z up) for a camera looking along +x.
_OPTICAL_TO_FORWARD = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def make_camera(name: str, image_dir: Path | None = None, width: int = IMAGE_W, height: int = IMAGE_H) -> CameraView:
    """A calibrated camera of the nuScenes-like rig; writes a grey sky/road JPEG when ``image_dir`` is given."""
    yaw = math.radians(CAMERA_YAW_DEG[name])
    rot_z = np.array([[math.cos(yaw), -math.sin(yaw), 0.0], [math.sin(yaw), math.cos(yaw), 0.0], [0.0, 0.0, 1.0]])
    cam_to_ego = np.eye(4)
    cam_to_ego[:3, :3] = rot_z @ _OPTICAL_TO_FORWARD
    # Mount positions around the roof, as on the nuScenes car (front cameras ahead, back camera behind).
    cam_to_ego[:3, 3] = [1.0 + 0.7 * math.cos(yaw), 0.5 * math.sin(yaw), 1.5]
    f = _NUSCENES_FOCAL_1600 * width / 1600.0
    intrinsic = np.array([[f, 0.0, width / 2.0], [0.0, f, height / 2.0], [0.0, 0.0, 1.0]])
    path = ""
    if image_dir is not None:
        image_dir.mkdir(parents=True, exist_ok=True)
        path = str(image_dir / f"{name}.jpg")
        img = np.full((height, width, 3), 170, np.uint8)
        img[height // 2 :] = 90  # road below the horizon
        cv2.imwrite(path, img)
    return CameraView(name, path, intrinsic, cam_to_ego, width, height, 0, f"sd_{name}")


@dataclass
class AgentSpec:
    """One agent: box in the ego frame and constant velocity (ego frame) for its future."""

    x: float
    y: float
    yaw: float = 0.0
    vx: float = 0.0
    vy: float = 0.0
    category: str = "vehicle.car"
    size: tuple[float, float, float] = (1.9, 4.5, 1.6)  # w, l, h
    visibility: int = 4


def make_agents(specs: Sequence[AgentSpec]) -> AgentAnnotations:
    n = len(specs)
    if n == 0:
        return AgentAnnotations.empty()
    boxes = np.array([[s.x, s.y, s.size[2] / 2.0, *s.size, s.yaw] for s in specs], np.float32)
    vel = np.array([[s.vx, s.vy] for s in specs], np.float32)
    t = (np.arange(1, FUTURE_STEPS + 1) * STEP_SECONDS)[None, :, None]
    future = (boxes[:, None, :2] + vel[:, None, :] * t).astype(np.float32)
    future_yaw = np.repeat(boxes[:, 6:7], FUTURE_STEPS, axis=1).astype(np.float32)
    from dima_core.constants import DETECTION_CLASSES

    def label(cat: str) -> int:
        for k, name in enumerate(DETECTION_CLASSES):
            if name in cat:
                return k
        return DETECTION_CLASSES.index("pedestrian") if cat.startswith("human") else 0

    return AgentAnnotations(
        boxes=boxes,
        velocities=vel,
        labels=np.array([label(s.category) for s in specs], np.int64),
        category_names=[s.category for s in specs],
        instance_tokens=[f"inst{i}" for i in range(n)],
        annotation_tokens=[f"ann{i}" for i in range(n)],
        visibility=np.array([s.visibility for s in specs], np.int64),
        num_lidar_points=np.full((n,), 100, np.int64),
        future=future,
        future_yaw=future_yaw,
        future_mask=np.ones((n, FUTURE_STEPS), bool),
    )


def straight_road_map(lane_width: float = 3.5, length: float = 60.0) -> VectorMap:
    """A two-lane road, the ego centred in the right lane: boundaries at y = -w/2 and 3w/2, divider at w/2."""
    xs = np.linspace(-length / 2, length / 2, 20)
    ys = (-lane_width / 2, 1.5 * lane_width, lane_width / 2)
    lines = [np.stack([xs, np.full_like(xs, y)], axis=1) for y in ys]
    labels = [MAP_CLASSES.index("boundary"), MAP_CLASSES.index("boundary"), MAP_CLASSES.index("divider")]
    return VectorMap(np.stack(lines).astype(np.float32), np.array(labels, np.int64))


def make_sample(
    agents: Sequence[AgentSpec] = (),
    speed: float = 8.0,
    lateral_end: float = 0.0,
    accel: float = 0.0,
    image_dir: Path | None = None,
    token: str = "sample0",
    scene_token: str = "scene0",
    command: int = COMMAND_STRAIGHT,
) -> DrivingSample:
    """A keyframe with the six cameras, the given agents, and an ego driving at ``speed`` (m/s, constant
    acceleration ``accel``) that drifts smoothly to lateral offset ``lateral_end`` at 3 s."""
    t = np.arange(1, FUTURE_STEPS + 1) * STEP_SECONDS
    x = np.maximum(speed * t + 0.5 * accel * t**2, 0.0)
    if accel < 0:  # a braking ego stops and stays stopped
        t_stop = speed / -accel
        x = np.where(t > t_stop, speed * t_stop + 0.5 * accel * t_stop**2, x)
    y = lateral_end * 0.5 * (1 - np.cos(np.pi * t / t[-1]))
    future = np.stack([x, y], axis=1).astype(np.float32)
    yaw = np.arctan2(np.gradient(y), np.maximum(np.gradient(x), 1e-6)).astype(np.float32)
    past = np.stack([-speed * np.arange(PAST_STEPS, 0, -1) * STEP_SECONDS, np.zeros(PAST_STEPS)], axis=1)
    return DrivingSample(
        token=token,
        scene_token=scene_token,
        scene_name="scene-0001",
        location="singapore-onenorth",
        timestamp_us=0,
        prev_token="",
        next_token="",
        cameras=[make_camera(name, image_dir) for name in CAMERA_NAMES],
        ego_to_global=np.eye(4),
        ego_status=EgoStatus(speed=speed, acceleration=np.array([accel, 0.0]), yaw_rate=0.0, source="ego_pose"),
        ego_future=future,
        ego_future_yaw=yaw,
        ego_future_mask=np.ones(FUTURE_STEPS, bool),
        ego_past=past.astype(np.float32),
        ego_past_mask=np.ones(PAST_STEPS, bool),
        command=command,
        agents=make_agents(agents),
        vector_map=straight_road_map(),
        split="train",
    )


__all__ = [
    "AgentSpec",
    "CAMERA_YAW_DEG",
    "IMAGE_H",
    "IMAGE_W",
    "make_agents",
    "make_camera",
    "make_sample",
    "straight_road_map",
]
