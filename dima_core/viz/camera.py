"""Camera panels: the image with projected 3D boxes (near-plane clipped) and optional DriveLM c-tags.

Boxes are ego-frame ``(x, y, z, w, l, h, yaw)``; each of their 12 edges is clipped against the plane
``z_cam = NEAR_PLANE_M`` before projection, so a box that straddles the camera draws only its part in front instead
of lines folded through infinity. Pixels are computed at the camera's native resolution and scaled to the panel.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from dima_core.data.drivelm import CTag
from dima_core.data.qa.projection import (
    BOX_EDGES,
    box_corners,
    clip_segments_to_near_plane,
    ego_to_camera,
    project_points,
)
from dima_core.data.sample import CameraView
from dima_core.viz.colors import TAG_COLOR, Color

_SHIFT = 4  # cv2 sub-pixel bits: smoother thin lines
_SCALE = 1 << _SHIFT


def load_image(camera: CameraView) -> np.ndarray:
    """(H, W, 3) uint8 BGR image of ``camera``; FileNotFoundError names the missing file."""
    if not camera.image_path or not Path(camera.image_path).is_file():
        raise FileNotFoundError(f"camera image not found: {camera.image_path or '<empty path>'} ({camera.name})")
    image = cv2.imread(camera.image_path, cv2.IMREAD_COLOR)
    if image is None:
        raise FileNotFoundError(f"camera image unreadable: {camera.image_path} ({camera.name})")
    return image


def box_edges_px(box: np.ndarray, camera: CameraView) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Near-plane-clipped edges of a box in native pixels: (p0 (2,), p1 (2,), edge index) for edges in front."""
    corners = ego_to_camera(box_corners(box), camera)
    edges = np.asarray(BOX_EDGES)
    a, b, keep = clip_segments_to_near_plane(corners[:, edges[:, 0]], corners[:, edges[:, 1]])
    if not keep.any():
        return []
    pa = project_points(a[:, keep], camera)
    pb = project_points(b[:, keep], camera)
    return [(pa[:, k], pb[:, k], int(e)) for k, e in enumerate(np.flatnonzero(keep))]


def _fixed(p: np.ndarray, scale: float) -> tuple[int, int]:
    # Clamp far off-image points: cv2 takes int32 and clips lines itself, but huge values overflow.
    q = np.clip(np.asarray(p, np.float64) * scale * _SCALE, -(2**28), 2**28)
    return int(round(q[0])), int(round(q[1]))


def draw_boxes(
    panel: np.ndarray,
    camera: CameraView,
    boxes: np.ndarray,
    colors: Sequence[Color],
    thickness: int = 1,
) -> None:
    """Draw (N, 7) ego-frame boxes on ``panel`` (the camera image resized to any size), in place.

    The front face (corners 0-3, towards the box heading) gets a cross so the heading reads in the image.
    """
    scale = panel.shape[1] / float(camera.width)
    for box, color in zip(np.asarray(boxes, np.float64), colors, strict=True):
        for p0, p1, _ in box_edges_px(box, camera):
            cv2.line(panel, _fixed(p0, scale), _fixed(p1, scale), color, thickness, cv2.LINE_AA, _SHIFT)
        front = ego_to_camera(box_corners(box)[:, :4], camera)
        if (front[2] > 0.1).all():
            px = project_points(front, camera)
            for i, j in ((0, 2), (1, 3)):
                cv2.line(panel, _fixed(px[:, i], scale), _fixed(px[:, j], scale), color, 1, cv2.LINE_AA, _SHIFT)


def draw_trajectory(
    panel: np.ndarray,
    camera: CameraView,
    trajectory: np.ndarray,
    color: Color,
    z: float = 0.0,
    thickness: int = 2,
) -> None:
    """Draw an ego-frame trajectory (T, 2) on the ground (height ``z`` in the ego frame) into ``panel``, in place.

    The polyline starts at the ego origin; each segment is clipped at the camera's near plane, so a plan that
    turns behind the camera draws only its visible part. Waypoints in front of the camera get a dot.
    """
    traj = np.asarray(trajectory, np.float64).reshape(-1, 2)
    if not len(traj):
        return
    pts = np.vstack([np.zeros((1, 2)), traj])
    ground = np.vstack([pts.T, np.full((1, len(pts)), z)])  # (3, T+1)
    cam = ego_to_camera(ground, camera)
    scale = panel.shape[1] / float(camera.width)
    a, b, keep = clip_segments_to_near_plane(cam[:, :-1], cam[:, 1:])
    for k in np.flatnonzero(keep):
        pa = project_points(a[:, k : k + 1], camera)[:, 0]
        pb = project_points(b[:, k : k + 1], camera)[:, 0]
        cv2.line(panel, _fixed(pa, scale), _fixed(pb, scale), color, thickness, cv2.LINE_AA, _SHIFT)
    front = cam[:, 1:][:, cam[2, 1:] > 0.5]
    if front.shape[1]:
        for p in project_points(front, camera).T:
            cv2.circle(panel, _fixed(p, scale), 3 * _SCALE, color, -1, cv2.LINE_AA, _SHIFT)


def draw_tags(panel: np.ndarray, camera: CameraView, tags: Sequence[CTag]) -> None:
    """Mark DriveLM c-tags of this camera: a ring at the tag pixel and the object id."""
    scale = panel.shape[1] / float(camera.width)
    for tag in tags:
        if tag.camera != camera.name:
            continue
        centre = _fixed(np.array([tag.x, tag.y]), scale)
        cv2.circle(panel, centre, 4 * _SCALE, (0, 0, 0), 3, cv2.LINE_AA, _SHIFT)
        cv2.circle(panel, centre, 4 * _SCALE, TAG_COLOR, 1, cv2.LINE_AA, _SHIFT)
        org = (int(tag.x * scale) + 6, int(tag.y * scale) - 6)
        cv2.putText(panel, tag.object_id, org, cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 3, cv2.LINE_AA)
        cv2.putText(panel, tag.object_id, org, cv2.FONT_HERSHEY_SIMPLEX, 0.4, TAG_COLOR, 1, cv2.LINE_AA)


def camera_panel(
    camera: CameraView,
    size: tuple[int, int],
    boxes: np.ndarray,
    colors: Sequence[Color],
    extra_boxes: np.ndarray | None = None,
    extra_colors: Sequence[Color] = (),
    tags: Sequence[CTag] = (),
) -> np.ndarray:
    """(h, w, 3) panel for one camera: image resized to ``size`` = (w, h), GT boxes, predicted boxes, tags, name."""
    image = cv2.resize(load_image(camera), size, interpolation=cv2.INTER_AREA)
    draw_boxes(image, camera, boxes, colors, thickness=2 if size[0] >= 640 else 1)
    if extra_boxes is not None and len(extra_boxes):
        draw_boxes(image, camera, extra_boxes, extra_colors)
    draw_tags(image, camera, tags)
    label = camera.name.replace("CAM_", "")
    cv2.putText(image, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, label, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    return image


__all__ = ["box_edges_px", "camera_panel", "draw_boxes", "draw_tags", "draw_trajectory", "load_image"]
