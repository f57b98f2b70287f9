"""Colours (BGR, for cv2) shared by every drawing: one per detection class and per map class."""

from __future__ import annotations

from dima_core.constants import DETECTION_CLASSES, MAP_CLASSES

Color = tuple[int, int, int]

# Detection classes, close to the devkit's palette (nuscenes.utils.color_map) but brighter for thin lines.
CLASS_COLORS: dict[str, Color] = {
    "car": (0, 158, 255),  # orange
    "truck": (0, 99, 255),  # red-orange
    "bus": (30, 60, 200),  # dark red
    "trailer": (0, 140, 200),
    "construction_vehicle": (0, 200, 230),  # yellow
    "pedestrian": (230, 90, 0),  # blue
    "motorcycle": (180, 40, 220),  # magenta
    "bicycle": (220, 120, 220),  # pink
    "traffic_cone": (40, 40, 240),
    "barrier": (120, 120, 120),
}
DEFAULT_CLASS_COLOR: Color = (200, 200, 200)

# Map classes as MapTR/VAD draw them: dividers orange, crossings blue, boundaries green.
MAP_COLORS: dict[str, Color] = {
    "divider": (0, 165, 255),
    "ped_crossing": (255, 140, 40),
    "boundary": (60, 180, 60),
}

EGO_COLOR: Color = (40, 40, 40)
EGO_PAST_COLOR: Color = (150, 150, 150)
EGO_FUTURE_COLOR: Color = (40, 170, 40)  # GT future
PRED_TRAJ_COLOR: Color = (40, 40, 230)  # predicted trajectory
PRED_MODE_COLOR: Color = (150, 150, 240)  # non-selected predicted modes
PRED_BOX_COLOR: Color = (200, 0, 200)
TAG_COLOR: Color = (0, 255, 255)


def class_color(label: int) -> Color:
    """Colour of a DETECTION_CLASSES index."""
    if 0 <= label < len(DETECTION_CLASSES):
        return CLASS_COLORS.get(DETECTION_CLASSES[label], DEFAULT_CLASS_COLOR)
    return DEFAULT_CLASS_COLOR


def map_color(label: int) -> Color:
    """Colour of a MAP_CLASSES index."""
    if 0 <= label < len(MAP_CLASSES):
        return MAP_COLORS[MAP_CLASSES[label]]
    return DEFAULT_CLASS_COLOR


__all__ = [
    "CLASS_COLORS",
    "Color",
    "EGO_COLOR",
    "EGO_FUTURE_COLOR",
    "EGO_PAST_COLOR",
    "MAP_COLORS",
    "PRED_BOX_COLOR",
    "PRED_MODE_COLOR",
    "PRED_TRAJ_COLOR",
    "TAG_COLOR",
    "class_color",
    "map_color",
]
