"""Write road networks as a nuScenes map expansion (``maps/expansion/<location>.json``, version 1.3) plus the
semantic-prior PNG that ``NuScenes`` opens for every ``map`` record.

Several scenes share one location: each scene's network lives in its own disjoint region of the location's
canvas, and :class:`MapBuilder` accumulates all of them before writing. Records carry exactly the fields the
devkit's ``NuScenesMap`` reads (layers, shortcuts, ``arcline_path_3``, ``connectivity``, ``lane_connector``).
"""

from __future__ import annotations

import json
import math
import os
from itertools import pairwise

import cv2
import numpy as np
from shapely.geometry import MultiPolygon, Polygon

from dima_core.data.synth.geometry import resample, token
from dima_core.data.synth.roads import RoadNetwork

MAP_VERSION = "1.3"


def _r(v: float) -> float:
    """Coordinates are stored at millimetre precision (keeps JSON small and byte-stable)."""
    return round(float(v), 3)


class MapBuilder:
    """Accumulates the map layers of one nuScenes location."""

    LAYERS = (
        "polygon",
        "line",
        "node",
        "drivable_area",
        "road_segment",
        "road_block",
        "lane",
        "ped_crossing",
        "walkway",
        "stop_line",
        "carpark_area",
        "road_divider",
        "lane_divider",
        "traffic_light",
        "lane_connector",
    )

    def __init__(self, location: str):
        self.location = location
        self.layers: dict[str, list[dict]] = {name: [] for name in self.LAYERS}
        self.arcline_path_3: dict[str, list[dict]] = {}
        self.connectivity: dict[str, dict[str, list[str]]] = {}
        self._nodes: dict[tuple[int, int], str] = {}
        self.max_xy = np.zeros(2)
        # Per scene: lane id -> map token, for tests and the data layer's geometry checks.
        self.lane_tokens: dict[str, dict[str, str]] = {}

    # ---- geometric primitives -----------------------------------------------------------------------------------
    def node(self, x: float, y: float) -> str:
        """Token of the node at (x, y); coincident points (to the millimetre) share one node."""
        key = (int(round(x * 1000)), int(round(y * 1000)))
        tok = self._nodes.get(key)
        if tok is None:
            tok = token("node", self.location, *key)
            self._nodes[key] = tok
            self.layers["node"].append({"token": tok, "x": key[0] / 1000.0, "y": key[1] / 1000.0})
            self.max_xy = np.maximum(self.max_xy, [x, y])
        return tok

    def nodes(self, pts: np.ndarray) -> list[str]:
        out: list[str] = []
        for x, y in pts:
            t = self.node(x, y)
            if not out or out[-1] != t:
                out.append(t)
        if len(out) > 1 and out[0] == out[-1]:
            out.pop()  # polygons are stored open
        return out

    def polygon(self, key: str, pts: np.ndarray | Polygon) -> str:
        if isinstance(pts, Polygon):
            pts = np.asarray(pts.exterior.coords)[:-1]
        tok = token("polygon", self.location, key)
        self.layers["polygon"].append({"token": tok, "exterior_node_tokens": self.nodes(pts), "holes": []})
        return tok

    def line(self, key: str, pts: np.ndarray) -> str:
        tok = token("line", self.location, key)
        self.layers["line"].append({"token": tok, "node_tokens": self.nodes(pts)})
        return tok

    # ---- one scene ----------------------------------------------------------------------------------------------
    def add_network(self, net: RoadNetwork, scene_key: str) -> dict[str, str]:
        """Add one scene's network; returns lane id -> lane (or lane_connector) token."""
        k = f"{scene_key}"
        surface = net.surface()
        da_token = token("drivable_area", self.location, k)
        parts = list(surface.geoms) if isinstance(surface, MultiPolygon) else [surface]
        da_polys = [self.polygon(f"{k}/da{i}", p.simplify(0.01)) for i, p in enumerate(parts)]
        self.layers["drivable_area"].append({"token": da_token, "polygon_tokens": da_polys})

        seg_tokens: dict[int, str] = {}
        for road in net.roads:
            st = token("road_segment", self.location, k, road.id)
            seg_tokens[road.id] = st
            poly = Polygon(road.strip(road.right_edge_offset, road.left_edge_offset)).simplify(0.01)
            self.layers["road_segment"].append(
                {
                    "token": st,
                    "polygon_token": self.polygon(f"{k}/seg{road.id}", poly),
                    "is_intersection": False,
                    "drivable_area_token": da_token,
                }
            )
            for direction, (lo, hi) in ((+1, (road.right_edge_offset, 0.0)), (-1, (0.0, road.left_edge_offset))):
                n_lanes = road.lanes_fwd if direction > 0 else road.lanes_bwd
                if n_lanes == 0:
                    continue
                pts = road.strip(lo, hi)
                half = len(pts) // 2
                # strip() lists the high-offset side forward then the low side backward: its first/last points
                # are at s=0, the middle pair at the road end.
                if direction > 0:
                    from_edge = np.array([pts[0], pts[-1]])
                    to_edge = np.array([pts[half - 1], pts[half]])
                else:
                    from_edge = np.array([pts[half - 1], pts[half]])
                    to_edge = np.array([pts[0], pts[-1]])
                self.layers["road_block"].append(
                    {
                        "token": token("road_block", self.location, k, road.id, direction),
                        "polygon_token": self.polygon(f"{k}/blk{road.id}/{direction}", Polygon(pts).simplify(0.01)),
                        "from_edge_line_token": self.line(f"{k}/blk{road.id}/{direction}/from", from_edge),
                        "to_edge_line_token": self.line(f"{k}/blk{road.id}/{direction}/to", to_edge),
                        "road_segment_token": st,
                    }
                )
        for j in net.junctions:
            st = token("road_segment", self.location, k, "junction", j.id)
            self.layers["road_segment"].append(
                {
                    "token": st,
                    "polygon_token": self.polygon(f"{k}/junction{j.id}", j.polygon),
                    "is_intersection": True,
                    "drivable_area_token": da_token,
                }
            )

        lane_tokens = {lid: token("lane", self.location, k, lid) for lid in net.lanes}
        for lid, lane in net.lanes.items():
            lt = lane_tokens[lid]
            if lane.junction is None:
                poly = np.concatenate([lane.left, lane.right[::-1]])
                self.layers["lane"].append(
                    {
                        "token": lt,
                        "polygon_token": self.polygon(f"{k}/lane/{lid}", poly),
                        "lane_type": "CAR",
                        "from_edge_line_token": self.line(
                            f"{k}/lane/{lid}/from", np.array([lane.left[0], lane.right[0]])
                        ),
                        "to_edge_line_token": self.line(
                            f"{k}/lane/{lid}/to", np.array([lane.left[-1], lane.right[-1]])
                        ),
                        "left_lane_divider_segments": [
                            {"node_token": n, "segment_type": lane.left_type} for n in self.nodes(lane.left)
                        ],
                        "right_lane_divider_segments": [
                            {"node_token": n, "segment_type": lane.right_type} for n in self.nodes(lane.right)
                        ],
                    }
                )
            else:
                poly = np.concatenate([lane.left, lane.right[::-1]])
                self.layers["lane_connector"].append(
                    {
                        "token": lt,
                        "polygon_token": self.polygon(f"{k}/connector/{lid}", Polygon(poly).buffer(0).simplify(0.01)),
                    }
                )
            self.arcline_path_3[lt] = _arclines(lane.centerline)
            self.connectivity[lt] = {
                "incoming": [lane_tokens[i] for i in lane.incoming],
                "outgoing": [lane_tokens[o] for o in lane.outgoing],
            }

        cw_tokens = {}
        for cw in net.crosswalks:
            ct = token("ped_crossing", self.location, k, cw.id)
            cw_tokens[cw.id] = ct
            self.layers["ped_crossing"].append(
                {
                    "token": ct,
                    "polygon_token": self.polygon(f"{k}/cw{cw.id}", cw.polygon),
                    "road_segment_token": seg_tokens[cw.road],
                }
            )
        for sl in net.stop_lines:
            self.layers["stop_line"].append(
                {
                    "token": token("stop_line", self.location, k, sl.id),
                    "polygon_token": self.polygon(f"{k}/sl{sl.id}", sl.polygon),
                    "stop_line_type": sl.kind,
                    "ped_crossing_tokens": [cw_tokens[sl.crosswalk]] if sl.crosswalk is not None else [],
                    "traffic_light_tokens": [],
                    "road_block_token": token("road_block", self.location, k, sl.road, sl.direction),
                }
            )
        for i, ww in enumerate(net.walkways()):
            self.layers["walkway"].append(
                {
                    "token": token("walkway", self.location, k, i),
                    "polygon_token": self.polygon(f"{k}/ww{i}", Polygon(ww).simplify(0.01)),
                }
            )
        for i, (kind, pts) in enumerate(net.divider_lines()):
            lt = self.line(f"{k}/div{i}", pts)
            if kind == "road_divider":
                road_id = _closest_road(net, pts)
                self.layers["road_divider"].append(
                    {
                        "token": token("road_divider", self.location, k, i),
                        "line_token": lt,
                        "road_segment_token": seg_tokens[road_id],
                    }
                )
            else:
                self.layers["lane_divider"].append(
                    {
                        "token": token("lane_divider", self.location, k, i),
                        "line_token": lt,
                        "lane_divider_segments": [
                            {"node_token": n, "segment_type": "DOUBLE_DASHED_WHITE"} for n in self.nodes(pts)
                        ],
                    }
                )
        self.lane_tokens[scene_key] = lane_tokens
        return lane_tokens

    # ---- output -------------------------------------------------------------------------------------------------
    def canvas_edge(self) -> tuple[float, float]:
        return float(math.ceil(self.max_xy[0] + 50.0)), float(math.ceil(self.max_xy[1] + 50.0))

    def write(self, dataroot: str) -> str:
        """Write ``maps/expansion/<location>.json``; returns its path."""
        obj: dict = {"version": MAP_VERSION, "canvas_edge": list(self.canvas_edge())}
        obj.update(self.layers)
        obj["arcline_path_3"] = self.arcline_path_3
        obj["connectivity"] = self.connectivity
        path = os.path.join(dataroot, "maps", "expansion", f"{self.location}.json")
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            json.dump(obj, f, separators=(",", ":"))
        return path

    def write_basemap(self, path: str, resolution: float, max_pixels: int) -> float:
        """Rasterise drivable area + walkways into the semantic-prior PNG the devkit's ``MapMask`` opens (255 =
        foreground, origin bottom-left, ``resolution`` m/px). Returns the resolution used: it is coarsened when the
        canvas would exceed ``max_pixels`` (MapMask itself defaults to 0.1 m/px; pass ``map_resolution`` to match)."""
        w_m, h_m = self.canvas_edge()
        while (w_m / resolution) * (h_m / resolution) > max_pixels:
            resolution *= 2.0
        w, h = int(math.ceil(w_m / resolution)), int(math.ceil(h_m / resolution))
        img = np.zeros((h, w), np.uint8)
        node_xy = {n["token"]: (n["x"], n["y"]) for n in self.layers["node"]}
        polys = {p["token"]: p for p in self.layers["polygon"]}
        tokens = [t for rec in self.layers["drivable_area"] for t in rec["polygon_tokens"]]
        tokens += [rec["polygon_token"] for rec in self.layers["walkway"]]
        contours = []
        for t in tokens:
            xy = np.array([node_xy[n] for n in polys[t]["exterior_node_tokens"]])
            px = np.stack([xy[:, 0] / resolution, h - xy[:, 1] / resolution], axis=1)
            contours.append(np.round(px).astype(np.int32))
        cv2.fillPoly(img, contours, 255)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        cv2.imwrite(path, img, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        return resolution


def _arclines(centerline: np.ndarray) -> list[dict]:
    """Arcline paths of a lane: one straight ("LSL" with zero-length arcs) piece per 2 m of centerline."""
    pts = resample(centerline, 2.0)
    out = []
    for a, b in pairwise(pts):
        yaw = math.atan2(b[1] - a[1], b[0] - a[0])
        length = float(np.linalg.norm(b - a))
        out.append(
            {
                "start_pose": [_r(a[0]), _r(a[1]), round(yaw, 6)],
                "end_pose": [_r(b[0]), _r(b[1]), round(yaw, 6)],
                "shape": "LSL",
                "radius": 999.0,
                "segment_length": [0.0, round(length, 4), 0.0],
            }
        )
    return out


def _closest_road(net: RoadNetwork, pts: np.ndarray) -> int:
    mid = pts[len(pts) // 2]
    return int(np.argmin([np.min(np.linalg.norm(r.cl - mid, axis=1)) for r in net.roads]))
