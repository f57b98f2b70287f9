"""Camera renderer: real pinhole projection with near-plane clipping and painter's ordering (cv2.fillPoly).

Order per camera: sky and off-road ground (precomputed per scene), walkways, road surface, lane markings,
crosswalks and stop lines, agent shadows, then every box (buildings and agents) far to near with back faces culled
and faces shaded by a per-scene sun. Polygons are transformed into the camera frame in one matmul per layer; those
wholly outside one frustum plane are culled and only those crossing a plane are clipped (Sutherland-Hodgman in 3D,
before projection, so nothing behind the camera is ever projected).

An id buffer drawn with the same painter's order gives each agent's visible pixel count (-> nuScenes visibility).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from dima_core.data.synth.cameras import Camera, ego_to_world
from dima_core.data.synth.roads import WALKWAY_WIDTH, RoadNetwork
from dima_core.data.synth.traffic import Actor

SHIFT = 2  # fillPoly sub-pixel bits
GUARD_PX = 3000.0  # polygons are clipped to the image grown by this margin (keeps fillPoly coordinates small)
BUILDING_ID = 65535


@dataclass
class Lighting:
    """Per-scene colours (BGR, 0-255) and sun."""

    sky_top: np.ndarray
    sky_horizon: np.ndarray
    ground: np.ndarray
    road: np.ndarray
    walkway: np.ndarray
    white: np.ndarray
    yellow: np.ndarray
    sun: np.ndarray  # (3,) unit vector towards the sun, global frame
    ambient: float
    diffuse: float

    @staticmethod
    def random(rng: np.random.Generator) -> Lighting:
        gain = float(rng.uniform(0.7, 1.15))  # exposure
        tint = rng.uniform(0.95, 1.05, size=3)  # white balance
        dusk = rng.random() < 0.2

        def c(*bgr: float) -> np.ndarray:
            return np.clip(np.array(bgr) * gain * tint, 0, 255)

        if dusk:
            sky_top, sky_hor = c(120, 80, 70), c(150, 170, 220)
        else:
            sky_top, sky_hor = c(200 + rng.uniform(-20, 20), 150, 90), c(235, 215, 195)
        grounds = ((70, 120, 85), (80, 110, 120), (95, 125, 135), (60, 100, 70))
        ground = c(*grounds[int(rng.integers(len(grounds)))]) * rng.uniform(0.85, 1.1)
        road = c(*([rng.uniform(70, 105)] * 3))
        az, el = rng.uniform(-math.pi, math.pi), rng.uniform(0.3, 1.2)
        sun = np.array([math.cos(az) * math.cos(el), math.sin(az) * math.cos(el), math.sin(el)])
        return Lighting(
            sky_top,
            sky_hor,
            np.clip(ground, 0, 255),
            road,
            c(165, 170, 172),
            c(225, 228, 230),
            c(40, 190, 225),
            sun,
            float(rng.uniform(0.45, 0.6)),
            float(rng.uniform(0.35, 0.55)),
        )


def _strip_quads(left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """(N-1, 4, 2) quads between two polylines sampled at the same stations."""
    return np.stack([left[:-1], left[1:], right[1:], right[:-1]], axis=1)


def _road_quads(net: RoadNetwork, lo: float, hi: float, road_ids=None, chunk: float = 4.0) -> np.ndarray:
    out = []
    for road in net.roads:
        if road_ids is not None and road.id not in road_ids:
            continue
        from dima_core.data.synth.geometry import offset, resample

        cl = resample(road.cl, chunk)
        l_off = hi(road) if callable(hi) else hi
        r_off = lo(road) if callable(lo) else lo
        out.append(_strip_quads(offset(cl, l_off), offset(cl, r_off)))
    return np.concatenate(out) if out else np.zeros((0, 4, 2))


def _dashes(cl: np.ndarray, off: float, width: float, on: float, period: float) -> np.ndarray:
    """(K, 4, 2) dash quads along ``cl`` (0.5 m spacing) at lateral offset ``off``."""
    from dima_core.data.synth.geometry import offset

    s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(cl, axis=0), axis=1))])
    left, right = offset(cl, off + width / 2), offset(cl, off - width / 2)
    quads = []
    start = 0.0
    while start + on < s[-1]:
        i0, i1 = np.searchsorted(s, start), np.searchsorted(s, start + on)
        quads.append([left[i0], left[i1], right[i1], right[i0]])
        start += period
    return np.array(quads).reshape(-1, 4, 2)


class SceneRenderer:
    """Renders one scene's cameras. Static geometry is prepared once; ``render`` draws one frame."""

    def __init__(
        self,
        net: RoadNetwork,
        cameras: list[Camera],
        light: Lighting,
        near: float,
        far: float,
        noise_std: float,
        noise_seed: int,
    ):
        from dima_core.data.synth.geometry import offset, resample

        self.cameras = cameras
        self.light = light
        self.near, self.far = near, far
        # Ground layers in painter's order: (BGR colour, (Q, P, 2) polygons on z = 0).
        layers: list[tuple[np.ndarray, np.ndarray]] = []
        walk = [
            _road_quads(net, lambda r: r.left_edge_offset, lambda r: r.left_edge_offset + WALKWAY_WIDTH),
            _road_quads(net, lambda r: r.right_edge_offset - WALKWAY_WIDTH, lambda r: r.right_edge_offset),
        ]
        layers.append((light.walkway, np.concatenate(walk)))
        layers.append((light.road, _road_quads(net, lambda r: r.right_edge_offset, lambda r: r.left_edge_offset)))
        for j in net.junctions:
            layers.append((light.road, np.asarray(j.polygon.exterior.coords)[:-1][None]))
        white, yellow = [], []
        for road in net.roads:
            cl = resample(road.cl, 0.5)
            chunk = resample(road.cl, 3.0)
            w = road.lane_width
            if road.lanes_fwd and road.lanes_bwd:
                for o in (-0.12, 0.12):
                    yellow.append(_strip_quads(offset(chunk, o + 0.06), offset(chunk, o - 0.06)))
            for i in range(1, road.lanes_fwd):
                white.append(_dashes(cl, -i * w, 0.15, 3.0, 9.0))
            for j in range(1, road.lanes_bwd):
                white.append(_dashes(cl, j * w, 0.15, 3.0, 9.0))
            for o in (-road.lanes_fwd * w, road.lanes_bwd * w):
                white.append(_strip_quads(offset(chunk, o + 0.08), offset(chunk, o - 0.08)))
        for cw in net.crosswalks:
            road = net.roads[cw.road]
            o = road.right_edge_offset + 0.5
            while o + 0.5 < road.left_edge_offset - 0.3:
                sub = road.sub(cw.s - cw.width / 2, cw.s + cw.width / 2)
                hi_line, lo_line = offset(sub, o + 0.5), offset(sub, o)
                white.append(np.array([[hi_line[0], hi_line[-1], lo_line[-1], lo_line[0]]]))
                o += 1.1
        for sl in net.stop_lines:
            white.append(sl.polygon[None])
        layers.append((light.yellow, np.concatenate(yellow) if yellow else np.zeros((0, 4, 2))))
        layers.append((light.white, np.concatenate(white) if white else np.zeros((0, 4, 2))))
        self.ground_layers = [(c, _lift(p)) for c, p in layers if len(p)]
        # All quads of all ground layers in one array (one transform + one culling pass per camera); polygons with
        # other vertex counts (junction areas) are drawn with their layer's predecessor order preserved.
        quads = [(i, p) for i, (_, p) in enumerate(self.ground_layers) if p.shape[1] == 4]
        self.ground_quads = np.concatenate([p for _, p in quads]) if quads else np.zeros((0, 4, 3))
        self.ground_quad_layer = np.concatenate([np.full(len(p), i) for i, p in quads]) if quads else np.zeros(0, int)
        self.ground_other = [(i, p) for i, (_, p) in enumerate(self.ground_layers) if p.shape[1] != 4]
        # Buildings: static boxes with id BUILDING_ID.
        self.buildings = [
            (b.x, b.y, b.yaw, 0.0, b.length, b.width, b.height, np.array(b.color, float), BUILDING_ID)
            for b in net.buildings
        ]
        self.backgrounds = [self._background(c) for c in cameras]
        # Sensor noise: a small bank of noise images, picked and offset deterministically per frame and camera.
        rng = np.random.default_rng(noise_seed)
        h, w = cameras[0].height, cameras[0].width
        self.noise = (
            [np.round(rng.normal(0.0, noise_std, size=(h + 8, w + 8, 3))).astype(np.int16) for _ in range(4)]
            if noise_std > 0
            else []
        )

    def _background(self, cam: Camera) -> np.ndarray:
        h, w = cam.height, cam.width
        cy = cam.K[1, 2]
        v = np.arange(h, dtype=float)[:, None]
        t_sky = np.clip(v / max(cy, 1.0), 0, 1) ** 0.6
        sky = self.light.sky_top * (1 - t_sky) + self.light.sky_horizon * t_sky
        t_g = np.clip((v - cy) / max(h - cy, 1.0), 0, 1)
        haze = np.exp(-t_g * 12.0)  # (h, 1): the ground fades into the horizon colour far away
        ground = self.light.ground * (0.85 + 0.25 * t_g) * (1 - 0.5 * haze) + self.light.sky_horizon * 0.5 * haze
        img = np.where(v < cy, sky, ground)
        return np.ascontiguousarray(
            np.repeat(img[:, None, :], w, axis=1).reshape(h, w, 3).clip(0, 255).astype(np.uint8)
        )

    # ---- one frame ----------------------------------------------------------------------------------------------
    def render(
        self,
        ego: tuple[float, float, float],
        actors: list[tuple[Actor, float, float, float]],
        include_agents: bool = True,
        frame_key: int = 0,
        want_ids: bool = False,
    ) -> tuple[list[np.ndarray], list[np.ndarray] | None, dict[int, float]]:
        """Render every camera at ego pose (x, y, yaw).

        ``actors``: (actor, x, y, yaw) of agents present in this frame (box centre, global). Returns BGR images
        (H, W, 3) uint8 in camera order, id buffers (H, W) uint16 (agent id + 1; 0 ground, 65535 buildings) when
        ``want_ids``, and each agent's projected silhouette area in pixels summed over cameras (inside the images).
        """
        world_from_ego = ego_to_world(*ego)
        boxes = list(self.buildings)
        if include_agents:
            for actor, x, y, yaw in actors:
                boxes.extend(_parts(actor, x, y, yaw))
        faces, colours, owners, normals = _box_faces(boxes, self.light)
        shadows = _shadows(actors) if include_agents else np.zeros((0, 4, 3))
        images, ids = [], []
        area: dict[int, float] = {}
        for ci, cam in enumerate(self.cameras):
            world_to_cam = np.linalg.inv(world_from_ego @ cam.cam_to_ego)
            img = self.backgrounds[ci].copy()
            idbuf = np.zeros(img.shape[:2], np.uint16) if want_ids else None
            quad_pix, quad_layer = self._project(self.ground_quads, world_to_cam, cam, self.ground_quad_layer)
            other = {i: self._project(p, world_to_cam, cam)[0] for i, p in self.ground_other}
            for li, (colour, _) in enumerate(self.ground_layers):
                polys = [pix for pix, lay in zip(quad_pix, quad_layer, strict=True) if lay == li] + other.get(li, [])
                _fill(img, None, polys, colour, 0)
            if len(shadows):
                dark = self.light.road * 0.45
                _fill(img, None, self._project(shadows, world_to_cam, cam)[0], dark, 0)
            if len(faces):
                self._draw_boxes(img, idbuf, faces, colours, owners, normals, world_to_cam, cam, area)
            if self.noise:
                bank = self.noise[(frame_key * 7 + ci) % len(self.noise)]
                oy, ox = (frame_key * 5 + ci * 3) % 8, (frame_key * 3 + ci * 5) % 8
                noisy = img.astype(np.int16) + bank[oy : oy + img.shape[0], ox : ox + img.shape[1]]
                img = np.clip(noisy, 0, 255).astype(np.uint8)
            images.append(img)
            ids.append(idbuf)
        return images, (ids if want_ids else None), area

    def _project(
        self, polys: np.ndarray, world_to_cam: np.ndarray, cam: Camera, labels: np.ndarray | None = None
    ) -> tuple[list[np.ndarray], list[int]]:
        """Clip (Q, P, 3) world polygons to the (guarded) view frustum and project them.

        Returns (K, 2) int32 pixel polygons (fixed point, 2**SHIFT) of the visible ones, in input order, and their
        ``labels`` (or zeros)."""
        if len(polys) == 0:
            return [], []
        q, p, _ = polys.shape
        pts2 = polys.reshape(-1, 3) @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
        planes = _planes(cam, self.near)
        vals = (pts2 @ planes[:, :3].T + planes[:, 3]).reshape(q, p, 5)
        pts = pts2.reshape(q, p, 3)
        neg = vals < 0
        outside = neg.all(axis=1).any(axis=1) | (pts[..., 2] > self.far).all(axis=1)
        inside = ~neg.any(axis=(1, 2))
        labels = np.zeros(q, int) if labels is None else labels
        vis = np.flatnonzero(~outside)
        if len(vis) == 0:
            return [], []
        batch = _to_pixels(np.where(inside[vis, None, None], pts[vis], 1.0), cam)
        plane_list = planes.tolist()
        out, out_labels = [], []
        for k, i in enumerate(vis.tolist()):
            if inside[i]:
                out.append(batch[k])
            else:
                poly = _clip(pts[i].tolist(), plane_list)
                if len(poly) < 3:
                    continue
                out.append(_poly_pixels(poly, cam))
            out_labels.append(int(labels[i]))
        return out, out_labels

    def _draw_boxes(self, img, idbuf, faces, colours, owners, normals, world_to_cam, cam, area) -> None:
        cam_pos = np.linalg.inv(world_to_cam)[:3, 3]
        centres = faces.mean(axis=1)
        facing = ((cam_pos - centres) * normals).sum(1) > 1e-6
        # Painter's order over parts: far to near by part centre distance (faces of one part are 5 consecutive).
        part_centre = centres.reshape(-1, 5, 3).mean(axis=1)
        order = np.argsort(-np.linalg.norm(part_centre - cam_pos, axis=1), kind="stable")
        face_idx = (order[:, None] * 5 + np.arange(5)[None]).reshape(-1)
        face_idx = face_idx[facing[face_idx]]
        if len(face_idx) == 0:
            return
        sel = faces[face_idx]
        q = len(sel)
        pts2 = sel.reshape(-1, 3) @ world_to_cam[:3, :3].T + world_to_cam[:3, 3]
        pts = pts2.reshape(q, 4, 3)
        planes = _planes(cam, self.near)
        vals = (pts2 @ planes[:, :3].T + planes[:, 3]).reshape(q, 4, 5)
        outside = (vals < 0).all(axis=1).any(axis=1) | (pts[..., 2] > self.far).all(axis=1)
        inside = (vals >= 0).all(axis=(1, 2))
        hulls: dict[int, list[np.ndarray]] = {}
        # Faces wholly inside are projected in one batch; only faces crossing a plane are clipped one by one.
        batch = _to_pixels(np.where(inside[:, None, None], pts, 1.0), cam)
        plane_list = planes.tolist()
        colour_list = colours[face_idx].tolist()
        owner_list = owners[face_idx].tolist()
        for k in range(q):
            if outside[k]:
                continue
            if inside[k]:
                pix = batch[k]
            else:
                poly = _clip(pts[k].tolist(), plane_list)
                if len(poly) < 3:
                    continue
                pix = _poly_pixels(poly, cam)
            cv2.fillPoly(img, [pix], colour_list[k], cv2.LINE_8, SHIFT)
            owner = owner_list[k]
            if idbuf is not None:
                cv2.fillPoly(idbuf, [pix], owner, cv2.LINE_8, SHIFT)
                if owner != BUILDING_ID:
                    hulls.setdefault(owner, []).append(pix)
        for owner, pix_list in hulls.items():
            pts2 = (np.concatenate(pix_list).astype(np.float32) / (1 << SHIFT)).reshape(-1, 1, 2)
            hull = cv2.convexHull(pts2)
            rect = np.array([[0, 0], [cam.width, 0], [cam.width, cam.height], [0, cam.height]], np.float32)
            a, _ = cv2.intersectConvexConvex(hull.reshape(-1, 2), rect)
            area[owner] = area.get(owner, 0.0) + float(a)


