"""Pictures of a closed-loop episode: an MP4 with one frame per planning cycle (the six cameras with the plan
projected on the ground, and a BEV around the ego with the map, the agents, the plan and the driven path), and a
PNG summary of the whole drive seen from above with its metrics.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import cv2
import numpy as np

from dima_core.constants import CAMERA_NAMES, COMMAND_NAMES
from dima_core.data.geometry import box_corners_2d
from dima_core.data.sample import CameraView
from dima_core.runtime.preprocess import CameraModel, decode_compressed
from dima_core.sim.episode_log import EGO_SPEED, EpisodeLog
from dima_core.viz import colors as C
from dima_core.viz.camera import draw_trajectory
from dima_core.viz.compose import CAMERA_GRID, VideoWriter, save_png

_SHIFT = 4
_SCALE = 1 << _SHIFT
PLAN_COLOR: C.Color = (40, 170, 40)
DRIVEN_COLOR: C.Color = (200, 80, 20)
ROUTE_COLOR: C.Color = (185, 185, 185)
COLLISION_COLOR: C.Color = (30, 30, 230)


def _category_color(category: str) -> C.Color:
    if category.startswith("human."):
        return C.CLASS_COLORS["pedestrian"]
    for key in ("bicycle", "motorcycle", "truck", "bus", "trailer"):
        if key in category:
            return C.CLASS_COLORS[key]
    return C.CLASS_COLORS["car"]


class _Canvas:
    """A top view: metres (x, y) -> pixels through an affine map (rotation for ego-up views)."""

    def __init__(self, size: int, centre: np.ndarray, metres: float, heading: float = math.pi / 2):
        self.size = size
        self.centre = np.asarray(centre, np.float64)
        self.scale = size / metres
        # Rotate the world so that ``heading`` points up the image.
        self.rot = heading - math.pi / 2
        self.img = np.full((size, size, 3), 248, np.uint8)

    def px(self, xy: np.ndarray) -> np.ndarray:
        d = np.asarray(xy, np.float64).reshape(-1, 2) - self.centre
        c, s = math.cos(-self.rot), math.sin(-self.rot)
        r = np.stack([c * d[:, 0] - s * d[:, 1], s * d[:, 0] + c * d[:, 1]], axis=1)
        u = self.size / 2 + r[:, 0] * self.scale
        v = self.size / 2 - r[:, 1] * self.scale
        return np.round(np.stack([u, v], axis=1) * _SCALE).astype(np.int32).reshape(-1, 1, 2)

    def line(self, xy: np.ndarray, color: C.Color, thickness: int = 1, closed: bool = False) -> None:
        if len(xy) >= 2:
            cv2.polylines(self.img, [self.px(xy)], closed, color, thickness, cv2.LINE_AA, _SHIFT)

    def fill(self, xy: np.ndarray, color: C.Color) -> None:
        cv2.fillPoly(self.img, [self.px(xy)], color, cv2.LINE_AA, _SHIFT)

    def dot(self, xy: np.ndarray, color: C.Color, radius: int = 3) -> None:
        for p in self.px(xy).reshape(-1, 2):
            cv2.circle(self.img, (int(p[0]), int(p[1])), radius * _SCALE, color, -1, cv2.LINE_AA, _SHIFT)

    def text(self, lines: Sequence[str], origin: tuple[int, int] = (8, 18), scale: float = 0.45) -> None:
        for i, line in enumerate(lines):
            cv2.putText(
                self.img,
                line,
                (origin[0], origin[1] + i * int(22 * scale / 0.45)),
                cv2.FONT_HERSHEY_SIMPLEX,
                scale,
                (40, 40, 40),
                1,
                cv2.LINE_AA,
            )


def _polygons(geom) -> list[np.ndarray]:
    if geom is None or geom.is_empty:
        return []
    if geom.geom_type == "Polygon":
        return [np.asarray(geom.exterior.coords)] + [np.asarray(r.coords) for r in geom.interiors]
    out = []
    for g in getattr(geom, "geoms", []):
        out.extend(_polygons(g))
    return out


def _draw_map(canvas: _Canvas, log: EpisodeLog, lanes: bool = True) -> None:
    outlines = _polygons(log.drivable_area)
    if outlines:
        canvas.fill(outlines[0], (222, 222, 222))
        for hole in outlines[1:]:
            canvas.fill(hole, (248, 248, 248))
        for ring in outlines:
            canvas.line(ring, (120, 160, 120), 1, closed=True)
    if lanes:
        for lane in log.lanes:
            if not lane.is_connector:
                canvas.line(lane.centerline, (205, 205, 205), 1)
    canvas.line(log.route, ROUTE_COLOR, 3)


def _draw_agents(canvas: _Canvas, log: EpisodeLog, k: int) -> None:
    for i in range(len(log.agent_ids)):
        if not log.agent_present[i, k]:
            continue
        x, y, yaw, _ = log.agents[i, k]
        corners = box_corners_2d(
            float(x), float(y), float(yaw), float(log.agent_sizes[i, 0]), float(log.agent_sizes[i, 1])
        )
        color = _category_color(log.agent_categories[i])
        canvas.fill(corners, color)
        canvas.line(corners, (60, 60, 60), 1, closed=True)


def _ego_box(log: EpisodeLog, k: int) -> np.ndarray:
    x, y, yaw = log.ego[k, :3]
    cx = x + log.ego_centre_offset * math.cos(yaw)
    cy = y + log.ego_centre_offset * math.sin(yaw)
    return box_corners_2d(cx, cy, float(yaw), log.ego_length, log.ego_width)


def camera_view(model: CameraModel, name: str) -> CameraView:
    """A :class:`CameraView` for drawing (projection only: no image file behind it)."""
    return CameraView(name, "", model.intrinsics, model.cam_to_ego, model.width, model.height, 0, "")


def episode_frame(
    log: EpisodeLog,
    cycle: int,
    cameras: Sequence[CameraModel],
    tile_width: int = 320,
    bev_metres: float = 60.0,
    score_line: str = "",
) -> np.ndarray:
    """(H, W, 3) BGR frame of planning cycle ``cycle``: camera grid (left) + BEV (right)."""
    plan = log.plans[min(cycle, len(log.plans) - 1)] if log.plans else None
    k = int(round((plan.time if plan is not None else 0.0) / log.dt)) if plan is not None else 0
    k = min(k, log.num_steps - 1)
    jpegs = log.camera_frames[cycle] if cycle < len(log.camera_frames) else []
    aspect = cameras[0].height / cameras[0].width if cameras else 9 / 16
    tile_h = int(round(tile_width * aspect))
    grid = np.full((2 * tile_h, 3 * tile_width, 3), 30, np.uint8)
    by_name = dict(zip(CAMERA_NAMES, range(len(CAMERA_NAMES)), strict=True))
    for r, names in enumerate(CAMERA_GRID):
        for c, name in enumerate(names):
            i = by_name[name]
            if i >= len(jpegs):
                continue
            rgb = decode_compressed(jpegs[i], "jpeg", name)
            tile = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (tile_width, tile_h), interpolation=cv2.INTER_AREA)
            if plan is not None and i < len(cameras):
                draw_trajectory(tile, camera_view(cameras[i], name), plan.trajectory_ego, PLAN_COLOR)
            cv2.putText(tile, name, (6, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
            grid[r * tile_h : (r + 1) * tile_h, c * tile_width : (c + 1) * tile_width] = tile
    x, y, yaw = log.ego[k, :3]
    canvas = _Canvas(
        2 * tile_h, np.array([x, y]) + 10.0 * np.array([math.cos(yaw), math.sin(yaw)]), bev_metres, heading=float(yaw)
    )
    _draw_map(canvas, log)
    _draw_agents(canvas, log, k)
    canvas.line(log.ego[: k + 1, :2], DRIVEN_COLOR, 2)
    if plan is not None:
        canvas.line(np.vstack([log.ego[k, :2], plan.trajectory_global]), PLAN_COLOR, 2)
        canvas.dot(plan.trajectory_global, PLAN_COLOR, 2)
    canvas.fill(_ego_box(log, k), (40, 40, 40))
    command = COMMAND_NAMES[plan.command] if plan is not None else "-"
    canvas.text(
        [
            f"{log.policy}",
            f"{log.scenario}  seed {log.seed}",
            f"t {log.times[k]:4.1f} s  v {log.ego[k, EGO_SPEED]:4.1f} m/s",
            f"command: {command}",
            score_line,
        ]
    )
    return np.hstack([grid, canvas.img])


def write_episode_video(
    log: EpisodeLog, cameras: Sequence[CameraModel], path: str | os.PathLike, fps: float = 2.0, score_line: str = ""
) -> int:
    """One frame per planning cycle; returns the number of frames written."""
    with VideoWriter(path, fps=fps) as video:
        for cycle in range(max(len(log.plans), len(log.camera_frames))):
            video.write(episode_frame(log, cycle, cameras, score_line=score_line))
        return video.num_frames


def episode_summary(
    log: EpisodeLog,
    lines: Sequence[str],
    reference_xy: np.ndarray | None = None,
    collisions: Sequence[tuple[int, int]] = (),
    size: int = 720,
) -> np.ndarray:
    """Top view of the whole episode: map, route, the logged expert (dashed), the driven path coloured by speed,
    the agents at the end, collision points; ``lines`` of text (the metrics)."""
    pts = log.ego[:, :2]
    extent = np.vstack([pts, reference_xy]) if reference_xy is not None and len(reference_xy) else pts
    lo, hi = extent.min(axis=0), extent.max(axis=0)
    centre = (lo + hi) / 2
    metres = float((hi - lo).max() + 30.0)
    canvas = _Canvas(size, centre, max(metres, 60.0), heading=math.pi / 2)
    _draw_map(canvas, log)
    _draw_agents(canvas, log, log.num_steps - 1)
    if reference_xy is not None and len(reference_xy) >= 2:
        for a in range(0, len(reference_xy) - 1, 4):
            canvas.line(reference_xy[a : a + 3], (120, 120, 120), 1)
    speed = np.abs(log.ego[:, EGO_SPEED])
    vmax = max(float(speed.max()), 1.0)
    for k in range(len(pts) - 1):
        f = speed[k] / vmax
        canvas.line(pts[k : k + 2], (int(220 * (1 - f)), int(80 + 60 * f), int(40 + 200 * f)), 3)
    canvas.dot(pts[:1], (0, 160, 0), 5)
    canvas.dot(pts[-1:], (0, 0, 0), 5)
    for k, _agent in collisions:
        canvas.dot(pts[min(k, len(pts) - 1)][None], COLLISION_COLOR, 7)
    canvas.text(list(lines))
    return canvas.img


def write_episode_summary(
    log: EpisodeLog,
    path: str | os.PathLike,
    lines: Sequence[str],
    reference_xy: np.ndarray | None = None,
    collisions: Sequence[tuple[int, int]] = (),
) -> None:
    save_png(episode_summary(log, lines, reference_xy, collisions), path)


__all__ = ["episode_frame", "episode_summary", "write_episode_summary", "write_episode_video"]
