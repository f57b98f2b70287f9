"""Where a 3D box is seen in the cameras: near-plane-clipped projection, occlusion, and the c-tag pixel.

Frames: boxes ``(x, y, z, w, l, h, yaw)`` in the ego frame (x forward, y left, z up); camera optical frame x right,
y down, z forward; pixels origin upper-left, x right, y down. Box corners come from the devkit's ``Box.corners()``
and pixels from its ``view_points``, so they agree with every other nuScenes tool.

A box partly behind the camera is clipped against the plane ``z_cam = NEAR_PLANE_M`` before projection: its visible
solid is the convex hull of the corners in front of the plane plus the points where its edges cross the plane, and
the projection of that solid is the convex hull of those points' projections. The viz code draws the same clipped
edges.

The pixel DriveLM's c-tag names is where the object is rendered. We rasterise every annotated box of a camera in
painter's order (far to near, by centre depth, like the synthetic renderer) into a label mask, so an object's
visible pixels are those not painted over by nearer boxes; the tag is the projected box centre when the object is
visible there, else its visible pixel nearest to that centre, in the camera with most visible pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from nuscenes.utils.data_classes import Box
from nuscenes.utils.geometry_utils import view_points
from pyquaternion import Quaternion

from dima_core.data.sample import CameraView, DrivingSample

NEAR_PLANE_M = 0.1  # points closer to the image plane than this are clipped (projection blows up at z -> 0)

# The 12 edges of a devkit box, as index pairs into Box.corners() (0-3 the front face, 4-7 the back face).
BOX_EDGES: tuple[tuple[int, int], ...] = (
    (0, 1), (1, 2), (2, 3), (3, 0),
    (4, 5), (5, 6), (6, 7), (7, 4),
    (0, 4), (1, 5), (2, 6), (3, 7),
)  # fmt: skip

# Rasterise occlusion masks at most this wide: 1600 px nuScenes images are rasterised at half resolution, which is
# ample to find a visible pixel and keeps 6 cameras x ~50 boxes per keyframe cheap.
_MASK_MAX_WIDTH = 800


def box_corners(box: np.ndarray) -> np.ndarray:
    """(3, 8) corners of an ego-frame box ``(x, y, z, w, l, h, yaw)``, in the devkit's corner order."""
    x, y, z, w, l, h, yaw = (float(v) for v in box[:7])
    return Box([x, y, z], [w, l, h], Quaternion(axis=[0.0, 0.0, 1.0], angle=yaw)).corners()


def ego_to_camera(points_ego: np.ndarray, camera: CameraView) -> np.ndarray:
    """(3, N) ego-frame points -> (3, N) camera optical-frame points."""
    ego_to_cam = np.linalg.inv(camera.cam_to_ego)
    return ego_to_cam[:3, :3] @ points_ego + ego_to_cam[:3, 3:4]