def _lift(polys2d: np.ndarray) -> np.ndarray:
    return np.concatenate([polys2d, np.zeros(polys2d.shape[:2] + (1,))], axis=2)


def _planes(cam: Camera, near: float) -> np.ndarray:
    """(5, 4) inside half-spaces a.x + b.y + c.z + d >= 0 in camera coordinates: near, and the image grown by
    GUARD_PX on each side (left, right, top, bottom)."""
    fx, fy, cx, cy = cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2]
    g = GUARD_PX
    return np.array(
        [
            [0.0, 0.0, 1.0, -near],
            [fx, 0.0, cx + g, 0.0],
            [-fx, 0.0, cam.width + g - cx, 0.0],
            [0.0, fy, cy + g, 0.0],
            [0.0, -fy, cam.height + g - cy, 0.0],
        ]
    )


def _clip(poly: list[list[float]], planes: list[list[float]]) -> list[list[float]]:
    """Sutherland-Hodgman clip of a polygon [[x, y, z], ...] against half-spaces [[a, b, c, d], ...] (inside:
    a x + b y + c z + d >= 0). Pure Python: the polygons are tiny and numpy's per-call overhead dominates."""
    for a, b, c, d0 in planes:
        n = len(poly)
        if n == 0:
            break
        dist = [a * p[0] + b * p[1] + c * p[2] + d0 for p in poly]
        if min(dist) >= 0:
            continue
        out = []
        for i in range(n):
            j = (i + 1) % n
            di, dj = dist[i], dist[j]
            p, q = poly[i], poly[j]
            if di >= 0:
                out.append(p)
            if (di >= 0) != (dj >= 0):
                t = di / (di - dj)
                out.append([p[0] + t * (q[0] - p[0]), p[1] + t * (q[1] - p[1]), p[2] + t * (q[2] - p[2])])
        poly = out
    return poly


