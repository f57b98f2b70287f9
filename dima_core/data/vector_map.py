"""GT vector map of a keyframe in its ego frame, MapTR / VAD style, through ``NuScenesMap``.

Three classes (constants.MAP_CLASSES order):

- ``divider``: ``road_divider`` + ``lane_divider`` lines;
- ``ped_crossing``: rings of the union of ``ped_crossing`` polygons (overlapping crossings merge, as in MapTR);
- ``boundary``: rings (exterior and holes, as MapTR's ``get_contour_line``) of the union of ``road_segment`` and
  ``lane`` polygons.

Per keyframe: query the map around the ego, move the geometry into the ego frame, clip to the perception-range box
(x forward in PERCEPTION_X_RANGE, y left in PERCEPTION_Y_RANGE), merge touching pieces (``linemerge``: a ring
clipped by the box may come back as two pieces joined at the ring's start point), split multi-part results into
separate vectors, and resample each to P equidistant points with ``LineString.interpolate``.

Two deliberate differences from MapTR's ``VectorizedLocalMap``, both about geometry rather than convention:

- MapTR clips polygons to the patch *before* taking their rings, so the patch edge becomes part of the ring and it
  shrinks the clip box by 0.2 m to drop those fake edges. We clip polygons to a box ``margin_m`` larger than the
  range, take the rings, then clip the rings to the exact range: the fake edges lie outside and vanish, and a real
  boundary that runs within 0.2 m of the range edge survives.
- Geometry is extracted once per map with the devkit (``extract_line`` / ``extract_polygon``) and indexed with a
  shapely STRtree, instead of scanning every record of the layer per keyframe.

Ring orientation follows MapTR: exteriors clockwise, holes counter-clockwise (drivable area / crossing on the right
of the direction of travel along the vector).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import shapely
from nuscenes.map_expansion.map_api import NuScenesMap
from shapely import ops
from shapely.geometry import LineString, MultiLineString, MultiPolygon, Polygon, box
from shapely.geometry.base import BaseGeometry
from shapely.geometry.polygon import orient

from dima_core.constants import MAP_CLASSES, MAP_POINTS_PER_VECTOR, PERCEPTION_X_RANGE, PERCEPTION_Y_RANGE
from dima_core.data.geometry import invert, transform_points_xy
from dima_core.data.sample import VectorMap

DIVIDER_LAYERS: tuple[str, ...] = ("road_divider", "lane_divider")
PED_CROSSING_LAYERS: tuple[str, ...] = ("ped_crossing",)
BOUNDARY_LAYERS: tuple[str, ...] = ("road_segment", "lane")

_DIVIDER = MAP_CLASSES.index("divider")
_PED_CROSSING = MAP_CLASSES.index("ped_crossing")
_BOUNDARY = MAP_CLASSES.index("boundary")


def resample_polyline(line: LineString, num_points: int) -> np.ndarray:
    """(num_points, 2) points equally spaced along ``line`` by arc length, first and last included."""
    distances = np.linspace(0.0, line.length, num_points)
    return np.array([line.interpolate(d).coords[0][:2] for d in distances], np.float32)


def split_lines(geometry: BaseGeometry) -> list[LineString]:
    """The line parts of a clip result: merged where they touch end to end, points and empties dropped."""
    if geometry.is_empty:
        return []
    if isinstance(geometry, LineString):
        return [geometry]
    lines: list[LineString] = []
    for part in getattr(geometry, "geoms", []):
        lines.extend(split_lines(part))
    if len(lines) > 1:
        merged = ops.linemerge(MultiLineString(lines))
        lines = [merged] if isinstance(merged, LineString) else list(merged.geoms)
    return lines


def polygon_rings(geometry: BaseGeometry) -> list[LineString]:
    """Rings of every polygon in ``geometry``: exteriors clockwise, holes counter-clockwise (MapTR's convention)."""
    if isinstance(geometry, Polygon):
        polygons = [geometry]
    elif isinstance(geometry, MultiPolygon) or hasattr(geometry, "geoms"):
        polygons = [g for g in geometry.geoms if isinstance(g, Polygon)]
    else:
        polygons = []
    rings: list[LineString] = []
    for polygon in polygons:
        if polygon.is_empty:
            continue
        polygon = orient(polygon, sign=-1.0)  # exterior clockwise, interiors counter-clockwise
        rings.append(LineString(polygon.exterior.coords))
        rings.extend(LineString(interior.coords) for interior in polygon.interiors)
    return rings


def range_box(
    x_range: Sequence[float] = PERCEPTION_X_RANGE, y_range: Sequence[float] = PERCEPTION_Y_RANGE, margin: float = 0.0
) -> Polygon:
    """The ego-frame clip box (x forward, y left), optionally grown by ``margin`` metres on every side."""
    return box(x_range[0] - margin, y_range[0] - margin, x_range[1] + margin, y_range[1] + margin)


def _to_frame(geometry: BaseGeometry, transform: np.ndarray) -> BaseGeometry:
    """Apply a (4, 4) transform to a 2-D shapely geometry (points taken on the ground plane z = 0)."""
    return shapely.transform(geometry, lambda xy: transform_points_xy(transform, xy))


@dataclass
class _Layer:
    geometries: list[BaseGeometry]
    tree: shapely.STRtree

    @staticmethod
    def build(geometries: Iterable[BaseGeometry]) -> _Layer:
        geoms = [g for g in geometries if g is not None and not g.is_empty]
        return _Layer(geoms, shapely.STRtree(geoms))

    def query(self, region: BaseGeometry) -> list[BaseGeometry]:
        if not self.geometries:
            return []
        return [self.geometries[i] for i in self.tree.query(region)]


class MapVectorizer:
    """Extracts ego-frame vector maps from the geometry of one location (map coordinates, metres).

    Build it from a devkit map with :meth:`from_nusc_map`; the constructor takes plain shapely geometry so the
    clipping logic can be checked against known shapes.

    Args:
        dividers: divider lines (road_divider + lane_divider).
        ped_crossings: pedestrian-crossing polygons.
        drivable: road_segment + lane polygons, whose union's rings are the road boundaries.
        num_points: points per resampled vector (P).
        x_range, y_range: perception range in the ego frame (x forward, y left), metres.
        margin_m: extra margin around the range for polygon clipping (see the module docstring).
    """

    def __init__(
        self,
        dividers: Iterable[LineString],
        ped_crossings: Iterable[Polygon],
        drivable: Iterable[Polygon],
        num_points: int = MAP_POINTS_PER_VECTOR,
        x_range: Sequence[float] = PERCEPTION_X_RANGE,
        y_range: Sequence[float] = PERCEPTION_Y_RANGE,
        margin_m: float = 5.0,
    ):
        if num_points < 2:
            raise ValueError(f"num_points must be >= 2, got {num_points}")
        self.num_points = num_points
        self.clip_box = range_box(x_range, y_range)
        self.work_box = range_box(x_range, y_range, margin_m)
        self.dividers = _Layer.build(dividers)
        self.ped_crossings = _Layer.build(ped_crossings)
        self.drivable = _Layer.build(drivable)

    @classmethod
    def from_nusc_map(cls, nusc_map: NuScenesMap, **kwargs: Any) -> MapVectorizer:
        """Extract the three layers once through the devkit (``extract_line`` / ``extract_polygon``)."""
        return cls(
            dividers=cls._lines(nusc_map, DIVIDER_LAYERS),
            ped_crossings=cls._polygons(nusc_map, PED_CROSSING_LAYERS),
            drivable=cls._polygons(nusc_map, BOUNDARY_LAYERS),
            **kwargs,
        )

    @staticmethod
    def _lines(nusc_map: NuScenesMap, layers: Sequence[str]) -> list[LineString]:
        lines = []
        for layer in layers:
            for record in getattr(nusc_map, layer):
                line = nusc_map.extract_line(record["line_token"])
                if not line.is_empty and line.length > 0.0:
                    lines.append(line)
        return lines

    @staticmethod
    def _polygons(nusc_map: NuScenesMap, layers: Sequence[str]) -> list[Polygon]:
        polygons = []
        for layer in layers:
            for record in getattr(nusc_map, layer):
                polygon = nusc_map.extract_polygon(record["polygon_token"])
                if polygon.is_empty:
                    continue
                if not polygon.is_valid:
                    # A handful of real-map polygons self-touch; repairing keeps their area instead of dropping it.
                    polygon = shapely.make_valid(polygon)
                polygons.append(polygon)
        return polygons

    def __call__(self, ego_to_global: np.ndarray) -> VectorMap:
        """Vector map (M, P, 2) in the ego frame of ``ego_to_global`` (4, 4), labels index MAP_CLASSES."""
        global_to_ego = invert(ego_to_global)
        work_region = _to_frame(self.work_box, ego_to_global)  # the grown range box, in map coordinates

        polylines: list[np.ndarray] = []
        labels: list[int] = []

        def add(lines: Iterable[LineString], label: int) -> None:
            for line in lines:
                for part in split_lines(line.intersection(self.clip_box)):
                    if part.length > 0.0:
                        polylines.append(resample_polyline(part, self.num_points))
                        labels.append(label)

        add((_to_frame(line, global_to_ego) for line in self.dividers.query(work_region)), _DIVIDER)
        for layer, label in ((self.ped_crossings, _PED_CROSSING), (self.drivable, _BOUNDARY)):
            pieces = [g.intersection(work_region) for g in layer.query(work_region)]
            pieces = [p for p in pieces if not p.is_empty]
            if pieces:
                union = _to_frame(ops.unary_union(pieces), global_to_ego)
                add(polygon_rings(union), label)

        if not polylines:
            return VectorMap(np.zeros((0, self.num_points, 2), np.float32), np.zeros((0,), np.int64))
        return VectorMap(np.stack(polylines).astype(np.float32), np.asarray(labels, np.int64))


__all__ = [
    "BOUNDARY_LAYERS",
    "DIVIDER_LAYERS",
    "MapVectorizer",
    "PED_CROSSING_LAYERS",
    "polygon_rings",
    "range_box",
    "resample_polyline",
    "split_lines",
]