def clip_segments_to_near_plane(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Clip camera-frame segments a[:, i] -> b[:, i] (each (3, N)) to ``z >= NEAR_PLANE_M``.

    Returns (a', b', keep): clipped endpoints (3, N) and a (N,) bool mask of segments with any part in front.
    """
    za, zb = a[2], b[2]
    keep = (za >= NEAR_PLANE_M) | (zb >= NEAR_PLANE_M)
    a2, b2 = a.copy(), b.copy()
    dz = np.where(np.abs(zb - za) > 1e-12, zb - za, 1.0)  # equal depths never cross: any finite t will do
    t = (NEAR_PLANE_M - za) / dz  # where the segment crosses the near plane
    cross = a + t * (b - a)
    a_behind = keep & (za < NEAR_PLANE_M)
    b_behind = keep & (zb < NEAR_PLANE_M)
    a2[:, a_behind] = cross[:, a_behind]
    b2[:, b_behind] = cross[:, b_behind]
    return a2, b2, keep


def project_points(points_cam: np.ndarray, camera: CameraView) -> np.ndarray:
    """(3, N) camera-frame points in front of the camera -> (2, N) pixels (devkit ``view_points``)."""
    return view_points(points_cam, camera.intrinsic, normalize=True)[:2]


@dataclass
class ProjectedBox:
    """One box seen by one camera (pixels at the camera's native resolution)."""

    camera: str
    hull: np.ndarray  # (K, 2) convex hull of the near-plane-clipped box projection (may extend past the image)
    image_polygon: np.ndarray  # (K', 2) the hull clipped to the image rectangle; empty (0, 2) when outside
    bbox: tuple[float, float, float, float]  # (x_min, y_min, x_max, y_max) of image_polygon
    centre_px: np.ndarray | None  # (2,) projection of the box centre, None when the centre is behind the camera
    depth: float  # camera z of the box centre, m (painter's order key)

    @property
    def area(self) -> float:
        return polygon_area(self.image_polygon)


def polygon_area(poly: np.ndarray) -> float:
    """Shoelace area of a (K, 2) polygon."""
    if len(poly) < 3:
        return 0.0
    x, y = poly[:, 0], poly[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def clip_polygon_to_rect(poly: np.ndarray, width: float, height: float) -> np.ndarray:
    """Sutherland-Hodgman clip of a convex (K, 2) polygon to [0, width] x [0, height]; returns (K', 2)."""
    out = [tuple(p) for p in poly]
    # Each clip edge: (axis, bound, keep_greater).
    for axis, bound, keep_ge in ((0, 0.0, True), (0, float(width), False), (1, 0.0, True), (1, float(height), False)):
        if not out:
            break
        src, out = out, []
        for i in range(len(src)):
            cur, nxt = src[i], src[(i + 1) % len(src)]
            cur_in = cur[axis] >= bound if keep_ge else cur[axis] <= bound
            nxt_in = nxt[axis] >= bound if keep_ge else nxt[axis] <= bound
            if cur_in:
                out.append(cur)
            if cur_in != nxt_in:
                t = (bound - cur[axis]) / (nxt[axis] - cur[axis])
                out.append((cur[0] + t * (nxt[0] - cur[0]), cur[1] + t * (nxt[1] - cur[1])))
    return np.asarray(out, dtype=np.float64).reshape(-1, 2)


def project_box(box: np.ndarray, camera: CameraView) -> ProjectedBox | None:
    """Project an ego-frame box into ``camera``; None when no part of it is in front of the near plane."""
    corners_cam = ego_to_camera(box_corners(box), camera)
    edges = np.asarray(BOX_EDGES)
    a, b, keep = clip_segments_to_near_plane(corners_cam[:, edges[:, 0]], corners_cam[:, edges[:, 1]])
    if not keep.any():
        return None
    solid = np.concatenate([a[:, keep], b[:, keep]], axis=1)
    pixels = project_points(solid, camera).T.astype(np.float32)
    hull = cv2.convexHull(pixels).reshape(-1, 2).astype(np.float64)
    image_polygon = clip_polygon_to_rect(hull, camera.width, camera.height)
    if len(image_polygon):
        bbox = (
            float(image_polygon[:, 0].min()),
            float(image_polygon[:, 1].min()),
            float(image_polygon[:, 0].max()),
            float(image_polygon[:, 1].max()),
        )
    else:
        bbox = (0.0, 0.0, 0.0, 0.0)
    centre_cam = ego_to_camera(np.asarray(box[:3], np.float64).reshape(3, 1), camera)
    depth = float(centre_cam[2, 0])
    centre_px = project_points(centre_cam, camera)[:, 0] if depth >= NEAR_PLANE_M else None
    return ProjectedBox(camera.name, hull, image_polygon, bbox, centre_px, depth)


@dataclass
class ObjectLocation:
    """Where one annotated object is rendered: the camera and pixel for its c-tag, and its 2D box there."""

    agent_index: int
    camera: str
    pixel: tuple[float, float]  # (x, y) at the camera's native resolution, inside the object's visible region
    bbox: tuple[float, float, float, float]  # (x_min, y_min, x_max, y_max) of the projected box in that camera
    visible_pixels: int  # unoccluded pixels in that camera (native resolution)
    projected: ProjectedBox


def _camera_locations(boxes: np.ndarray, camera: CameraView) -> dict[int, ObjectLocation]:
    """Visible location of every box in one camera, with painter's-order occlusion between the boxes."""
    projections: list[tuple[int, ProjectedBox]] = []
    for i in range(len(boxes)):
        proj = project_box(boxes[i], camera)
        if proj is not None and len(proj.image_polygon) >= 3:
            projections.append((i, proj))
    if not projections:
        return {}
    scale = min(1.0, _MASK_MAX_WIDTH / float(camera.width))
    mask_w = max(1, int(round(camera.width * scale)))
    mask_h = max(1, int(round(camera.height * scale)))
    labels = np.full((mask_h, mask_w), -1, np.int32)
    # Painter's order: far first, so nearer boxes overwrite what they hide. Ties broken by index (deterministic).
    for i, proj in sorted(projections, key=lambda item: (-item[1].depth, item[0])):
        poly = np.round(proj.image_polygon * scale).astype(np.int32)
        cv2.fillConvexPoly(labels, poly, int(i))
    out: dict[int, ObjectLocation] = {}
    for i, proj in projections:
        ys, xs = np.nonzero(labels == i)
        if xs.size == 0:
            continue
        if proj.centre_px is not None:
            target = proj.centre_px * scale
        else:  # centre behind the camera: aim at the middle of what is visible
            target = np.array([(proj.bbox[0] + proj.bbox[2]) / 2.0, (proj.bbox[1] + proj.bbox[3]) / 2.0]) * scale
        # Mask pixel (u, v) covers [u, u+1) x [v, v+1) in mask units; compare pixel centres.
        d2 = (xs + 0.5 - target[0]) ** 2 + (ys + 0.5 - target[1]) ** 2
        k = int(np.argmin(d2))
        u, v = int(xs[k]), int(ys[k])
        if d2[k] <= 0.5:  # the centre itself is visible: keep its exact sub-pixel position
            px, py = float(target[0] / scale), float(target[1] / scale)
        else:
            px, py = (u + 0.5) / scale, (v + 0.5) / scale
        px = float(np.clip(px, 0.0, camera.width - 1e-3))
        py = float(np.clip(py, 0.0, camera.height - 1e-3))
        visible = int(round(xs.size / (scale * scale)))
        out[i] = ObjectLocation(i, camera.name, (px, py), proj.bbox, visible, proj)
    return out


def locate_objects(sample: DrivingSample) -> dict[int, ObjectLocation]:
    """For every agent of ``sample`` visible in some camera: its best camera (most unoccluded pixels) and tag pixel.

    Returns agent index -> ObjectLocation; agents seen by no camera are absent.
    """
    best: dict[int, ObjectLocation] = {}
    if len(sample.agents) == 0:
        return best
    boxes = np.asarray(sample.agents.boxes, np.float64)
    for camera in sample.cameras:  # CAMERA_NAMES order, so ties go to the earlier camera deterministically
        for i, loc in _camera_locations(boxes, camera).items():
            if i not in best or loc.visible_pixels > best[i].visible_pixels:
                best[i] = loc
    return best


def point_in_polygon(poly: np.ndarray, x: float, y: float) -> bool:
    """True when (x, y) lies inside or on the boundary of the (K, 2) polygon."""
    if len(poly) < 3:
        return False
    return cv2.pointPolygonTest(poly.astype(np.float32).reshape(-1, 1, 2), (float(x), float(y)), False) >= 0


__all__ = [
    "BOX_EDGES",
    "NEAR_PLANE_M",
    "ObjectLocation",
    "ProjectedBox",
    "box_corners",
    "clip_polygon_to_rect",
    "clip_segments_to_near_plane",
    "ego_to_camera",
    "locate_objects",
    "point_in_polygon",
    "polygon_area",
    "project_box",
    "project_points",
]