def _poly_pixels(poly: list[list[float]], cam: Camera) -> np.ndarray:
    """One clipped camera-frame polygon (z > 0) -> (P, 2) int32 fixed-point pixels."""
    fx, fy, cx, cy = cam.K[0, 0], cam.K[1, 1], cam.K[0, 2], cam.K[1, 2]
    sc = float(1 << SHIFT)
    return np.array([[round((fx * x / z + cx) * sc), round((fy * y / z + cy) * sc)] for x, y, z in poly], np.int32)


def _to_pixels(pts: np.ndarray, cam: Camera) -> np.ndarray:
    """(Q, P, 3) camera points (z > 0) -> (Q, P, 2) int32 fixed-point pixel polygons."""
    z = pts[..., 2:3]
    uv = pts[..., :2] / z * np.array([cam.K[0, 0], cam.K[1, 1]]) + np.array([cam.K[0, 2], cam.K[1, 2]])
    return np.round(uv * (1 << SHIFT)).astype(np.int32)


def _fill(img, idbuf, polys: list[np.ndarray], colour, ident: int) -> None:
    if polys:
        cv2.fillPoly(img, polys, np.asarray(colour).tolist(), cv2.LINE_8, SHIFT)
        if idbuf is not None:
            cv2.fillPoly(idbuf, polys, ident, cv2.LINE_8, SHIFT)


