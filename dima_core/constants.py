"""Project-wide conventions (docs/design.md, Frames and shapes). Import these; never repeat the literals."""

from __future__ import annotations

# Camera order used everywhere: datasets, model inputs, ONNX inputs, ROS topics.
CAMERA_NAMES: tuple[str, ...] = (
    "CAM_FRONT",
    "CAM_FRONT_RIGHT",
    "CAM_FRONT_LEFT",
    "CAM_BACK",
    "CAM_BACK_LEFT",
    "CAM_BACK_RIGHT",
)
LIDAR_NAME = "LIDAR_TOP"

# Keyframes are 2 Hz; plans and GT futures are 6 waypoints at 0.5 s (0.5 .. 3.0 s) in the current ego frame.
KEYFRAME_HZ = 2.0
STEP_SECONDS = 0.5
FUTURE_STEPS = 6
PAST_STEPS = 4  # 2 s of ego history

# Driving commands, VAD's order. Derived from the GT future: lateral offset at 3 s beyond +/- 2 m.
COMMAND_RIGHT = 0
COMMAND_LEFT = 1
COMMAND_STRAIGHT = 2
COMMAND_NAMES: tuple[str, ...] = ("right", "left", "straight")
COMMAND_LATERAL_THRESHOLD_M = 2.0

# Perception range in the ego frame (x forward, y left), metres. VAD states the same area in its lidar frame.
PERCEPTION_X_RANGE: tuple[float, float] = (-30.0, 30.0)
PERCEPTION_Y_RANGE: tuple[float, float] = (-15.0, 15.0)

# The ten nuScenes detection classes (nuscenes.eval.detection), in the devkit's order.
DETECTION_CLASSES: tuple[str, ...] = (
    "car",
    "truck",
    "bus",
    "trailer",
    "construction_vehicle",
    "pedestrian",
    "motorcycle",
    "bicycle",
    "traffic_cone",
    "barrier",
)

# Vector map classes, VAD/MapTR order.
MAP_CLASSES: tuple[str, ...] = ("divider", "ped_crossing", "boundary")
MAP_POINTS_PER_VECTOR = 20

# Ego vehicle footprint used by the planning metrics (VAD / ST-P3): width x length, centre 0.5 m ahead of the
# ego-pose origin.
EGO_WIDTH_M = 1.85
EGO_LENGTH_M = 4.084
EGO_FOOTPRINT_FORWARD_OFFSET_M = 0.5
