"""Procedural road network of one scene: roads (straight and curved pieces), junctions, dead ends, lanes,
lane connectors, crosswalks, stop lines and walkways.

Conventions (global map frame, metres):
- A road has a reference centerline (``Road.cl``, (N, 2) at 0.5 m spacing). Its *forward* lanes run along the
  reference direction on its right (right-hand traffic), its *backward* lanes against it on its left. Lane index 0
  is the innermost lane (next to the road divider).
- Cross-section offsets are measured to the left of the reference line: forward lane i is centred at
  ``-(i + 0.5) * lane_width``, backward lane j at ``+(j + 0.5) * lane_width``; shoulders (parking strips) lie
  beyond the outermost lanes and are part of the road surface; walkways lie beyond the shoulders.
- Every lane (``Lane``) stores its centerline in its own travel direction, so routes are just lists of lane ids.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from shapely.geometry import Polygon
from shapely.ops import unary_union

from dima_core.data.synth.geometry import arc_points, offset, resample

CL_SPACING = 0.5  # reference-line spacing used for markings and lanes
WALKWAY_WIDTH = 2.5


@dataclass
class Road:
    """One two-way road between junctions / ends."""

    id: int
    cl: np.ndarray  # (N, 2) reference centerline, 0.5 m spacing
    lanes_fwd: int
    lanes_bwd: int
    lane_width: float
    shoulder: float
    start_junction: int | None = None
    end_junction: int | None = None
    dead_end: bool = False  # the end (not the start) of this road is a dead end

    @property
    def left_edge_offset(self) -> float:
        return self.lanes_bwd * self.lane_width + self.shoulder

    @property
    def right_edge_offset(self) -> float:
        return -(self.lanes_fwd * self.lane_width + self.shoulder)

    @property
    def length(self) -> float:
        return float(np.linalg.norm(np.diff(self.cl, axis=0), axis=1).sum())

    def strip(self, lo: float, hi: float, s0: float = 0.0, s1: float | None = None) -> np.ndarray:
        """(2N, 2) polygon of the band between left offsets ``lo`` < ``hi`` over arc length [s0, s1]."""
        cl = self.sub(s0, s1)
        return np.concatenate([offset(cl, hi), offset(cl, lo)[::-1]])

    def sub(self, s0: float = 0.0, s1: float | None = None) -> np.ndarray:
        """(M, 2) reference line between arc lengths s0 and s1 (resampled at CL_SPACING)."""
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(self.cl, axis=0), axis=1))])
        s1 = s[-1] if s1 is None else min(s1, s[-1])
        s0 = max(0.0, s0)
        n = max(2, int(math.ceil((s1 - s0) / CL_SPACING)) + 1)
        t = np.linspace(s0, s1, n)
        return np.stack([np.interp(t, s, self.cl[:, 0]), np.interp(t, s, self.cl[:, 1])], axis=1)

    def polygon(self) -> Polygon:
        """Whole road surface (lanes + shoulders)."""
        return Polygon(self.strip(self.right_edge_offset, self.left_edge_offset))


@dataclass
class Lane:
    """One lane or lane connector, centerline in its own travel direction."""

    id: str
    centerline: np.ndarray  # (N, 2)
    left: np.ndarray  # (N, 2) left boundary (travel direction)
    right: np.ndarray  # (N, 2) right boundary
    road: int | None  # None for junction connectors
    direction: int  # +1 forward / -1 backward along the road's reference line (0 for connectors)
    index: int  # 0 = innermost
    junction: int | None = None
    turn: str = "straight"  # connectors: straight / left / right
    left_type: str = "NIL"  # divider type on the left boundary (nuScenes segment_type names)
    right_type: str = "NIL"
    incoming: list[str] = field(default_factory=list)
    outgoing: list[str] = field(default_factory=list)

    def polygon(self) -> Polygon:
        return Polygon(np.concatenate([self.left, self.right[::-1]]))


@dataclass
class Junction:
    id: int
    center: np.ndarray  # (2,)
    polygon: Polygon
    radius: float
    arms: list[tuple[int, bool]]  # (road id, road *starts* at this junction)


@dataclass
class Crosswalk:
    id: int
    road: int
    s: float  # arc length of its centre on the road's reference line
    polygon: np.ndarray  # (4, 2)
    walk_path: np.ndarray  # (2, 2) from the right walkway to the left walkway (w.r.t. the road reference)
    width: float = 4.0


@dataclass
class StopLine:
    id: int
    road: int
    direction: int  # which lanes it stops (+1 forward, -1 backward)
    s: float  # arc length of the line on the reference line
    polygon: np.ndarray  # (4, 2)
    kind: str  # nuScenes stop_line_type: PED_CROSSING or STOP_SIGN
    crosswalk: int | None = None


@dataclass
class StaticBox:
    """A building or wall: scenery only (never annotated)."""

    x: float
    y: float
    yaw: float
    length: float
    width: float
    height: float
    color: tuple[int, int, int]  # BGR


class RoadNetwork:
    """All road geometry of one scene plus lookup helpers."""

    def __init__(self) -> None:
        self.roads: list[Road] = []
        self.junctions: list[Junction] = []
        self.lanes: dict[str, Lane] = {}
        self.crosswalks: list[Crosswalk] = []
        self.stop_lines: list[StopLine] = []
        self.buildings: list[StaticBox] = []

    # ---- construction -------------------------------------------------------------------------------------------
    def add_road(
        self,
        x: float,
        y: float,
        yaw: float,
        pieces: list[tuple[float, float]],
        lanes_fwd: int = 1,
        lanes_bwd: int = 1,
        lane_width: float = 3.5,
        shoulder: float = 2.5,
        dead_end: bool = False,
    ) -> Road:
        """Append a road starting at pose (x, y, yaw) built from ``pieces`` = [(length m, curvature 1/m), ...]."""
        pts = [np.array([[x, y]])]
        px, py, ph = x, y, yaw
        for length, curvature in pieces:
            arc = arc_points(px, py, ph, curvature, length, spacing=CL_SPACING)
            pts.append(arc[1:, :2])
            px, py, ph = arc[-1]
        cl = resample(np.concatenate(pts), CL_SPACING)
        road = Road(len(self.roads), cl, lanes_fwd, lanes_bwd, lane_width, shoulder, dead_end=dead_end)
        self.roads.append(road)
        return road

    def add_junction(
        self,
        center: tuple[float, float],
        heading: float,
        arms: list[tuple[float, float, list[tuple[float, float]], int, int, bool]],
        lane_width: float = 3.5,
        shoulder: float = 2.5,
    ) -> Junction:
        """A junction at ``center`` with roads leaving it. ``arms`` = [(angle relative to ``heading`` (rad), straight
        length before the pieces, extra pieces, lanes_fwd, lanes_bwd, dead_end)]; every arm road *starts* at the
        junction and points away from it."""
        half = max(max(lf, lb) * lane_width + shoulder for _, _, _, lf, lb, _ in arms)
        radius = half + WALKWAY_WIDTH + 1.0
        jid = len(self.junctions)
        corners = []
        arm_refs = []
        for angle, straight, pieces, lf, lb, dead in arms:
            a = heading + angle
            sx, sy = center[0] + radius * math.cos(a), center[1] + radius * math.sin(a)
            road = self.add_road(sx, sy, a, [(straight, 0.0)] + list(pieces), lf, lb, lane_width, shoulder, dead)
            road.start_junction = jid
            arm_refs.append((road.id, True))
            cl0 = road.cl[:2]
            corners.append(offset(cl0, road.left_edge_offset)[0])
            corners.append(offset(cl0, road.right_edge_offset)[0])
        poly = Polygon(np.array(corners)).convex_hull
        # The hull of the arm mouths also covers the centre; make sure it reaches the centre for T junctions.
        junction = Junction(jid, np.array(center, dtype=float), poly, radius, arm_refs)
        self.junctions.append(junction)
        return junction

    def add_crosswalk(self, road_id: int, s: float, width: float = 4.0, stop_lines: bool = True) -> Crosswalk:
        """A zebra crossing across the whole road at arc length ``s`` (+ stop lines 1.5 m before it both ways)."""
        road = self.roads[road_id]
        poly = road.strip(road.right_edge_offset, road.left_edge_offset, s - width / 2, s + width / 2)
        quad = np.array([poly[0], poly[len(poly) // 2 - 1], poly[len(poly) // 2], poly[-1]])
        cl = road.sub(s - 0.5, s + 0.5)
        right = offset(cl, road.right_edge_offset - WALKWAY_WIDTH / 2)[len(cl) // 2]
        left = offset(cl, road.left_edge_offset + WALKWAY_WIDTH / 2)[len(cl) // 2]
        cw = Crosswalk(len(self.crosswalks), road_id, s, quad, np.stack([right, left]), width)
        self.crosswalks.append(cw)
        if stop_lines:
            if road.lanes_fwd:
                self.add_stop_line(road_id, +1, s - width / 2 - 1.5, "PED_CROSSING", cw.id)
            if road.lanes_bwd:
                self.add_stop_line(road_id, -1, s + width / 2 + 1.5, "PED_CROSSING", cw.id)
        return cw

    def add_stop_line(
        self, road_id: int, direction: int, s: float, kind: str, crosswalk: int | None = None
    ) -> StopLine:
        """A 0.5 m deep stop line across the lanes of one direction at arc length ``s``."""
        road = self.roads[road_id]
        lo, hi = (-road.lanes_fwd * road.lane_width, 0.0) if direction > 0 else (0.0, road.lanes_bwd * road.lane_width)
        poly = road.strip(lo, hi, s - 0.25, s + 0.25)
        quad = np.array([poly[0], poly[len(poly) // 2 - 1], poly[len(poly) // 2], poly[-1]])
        sl = StopLine(len(self.stop_lines), road_id, direction, s, quad, kind, crosswalk)
        self.stop_lines.append(sl)
        return sl

    def finalize(self) -> None:
        """Build lanes of every road and the connectors of every junction (call once, after adding roads)."""
        for road in self.roads:
            self._build_road_lanes(road)
        for junction in self.junctions:
            self._build_connectors(junction)

    def _build_road_lanes(self, road: Road) -> None:
        w = road.lane_width
        cl = resample(road.cl, 2.0)  # 2 m lane geometry: accurate for radii >= 30 m, keeps the map JSON small
        both = road.lanes_fwd > 0 and road.lanes_bwd > 0
        for i in range(road.lanes_fwd):
            left_type = ("DOUBLE_SOLID_YELLOW" if both else "SINGLE_SOLID_WHITE") if i == 0 else "DOUBLE_DASHED_WHITE"
            right_type = "SINGLE_SOLID_WHITE" if i == road.lanes_fwd - 1 else "DOUBLE_DASHED_WHITE"
            lane = Lane(
                f"r{road.id}_f{i}",
                offset(cl, -(i + 0.5) * w),
                offset(cl, -i * w),
                offset(cl, -(i + 1) * w),
                road.id,
                +1,
                i,
                left_type=left_type,
                right_type=right_type,
            )
            self.lanes[lane.id] = lane
        for j in range(road.lanes_bwd):
            left_type = ("DOUBLE_SOLID_YELLOW" if both else "SINGLE_SOLID_WHITE") if j == 0 else "DOUBLE_DASHED_WHITE"
            right_type = "SINGLE_SOLID_WHITE" if j == road.lanes_bwd - 1 else "DOUBLE_DASHED_WHITE"
            lane = Lane(
                f"r{road.id}_b{j}",
                offset(cl, (j + 0.5) * w)[::-1].copy(),
                offset(cl, j * w)[::-1].copy(),
                offset(cl, (j + 1) * w)[::-1].copy(),
                road.id,
                -1,
                j,
                left_type=left_type,
                right_type=right_type,
            )
            self.lanes[lane.id] = lane
        # Lanes of one road in one direction are siblings; lane changes are not encoded as connectivity.

    def _build_connectors(self, junction: Junction) -> None:
        # Incoming lanes end at the junction (backward lanes of arms that start here), outgoing lanes start there.
        arms = []
        for road_id, starts_here in junction.arms:
            road = self.roads[road_id]
            into = [
                self.lanes[f"r{road_id}_{'b' if starts_here else 'f'}{k}"]
                for k in range(road.lanes_bwd if starts_here else road.lanes_fwd)
            ]
            out = [
                self.lanes[f"r{road_id}_{'f' if starts_here else 'b'}{k}"]
                for k in range(road.lanes_fwd if starts_here else road.lanes_bwd)
            ]
            h_out = math.atan2(road.cl[1, 1] - road.cl[0, 1], road.cl[1, 0] - road.cl[0, 0])
            if not starts_here:
                h_out = math.atan2(road.cl[-2, 1] - road.cl[-1, 1], road.cl[-2, 0] - road.cl[-1, 0])
            arms.append((into, out, h_out))
        for ai, (into, _, h_in_arm) in enumerate(arms):
            for ao, (_, out, h_out_arm) in enumerate(arms):
                if ai == ao or not into or not out:
                    continue
                # Travel heading entering = opposite of the arm's outward heading; turn = change of heading.
                dh = (h_out_arm - (h_in_arm + math.pi) + math.pi) % (2 * math.pi) - math.pi
                turn = "straight" if abs(dh) < math.radians(35) else ("left" if dh > 0 else "right")
                if turn == "straight":
                    pairs = [(k, min(k, len(out) - 1)) for k in range(len(into))]
                elif turn == "left":
                    pairs = [(0, 0)]
                else:
                    pairs = [(len(into) - 1, len(out) - 1)]
                for ki, ko in pairs:
                    a, b = into[ki], out[ko]
                    cl = _bezier_connector(a.centerline, b.centerline)
                    w = self.roads[a.road].lane_width
                    lane = Lane(
                        f"j{junction.id}_{a.id}_{b.id}",
                        cl,
                        offset(cl, w / 2),
                        offset(cl, -w / 2),
                        None,
                        0,
                        0,
                        junction=junction.id,
                        turn=turn,
                    )
                    lane.incoming.append(a.id)
                    lane.outgoing.append(b.id)
                    a.outgoing.append(lane.id)
                    b.incoming.append(lane.id)
                    self.lanes[lane.id] = lane

    # ---- queries ------------------------------------------------------------------------------------------------
    def lane(self, road_id: int, direction: int, index: int = 0) -> Lane:
        return self.lanes[f"r{road_id}_{'f' if direction > 0 else 'b'}{index}"]

    def connector(self, from_lane: str, turn: str) -> Lane | None:
        """The connector leaving ``from_lane`` with the given turn (None if there is none)."""
        for lid in self.lanes[from_lane].outgoing:
            if self.lanes[lid].turn == turn:
                return self.lanes[lid]
        return None

    def route_xy(self, lane_ids: list[str]) -> np.ndarray:
        """(N, 2) concatenated centerline of consecutive lanes."""
        parts = [self.lanes[lane_ids[0]].centerline]
        for lid in lane_ids[1:]:
            c = self.lanes[lid].centerline
            parts.append(c[1:] if np.linalg.norm(c[0] - parts[-1][-1]) < 0.05 else c)
        return np.concatenate(parts)

    def surface(self) -> Polygon:
        """Union of all drivable surface (roads and junctions). A tiny mitred close (grow then shrink by 5 cm)
        removes the zero-width slivers and spikes a plain union leaves where junction and road edges touch."""
        union = unary_union([r.polygon() for r in self.roads] + [j.polygon for j in self.junctions])
        return union.buffer(0.05, join_style=2).buffer(-0.05, join_style=2).simplify(0.005)

    def junction_spans(self, route_xy: np.ndarray, spacing: float = 0.5) -> list[tuple[int, float, float]]:
        """Junction passages of a route: (junction id, s_in, s_out) along the resampled route."""
        pts = resample(route_xy, spacing)
        s = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))])
        spans = []
        for j in self.junctions:
            inside = np.linalg.norm(pts - j.center, axis=1) < j.radius
            if inside.any():
                idx = np.flatnonzero(inside)
                spans.append((j.id, float(s[idx[0]]), float(s[idx[-1]])))
        return spans

    def bounds(self) -> tuple[float, float, float, float]:
        minx, miny, maxx, maxy = self.surface().buffer(WALKWAY_WIDTH + 30.0).bounds
        return minx, miny, maxx, maxy

    def walkways(self) -> list[np.ndarray]:
        """Sidewalk polygons (K_i, 2) along both sides of every road."""
        out = []
        for road in self.roads:
            out.append(road.strip(road.left_edge_offset, road.left_edge_offset + WALKWAY_WIDTH))
            out.append(road.strip(road.right_edge_offset - WALKWAY_WIDTH, road.right_edge_offset))
        return out

    def divider_lines(self) -> list[tuple[str, np.ndarray]]:
        """Map divider lines: ("road_divider" | "lane_divider", (N, 2) polyline along the reference direction)."""
        out = []
        for road in self.roads:
            cl = resample(road.cl, 2.0)
            if road.lanes_fwd and road.lanes_bwd:
                out.append(("road_divider", cl.copy()))
            for i in range(1, road.lanes_fwd):
                out.append(("lane_divider", offset(cl, -i * road.lane_width)))
            for j in range(1, road.lanes_bwd):
                out.append(("lane_divider", offset(cl, j * road.lane_width)))
        return out


def _bezier_connector(a: np.ndarray, b: np.ndarray, n: int = 24) -> np.ndarray:
    """(n, 2) cubic Bezier from the end of lane centerline ``a`` to the start of ``b``, tangent to both."""
    p0, p3 = a[-1], b[0]
    d0 = a[-1] - a[-2]
    d0 /= np.linalg.norm(d0)
    d3 = b[1] - b[0]
    d3 /= np.linalg.norm(d3)
    dist = float(np.linalg.norm(p3 - p0))
    cos = float(np.clip(d0 @ d3, -1.0, 1.0))
    k = dist / 3.0 if cos > 0.9 else dist * 0.55  # ~circular for 90 degree turns
    p1, p2 = p0 + d0 * k, p3 - d3 * k
    t = np.linspace(0.0, 1.0, n)[:, None]
    return (1 - t) ** 3 * p0 + 3 * (1 - t) ** 2 * t * p1 + 3 * (1 - t) * t**2 * p2 + t**3 * p3


def place_buildings(net: RoadNetwork, rng: np.random.Generator, per_100m: float) -> None:
    """Scatter buildings along road sides beyond the walkways, never on any road or walkway surface."""
    keepout = unary_union([net.surface()] + [Polygon(w) for w in net.walkways()]).buffer(1.0)
    palette = [(170, 180, 190), (120, 130, 150), (90, 110, 160), (200, 200, 205), (80, 90, 100), (140, 160, 180)]
    for road in net.roads:
        n = int(road.length / 100.0 * per_100m)
        for side in (-1, 1):
            for _ in range(n):
                s = float(rng.uniform(0, road.length))
                depth = float(rng.uniform(8, 20))
                length = float(rng.uniform(10, 30))
                edge = road.left_edge_offset if side > 0 else road.right_edge_offset
                off = edge + side * (WALKWAY_WIDTH + float(rng.uniform(2, 8)) + depth / 2)
                cl = road.sub(max(0.0, s - 1.0), s + 1.0)
                if len(cl) < 2:
                    continue
                p = offset(cl, off)[len(cl) // 2]
                d = cl[-1] - cl[0]
                yaw = math.atan2(d[1], d[0])
                box = StaticBox(
                    float(p[0]),
                    float(p[1]),
                    yaw,
                    length,
                    depth,
                    float(rng.uniform(5, 25)),
                    palette[int(rng.integers(len(palette)))],
                )
                c, s_ = math.cos(yaw), math.sin(yaw)
                fp = Polygon(
                    [
                        (box.x + c * dx - s_ * dy, box.y + s_ * dx + c * dy)
                        for dx, dy in (
                            (length / 2, depth / 2),
                            (-length / 2, depth / 2),
                            (-length / 2, -depth / 2),
                            (length / 2, -depth / 2),
                        )
                    ]
                )
                if fp.intersects(keepout) or any(fp.intersects(_footprint(b)) for b in net.buildings):
                    continue
                net.buildings.append(box)
    # Dead ends get a wall across the road end so the camera sees the road stop.
    for road in net.roads:
        if road.dead_end:
            end = road.cl[-1]
            d = road.cl[-1] - road.cl[-2]
            yaw = math.atan2(d[1], d[0])
            width = road.left_edge_offset - road.right_edge_offset + 2 * WALKWAY_WIDTH + 4
            centre_off = (road.left_edge_offset + road.right_edge_offset) / 2
            p = (
                end
                + np.array([math.cos(yaw), math.sin(yaw)]) * 3.0
                + np.array([-math.sin(yaw), math.cos(yaw)]) * centre_off
            )
            net.buildings.append(StaticBox(float(p[0]), float(p[1]), yaw, 1.0, width, 2.5, (60, 70, 150)))


def _footprint(b: StaticBox) -> Polygon:
    c, s = math.cos(b.yaw), math.sin(b.yaw)
    return Polygon(
        [
            (b.x + c * dx - s * dy, b.y + s * dx + c * dy)
            for dx, dy in (
                (b.length / 2, b.width / 2),
                (-b.length / 2, b.width / 2),
                (-b.length / 2, -b.width / 2),
                (b.length / 2, -b.width / 2),
            )
        ]
    )
