"""The map expansion JSON holds the generator's road network: lanes, dividers, crossings and boundaries."""

from __future__ import annotations

import numpy as np
from shapely.geometry import LineString, Polygon
from shapely.ops import unary_union


def _maps(synth_written):
    from nuscenes.map_expansion.map_api import NuScenesMap

    return {
        s.location: NuScenesMap(dataroot=str(synth_written.dataroot), map_name=s.location)
        for s in synth_written.world.scenes
    }


def test_lanes_and_connectivity_match_generator(synth_written):
    from dima_core.data.synth import lane_token

    maps = _maps(synth_written)
    for scene in synth_written.world.scenes:
        nmap = maps[scene.location]
        net = scene.plan.net
        for lid, lane in net.lanes.items():
            tok = lane_token(scene.location, scene.name, lid)
            layer = "lane" if lane.junction is None else "lane_connector"
            rec = nmap.get(layer, tok)
            poly = nmap.extract_polygon(rec["polygon_token"])
            ours = lane.polygon()
            assert poly.symmetric_difference(ours).area < 0.02 * ours.area + 0.5
            centre = np.array(nmap.discretize_lanes([tok], 0.5)[tok])[:, :2]
            assert LineString(centre).hausdorff_distance(LineString(lane.centerline)) < 0.3
            assert nmap.get_outgoing_lane_ids(tok) == [lane_token(scene.location, scene.name, o) for o in lane.outgoing]
            if layer == "lane":
                left = np.array([[n["x"], n["y"]] for n in rec["left_lane_divider_segment_nodes"]])
                assert LineString(left).hausdorff_distance(LineString(lane.left)) < 0.05


def test_dividers_crossings_and_boundaries_match_generator(synth_written):
    maps = _maps(synth_written)
    for scene in synth_written.world.scenes:
        nmap = maps[scene.location]
        net = scene.plan.net
        box = net.surface().buffer(5).bounds
        recs = nmap.get_records_in_patch(
            box, ["road_divider", "lane_divider", "ped_crossing", "road_segment", "lane"], mode="intersect"
        )
        road_div = [nmap.extract_line(nmap.get("road_divider", t)["line_token"]) for t in recs["road_divider"]]
        lane_div = [nmap.extract_line(nmap.get("lane_divider", t)["line_token"]) for t in recs["lane_divider"]]
        ours = net.divider_lines()
        assert len(road_div) == sum(k == "road_divider" for k, _ in ours)
        assert len(lane_div) == sum(k == "lane_divider" for k, _ in ours)
        for kind, line in ours:
            pool = road_div if kind == "road_divider" else lane_div
            assert min(LineString(line).hausdorff_distance(m) for m in pool) < 0.05
        # Each road divider is the road's reference line (between the directions).
        for road in net.roads:
            assert min(LineString(road.cl).hausdorff_distance(m) for m in road_div) < 0.3
        crossings = [nmap.extract_polygon(nmap.get("ped_crossing", t)["polygon_token"]) for t in recs["ped_crossing"]]
        assert len(crossings) == len(net.crosswalks)
        for cw in net.crosswalks:
            assert max(Polygon(cw.polygon).intersection(c).area for c in crossings) > 0.95 * Polygon(cw.polygon).area
        # Road boundary as the data layer extracts it (exterior of the union of road segments and lanes) is the
        # generator's drivable surface outline.
        polys = [nmap.extract_polygon(nmap.get("road_segment", t)["polygon_token"]) for t in recs["road_segment"]]
        polys += [nmap.extract_polygon(nmap.get("lane", t)["polygon_token"]) for t in recs["lane"]]
        union = unary_union(polys)
        surface = net.surface()
        assert union.symmetric_difference(surface).area < 0.01 * surface.area
        assert union.geom_type == surface.geom_type == "Polygon"
        assert union.exterior.hausdorff_distance(surface.exterior) < 0.5


def test_regions_of_scenes_are_disjoint(synth_written):
    world = synth_written.world
    from dima_core.data.synth import SynthWorld
    from synth_fixtures import small_config

    many = SynthWorld.generate(
        small_config(scene_seconds=2.0, locations=["boston-seaport"]),
        1,
        3,
        ["cruise", "turn_right", "three_point_turn"],
    )
    areas = [s.plan.net.surface().buffer(30) for s in many.scenes]
    for i in range(len(areas)):
        assert min(areas[i].bounds) > 0  # positive map coordinates
        for j in range(i + 1, len(areas)):
            assert not areas[i].intersects(areas[j])
    assert world.scenes
