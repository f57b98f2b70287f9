"""The keyframe sample every consumer reads: one dataclass, filled from nuScenes (real or synthetic) by the devkit.

Frames and shapes (docs/design.md, Frames and shapes):
- Ego frame = nuScenes ``ego_pose`` of the current keyframe's reference sensor (LIDAR_TOP when present, else
  CAM_FRONT): x forward, y left, z up, metres. ROS ``base_link``.
- Boxes are ``(x, y, z, w, l, h, yaw)``: centre in the ego frame, size in the devkit's ``Box.wlh`` order (width
  across, length along the heading, height), yaw about +z from +x.
- Trajectories are positions, not offsets: ``(T, 2)`` in the current ego frame at 0.5 s steps.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dima_core.constants import CAMERA_NAMES, DETECTION_CLASSES, FUTURE_STEPS, MAP_CLASSES, PAST_STEPS


@dataclass
class CameraView:
    """One calibrated camera image of a keyframe."""

    name: str  # one of CAMERA_NAMES
    image_path: str  # absolute path to the JPEG
    intrinsic: np.ndarray  # (3, 3) pinhole K
    cam_to_ego: np.ndarray  # (4, 4) camera (optical: x right, y down, z forward) -> ego frame
    width: int
    height: int
    timestamp_us: int
    sample_data_token: str

    def ego_to_image(self) -> np.ndarray:
        """(3, 4) projection from ego-frame homogeneous points to homogeneous pixels."""
        ego_to_cam = np.linalg.inv(self.cam_to_ego)
        return self.intrinsic @ ego_to_cam[:3, :]


@dataclass
class AgentAnnotations:
    """Ground-truth agents of one keyframe in its ego frame (N agents)."""

    boxes: np.ndarray  # (N, 7) x, y, z, w, l, h, yaw
    velocities: np.ndarray  # (N, 2) vx, vy in the ego frame, m/s (NaN when the devkit cannot estimate it)
    labels: np.ndarray  # (N,) int64 index into DETECTION_CLASSES
    category_names: list[str]  # (N,) full nuScenes category names, e.g. "vehicle.car"
    instance_tokens: list[str]  # (N,)
    annotation_tokens: list[str]  # (N,)
    visibility: np.ndarray  # (N,) int64 nuScenes visibility level 1..4 (0-40, 40-60, 60-80, 80-100 %)
    num_lidar_points: np.ndarray  # (N,) int64
    future: np.ndarray  # (N, FUTURE_STEPS, 2) future centre positions in the *current* ego frame
    future_yaw: np.ndarray  # (N, FUTURE_STEPS) future headings in the *current* ego frame, rad (planning metrics)
    future_mask: np.ndarray  # (N, FUTURE_STEPS) bool, True where the future annotation exists

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @staticmethod
    def empty() -> AgentAnnotations:
        return AgentAnnotations(
            boxes=np.zeros((0, 7), np.float32),
            velocities=np.zeros((0, 2), np.float32),
            labels=np.zeros((0,), np.int64),
            category_names=[],
            instance_tokens=[],
            annotation_tokens=[],
            visibility=np.zeros((0,), np.int64),
            num_lidar_points=np.zeros((0,), np.int64),
            future=np.zeros((0, FUTURE_STEPS, 2), np.float32),
            future_yaw=np.zeros((0, FUTURE_STEPS), np.float32),
            future_mask=np.zeros((0, FUTURE_STEPS), bool),
        )


@dataclass
class VectorMap:
    """Ground-truth vector map in the ego frame, clipped to the perception range (M vectors)."""

    polylines: np.ndarray  # (M, P, 2) resampled to P equidistant points
    labels: np.ndarray  # (M,) int64 index into MAP_CLASSES

    def __len__(self) -> int:
        return int(self.polylines.shape[0])


@dataclass
class EgoStatus:
    """Ego motion at the keyframe, in the ego frame."""

    speed: float  # m/s, forward
    acceleration: np.ndarray  # (2,) ax, ay m/s^2
    yaw_rate: float  # rad/s, counter-clockwise positive
    source: str  # "can_bus" or "ego_pose"

    def as_vector(self) -> np.ndarray:
        """(4,) float32: speed, ax, ay, yaw_rate. The model input and the BeamTokens.ego_status layout."""
        return np.array([self.speed, self.acceleration[0], self.acceleration[1], self.yaw_rate], np.float32)


@dataclass
class DrivingSample:
    """Everything the project knows about one nuScenes keyframe."""

    token: str
    scene_token: str
    scene_name: str
    location: str
    timestamp_us: int
    prev_token: str  # "" at the start of a scene
    next_token: str  # "" at the end of a scene
    cameras: list[CameraView]  # in CAMERA_NAMES order
    ego_to_global: np.ndarray  # (4, 4)
    ego_status: EgoStatus
    ego_future: np.ndarray  # (FUTURE_STEPS, 2) positions in the current ego frame
    ego_future_yaw: np.ndarray  # (FUTURE_STEPS,) heading relative to the current ego heading, rad
    ego_future_mask: np.ndarray  # (FUTURE_STEPS,) bool
    ego_past: np.ndarray  # (PAST_STEPS, 2) positions in the current ego frame, oldest first
    ego_past_mask: np.ndarray  # (PAST_STEPS,) bool
    command: int  # COMMAND_RIGHT / COMMAND_LEFT / COMMAND_STRAIGHT
    agents: AgentAnnotations
    vector_map: VectorMap
    split: str  # "train", "val", "test" or "" when the scene is in no split
    tags: list[str] = field(default_factory=list)  # scenario tags (synthetic) or long-tail split names (real)

    @property
    def has_full_future(self) -> bool:
        return bool(self.ego_future_mask.all())

    def camera(self, name: str) -> CameraView:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f"sample {self.token} has no camera {name}")


__all__ = [
    "AgentAnnotations",
    "CameraView",
    "DrivingSample",
    "EgoStatus",
    "VectorMap",
    "CAMERA_NAMES",
    "DETECTION_CLASSES",
    "MAP_CLASSES",
    "FUTURE_STEPS",
    "PAST_STEPS",
]