def _parts(actor: Actor, x: float, y: float, yaw: float) -> list[tuple]:
    """Visual cuboids of an agent: (x, y, yaw, z0, length, width, height, colour, owner id)."""
    L, W, H = actor.length, actor.width, actor.height
    col = np.array(actor.color, float)
    c, s = math.cos(yaw), math.sin(yaw)
    oid = actor.id + 1
    if actor.is_pedestrian:
        skin = np.array((120, 160, 210), float)
        legs = np.array((60, 50, 50), float)
        return [
            (x, y, yaw, 0.0, L * 0.6, W * 0.7, H * 0.45, legs, oid),
            (x, y, yaw, H * 0.45, L * 0.8, W, H * 0.42, col, oid),
            (x, y, yaw, H * 0.87, L * 0.45, W * 0.5, H * 0.13, skin, oid),
        ]
    if actor.is_cycle:
        return [
            (x, y, yaw, 0.0, L, W * 0.35, H * 0.55, np.array((40, 40, 40), float), oid),
            (x - 0.15 * c, y - 0.15 * s, yaw, H * 0.55, L * 0.35, W * 0.8, H * 0.45, col, oid),
        ]
    if actor.category == "vehicle.car":
        glass = col * 0.25 + np.array((70, 55, 45))
        body_h = H * 0.55
        return [
            (x, y, yaw, 0.0, L, W, body_h, col, oid),
            (x - 0.08 * L * c, y - 0.08 * L * s, yaw, body_h, L * 0.55, W * 0.9, H - body_h, glass, oid),
        ]
    # Trucks and buses: a cab/box split with a window band for buses.
    if actor.category.startswith("vehicle.bus"):
        glass = np.array((70, 55, 45), float)
        return [
            (x, y, yaw, 0.0, L, W, H * 0.5, col, oid),
            (x, y, yaw, H * 0.5, L * 0.98, W * 0.98, H * 0.3, glass, oid),
            (x, y, yaw, H * 0.8, L, W, H * 0.2, col, oid),
        ]
    cab_l = min(2.2, L * 0.3)
    cargo = np.array((200, 200, 200), float) if actor.id % 2 else col * 0.8 + 40
    return [
        (x + (L / 2 - cab_l / 2) * c, y + (L / 2 - cab_l / 2) * s, yaw, 0.0, cab_l, W, H * 0.75, col, oid),
        (x - cab_l / 2 * c, y - cab_l / 2 * s, yaw, 0.0, L - cab_l - 0.2, W, H, np.clip(cargo, 0, 255), oid),
    ]


