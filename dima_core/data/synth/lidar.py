"""A small LIDAR_TOP point cloud per keyframe (nuScenes ``.pcd.bin``: float32 x, y, z, intensity, ring index, in
the LIDAR_TOP sensor frame), so devkit functions that need LIDAR_TOP work and ``num_lidar_pts`` is meaningful.

Returns come from the ground (rings on z = 0, minus what lies under boxes) and from agent box faces that face the
sensor, with a density that falls with the squared range and scales with the agent's visible fraction in the
cameras (a cheap stand-in for occlusion). ``num_lidar_pts`` of an annotation is the number of points inside its box.
"""

from __future__ import annotations

import math

import numpy as np

from dima_core.data.synth.cameras import LIDAR_TRANSLATION, ego_to_world, lidar_to_ego

_LIDAR_H = LIDAR_TRANSLATION[2]


def ground_pattern(rings: int, per_ring: int) -> np.ndarray:
    """(rings * per_ring, 3) ground hits in the ego frame (rings from 3 m to ~60 m), plus ring index column."""
    if rings == 0:
        return np.zeros((0, 4))
    elev = np.radians(np.linspace(-30.0, -1.8, rings))
    rng_m = _LIDAR_H / np.tan(-elev)
    az = np.linspace(-math.pi, math.pi, per_ring, endpoint=False)
    r, a = np.meshgrid(rng_m, az, indexing="ij")
    ring = np.broadcast_to(np.arange(rings)[:, None], r.shape)
    x = LIDAR_TRANSLATION[0] + r * np.cos(a)
    y = LIDAR_TRANSLATION[1] + r * np.sin(a)
    return np.stack([x.ravel(), y.ravel(), np.zeros(r.size), ring.ravel().astype(float)], axis=1)


def sweep(
    ego: tuple[float, float, float],
    boxes: list[tuple[int, float, float, float, float, float, float, float]],
    ground: np.ndarray,
    density: float,
    rng: np.random.Generator,
) -> tuple[np.ndarray, dict[int, int]]:
    """One keyframe's point cloud.

    ``boxes``: (agent id, x, y, yaw, length, width, height, visible fraction) in the global frame (box centre at
    z = height / 2). Returns ((N, 5) float32 points in the LIDAR_TOP frame, {agent id: points inside its box}).
    """
    world_from_ego = ego_to_world(*ego)
    ego_from_world = np.linalg.inv(world_from_ego)
    pts_ego = [ground[:, :3]]
    rings = [ground[:, 3]]
    intens = [np.full(len(ground), 8.0)]
    local_boxes = []
    for aid, x, y, yaw, length, width, height, vis in boxes:
        c = ego_from_world @ np.array([x, y, 0.0, 1.0])
        lyaw = yaw - ego[2]
        local_boxes.append((aid, c[0], c[1], lyaw, length, width, height))
        dist = max(math.hypot(c[0], c[1]), 1.0)
        sensor = np.array(LIDAR_TRANSLATION[:2])
        for nx, ny, half, span, face_len in (
            (1, 0, length / 2, width, width),
            (-1, 0, length / 2, width, width),
            (0, 1, width / 2, length, length),
            (0, -1, width / 2, length, length),
        ):
            cl, sl = math.cos(lyaw), math.sin(lyaw)
            n = np.array([cl * nx - sl * ny, sl * nx + cl * ny])
            fc = np.array([c[0], c[1]]) + n * half
            if n @ (sensor - fc) <= 0:
                continue  # face points away from the sensor
            count = int(min(600, density * face_len * height / dist**2 * max(vis, 0.05)))
            if count == 0:
                continue
            u = rng.uniform(-0.5, 0.5, count) * (span - 0.04)
            h = rng.uniform(0.02, height - 0.02, count)
            t = np.array([-n[1], n[0]])
            p = fc - n * 0.02 + u[:, None] * t
            pts_ego.append(np.stack([p[:, 0], p[:, 1], h], axis=1))
            rings.append(np.clip((h / max(height, 0.1)) * 8 + 8, 0, 31))
            intens.append(rng.uniform(20, 90, count))
    pts = np.concatenate(pts_ego)
    ring = np.concatenate(rings)
    inten = np.concatenate(intens)
    counts: dict[int, int] = {}
    keep = np.ones(len(pts), bool)
    n_ground = len(ground)
    for aid, bx, by, byaw, length, width, height in local_boxes:
        rel = pts[:, :2] - [bx, by]
        cl, sl = math.cos(byaw), math.sin(byaw)
        lx = rel[:, 0] * cl + rel[:, 1] * sl
        ly = -rel[:, 0] * sl + rel[:, 1] * cl
        inside = (np.abs(lx) <= length / 2) & (np.abs(ly) <= width / 2) & (pts[:, 2] >= 0) & (pts[:, 2] <= height)
        inside[:n_ground] &= False  # ground under a box is hidden by it
        under = (np.abs(lx[:n_ground]) <= length / 2) & (np.abs(ly[:n_ground]) <= width / 2)
        keep[:n_ground] &= ~under
        counts[aid] = int(inside.sum())
    pts, ring, inten = pts[keep], ring[keep], inten[keep]
    lidar_from_ego = np.linalg.inv(lidar_to_ego())
    p_l = pts @ lidar_from_ego[:3, :3].T + lidar_from_ego[:3, 3]
    out = np.concatenate([p_l, inten[:, None], ring[:, None]], axis=1).astype(np.float32)
    return out, counts