# Face corner templates of a unit box (x along length, y along width, z up), 5 faces (no bottom):
# front (+x), back (-x), left (+y), right (-y), top (+z).
_FACE_CORNERS = np.array(
    [
        [[1, 1, 0], [1, -1, 0], [1, -1, 1], [1, 1, 1]],
        [[-1, -1, 0], [-1, 1, 0], [-1, 1, 1], [-1, -1, 1]],
        [[-1, 1, 0], [1, 1, 0], [1, 1, 1], [-1, 1, 1]],
        [[1, -1, 0], [-1, -1, 0], [-1, -1, 1], [1, -1, 1]],
        [[1, 1, 1], [1, -1, 1], [-1, -1, 1], [-1, 1, 1]],
    ],
    float,
)
_FACE_NORMALS = np.array([[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1]], float)


def _box_faces(boxes: list[tuple], light: Lighting):
    """(5B, 4, 3) world face corners, (5B, 3) shaded colours, (5B,) owner ids, (5B, 3) normals."""
    if not boxes:
        z = np.zeros((0, 4, 3))
        return z, np.zeros((0, 3)), np.zeros((0,), np.int64), np.zeros((0, 3))
    arr = np.array([b[:7] for b in boxes], float)  # x, y, yaw, z0, l, w, h
    cols = np.array([b[7] for b in boxes], float)
    owners = np.repeat(np.array([b[8] for b in boxes], np.int64), 5)
    x, y, yaw, z0, l, w, h = arr.T
    c, s = np.cos(yaw), np.sin(yaw)
    local = _FACE_CORNERS[None] * np.stack([l / 2, w / 2, h], axis=1)[:, None, None, :]  # (B, 5, 4, 3)
    wx = x[:, None, None] + c[:, None, None] * local[..., 0] - s[:, None, None] * local[..., 1]
    wy = y[:, None, None] + s[:, None, None] * local[..., 0] + c[:, None, None] * local[..., 1]
    wz = z0[:, None, None] + local[..., 2]
    faces = np.stack([wx, wy, wz], axis=-1).reshape(-1, 4, 3)
    nx = c[:, None] * _FACE_NORMALS[None, :, 0] - s[:, None] * _FACE_NORMALS[None, :, 1]
    ny = s[:, None] * _FACE_NORMALS[None, :, 0] + c[:, None] * _FACE_NORMALS[None, :, 1]
    nz = np.broadcast_to(_FACE_NORMALS[None, :, 2], nx.shape)
    normals = np.stack([nx, ny, nz], axis=-1).reshape(-1, 3)
    shade = light.ambient + light.diffuse * np.clip(normals @ light.sun, 0.0, None)
    colours = np.clip(np.repeat(cols, 5, axis=0) * shade[:, None] * 1.25, 0, 255)
    return faces, colours, owners, normals


def _shadows(actors: list[tuple[Actor, float, float, float]]) -> np.ndarray:
    """(N, 4, 3) dark footprints slightly larger than each agent, 2 cm above the road."""
    out = []
    for actor, x, y, yaw in actors:
        c, s = math.cos(yaw), math.sin(yaw)
        hl, hw = actor.length / 2 + 0.15, actor.width / 2 + 0.15
        corners = [(hl, hw), (-hl, hw), (-hl, -hw), (hl, -hw)]
        out.append([(x + c * a - s * b, y + s * a + c * b, 0.02) for a, b in corners])
    return np.array(out, float).reshape(-1, 4, 3)
