"""NuScenesReader on a generated synthetic world, checked against the devkit records recomputed independently
(pyquaternion + the raw ego_pose / sample_annotation records, and NuScenesMap layers for the map)."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
import shapely
from pyquaternion import Quaternion
from shapely.geometry import LineString, Point, box
from shapely.ops import unary_union

from dima_core.constants import (
    CAMERA_NAMES,
    COMMAND_LEFT,
    COMMAND_RIGHT,
    COMMAND_STRAIGHT,
    DETECTION_CLASSES,
    FUTURE_STEPS,
    MAP_CLASSES,
    MAP_POINTS_PER_VECTOR,
    PAST_STEPS,
    PERCEPTION_X_RANGE,
    PERCEPTION_Y_RANGE,
)

# Session fixtures (the generated world, readers, samples) live in test/data_fixtures.py; registering it as a
# plugin makes every data test module share one world instead of generating its own.


def ego_pose_record(nusc, sample_token: str) -> dict:
    sample = nusc.get("sample", sample_token)
    channel = "LIDAR_TOP" if "LIDAR_TOP" in sample["data"] else "CAM_FRONT"
    return nusc.get("ego_pose", nusc.get("sample_data", sample["data"][channel])["ego_pose_token"])


def to_ego(pose: dict, xyz) -> np.ndarray:
    """Global point -> ego frame of ``pose``, with pyquaternion only."""
    return Quaternion(pose["rotation"]).inverse.rotate(np.asarray(xyz, float) - np.asarray(pose["translation"]))


def to_global(pose: dict, xy) -> np.ndarray:
    return Quaternion(pose["rotation"]).rotate([xy[0], xy[1], 0.0]) + np.asarray(pose["translation"])


def to_ego_xy(pose: dict, xy: np.ndarray) -> np.ndarray:
    """Many ground points (N, 2) global -> ego frame x, y (vectorised form of to_ego)."""
    rot = Quaternion(pose["rotation"]).rotation_matrix
    pts = np.concatenate([xy, np.zeros((len(xy), 1))], axis=1) - np.asarray(pose["translation"])
    return (pts @ rot)[:, :2]


def to_global_xy(pose: dict, xy: np.ndarray) -> np.ndarray:
    rot = Quaternion(pose["rotation"]).rotation_matrix
    pts = np.concatenate([xy, np.zeros((len(xy), 1))], axis=1)
    return (pts @ rot.T + np.asarray(pose["translation"]))[:, :2]


def test_devkit_loads_world_and_samples_are_consistent(nusc, reader, samples):
    assert len(samples) == len(nusc.sample) > 0
    tokens = reader.sample_tokens()
    assert len(set(tokens)) == len(tokens)
    for s in samples:
        assert [c.name for c in s.cameras] == list(CAMERA_NAMES)
        for cam in s.cameras:
            assert os.path.isfile(cam.image_path) and cam.intrinsic.shape == (3, 3) and cam.cam_to_ego.shape == (4, 4)
            assert cam.width > 0 and cam.height > 0
            np.testing.assert_allclose(cam.cam_to_ego[:3, :3] @ cam.cam_to_ego[:3, :3].T, np.eye(3), atol=1e-9)
        assert s.ego_future.shape == (FUTURE_STEPS, 2) and s.ego_future_mask.shape == (FUTURE_STEPS,)
        assert s.ego_past.shape == (PAST_STEPS, 2) and s.ego_past_mask.shape == (PAST_STEPS,)
        assert s.ego_status.as_vector().shape == (4,) and np.isfinite(s.ego_status.as_vector()).all()
        assert s.vector_map.polylines.shape[1:] == (MAP_POINTS_PER_VECTOR, 2)
        assert s.split in ("train", "val") and s.tags, "synthetic scenes carry a split and a scenario tag"
        # Linked list of keyframes within the scene.
        assert s.prev_token == nusc.get("sample", s.token)["prev"]
    # Scene ends: a full future exists somewhere, and the last keyframe of a scene has none.
    assert any(s.has_full_future for s in samples)
    assert not any(s.ego_future_mask.any() for s in samples if not s.next_token)
    # The world exercises the command rule beyond "straight" (the three-point turn).
    assert {s.command for s in samples} - {COMMAND_STRAIGHT}


def test_camera_extrinsics_match_calibration(nusc, samples):
    s = samples[0]
    ego = ego_pose_record(nusc, s.token)
    for cam in s.cameras:
        sd = nusc.get("sample_data", cam.sample_data_token)
        calib = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        cam_pose = nusc.get("ego_pose", sd["ego_pose_token"])
        # Camera origin -> its own ego pose -> global -> the sample's ego frame.
        origin = to_ego(ego, to_global(cam_pose, calib["translation"][:2]) + [0, 0, calib["translation"][2]])
        np.testing.assert_allclose(cam.cam_to_ego[:3, 3], origin, atol=1e-6)
        np.testing.assert_allclose(cam.intrinsic, np.asarray(calib["camera_intrinsic"]), atol=1e-9)


def test_ego_future_past_and_command_match_ego_poses(nusc, samples):
    for s in samples:
        cur = ego_pose_record(nusc, s.token)
        token, expected = s.token, []
        for _ in range(FUTURE_STEPS):
            token = nusc.get("sample", token)["next"]
            if not token:
                break
            expected.append(to_ego(cur, ego_pose_record(nusc, token)["translation"])[:2])
        n = len(expected)
        assert s.ego_future_mask.tolist() == [True] * n + [False] * (FUTURE_STEPS - n)
        if n:
            np.testing.assert_allclose(s.ego_future[:n], np.array(expected), atol=1e-4)
            lateral = expected[-1][1]
            rule = COMMAND_RIGHT if lateral <= -2.0 else COMMAND_LEFT if lateral >= 2.0 else COMMAND_STRAIGHT
            assert s.command == rule
        else:
            assert s.command == COMMAND_STRAIGHT
        token, past = s.token, []
        for _ in range(PAST_STEPS):
            token = nusc.get("sample", token)["prev"]
            if not token:
                break
            past.append(to_ego(cur, ego_pose_record(nusc, token)["translation"])[:2])
        m = len(past)
        assert s.ego_past_mask.tolist() == [False] * (PAST_STEPS - m) + [True] * m
        if m:
            np.testing.assert_allclose(s.ego_past[PAST_STEPS - m :], np.array(past[::-1]), atol=1e-4)


def test_ego_future_yaw_matches_ego_poses(nusc, samples):
    s = next(s for s in samples if s.has_full_future)
    cur = Quaternion(ego_pose_record(nusc, s.token)["rotation"])
    token = s.token
    for k in range(FUTURE_STEPS):
        token = nusc.get("sample", token)["next"]
        rel = cur.inverse * Quaternion(ego_pose_record(nusc, token)["rotation"])
        heading = rel.rotate([1.0, 0.0, 0.0])
        assert s.ego_future_yaw[k] == pytest.approx(math.atan2(heading[1], heading[0]), abs=1e-5)


def test_can_bus_and_ego_pose_status_agree(reader, pose_reader, samples, synth_world):
    """Where the motion is smooth over the finite-difference window, both ego-status sources agree.

    Central differences over +/-0.5 s average the motion; across a hard stop or a sudden brake they legitimately
    differ from the instantaneous CAN values, so only samples whose CAN acceleration and yaw rate barely change
    between the neighbouring keyframes are compared.
    """
    if not (synth_world.dataroot / "can_bus").is_dir():
        pytest.skip("this synthetic world has no CAN-bus expansion")
    assert all(s.ego_status.source == "can_bus" for s in samples), "CAN bus present for every synthetic scene"
    by_token = {s.token: s for s in samples}
    checked = 0
    for s in samples:
        if not (s.prev_token and s.next_token):
            continue
        window = [by_token[s.prev_token].ego_status, s.ego_status, by_token[s.next_token].ego_status]
        accel_change = max(np.abs(w.acceleration - s.ego_status.acceleration).max() for w in window)
        yaw_rate_change = max(abs(w.yaw_rate - s.ego_status.yaw_rate) for w in window)
        if accel_change > 0.6 or yaw_rate_change > 0.1:
            continue
        est = pose_reader.build_sample(s.token).ego_status
        assert est.source == "ego_pose"
        assert est.speed == pytest.approx(s.ego_status.speed, abs=0.2)
        assert est.yaw_rate == pytest.approx(s.ego_status.yaw_rate, abs=0.05)
        np.testing.assert_allclose(est.acceleration, s.ego_status.acceleration, atol=0.5)
        checked += 1
    assert checked >= 3, f"only {checked} smooth samples to compare"


def test_agents_match_annotations(nusc, samples):
    from nuscenes.eval.detection.utils import category_to_detection_name

    total = 0
    for s in samples:
        cur = ego_pose_record(nusc, s.token)
        anns = [nusc.get("sample_annotation", t) for t in nusc.get("sample", s.token)["anns"]]
        kept = [a for a in anns if category_to_detection_name(a["category_name"]) is not None]
        assert s.agents.annotation_tokens == [a["token"] for a in kept]
        n = len(kept)
        assert s.agents.boxes.shape == (n, 7) and s.agents.future.shape == (n, FUTURE_STEPS, 2)
        assert s.agents.future_yaw.shape == (n, FUTURE_STEPS) and s.agents.future_mask.shape == (n, FUTURE_STEPS)
        future_samples = []
        token = s.token
        for _ in range(FUTURE_STEPS):
            token = nusc.get("sample", token)["next"] if token else ""
            future_samples.append(token)
        for i, ann in enumerate(kept):
            total += 1
            label = DETECTION_CLASSES[s.agents.labels[i]]
            assert label == category_to_detection_name(ann["category_name"])
            np.testing.assert_allclose(s.agents.boxes[i, :3], to_ego(cur, ann["translation"]), atol=1e-3)
            np.testing.assert_allclose(s.agents.boxes[i, 3:6], ann["size"], atol=1e-5)
            # Future centres: follow the instance's annotations by sample token.
            by_sample = {}
            nxt = ann["next"]
            while nxt:
                a = nusc.get("sample_annotation", nxt)
                by_sample[a["sample_token"]] = a
                nxt = a["next"]
            for k, tok in enumerate(future_samples):
                if tok and tok in by_sample:
                    assert s.agents.future_mask[i, k]
                    np.testing.assert_allclose(
                        s.agents.future[i, k], to_ego(cur, by_sample[tok]["translation"])[:2], atol=1e-3
                    )
                else:
                    assert not s.agents.future_mask[i, k]
            v = s.agents.velocities[i]
            if np.isfinite(v).all() and ann["prev"] and ann["next"]:
                a0, a1 = nusc.get("sample_annotation", ann["prev"]), nusc.get("sample_annotation", ann["next"])
                dt = 1e-6 * (
                    nusc.get("sample", a1["sample_token"])["timestamp"]
                    - nusc.get("sample", a0["sample_token"])["timestamp"]
                )
                v_global = (np.asarray(a1["translation"]) - np.asarray(a0["translation"])) / dt
                np.testing.assert_allclose(v, Quaternion(cur["rotation"]).inverse.rotate(v_global)[:2], atol=1e-3)
    assert total > 0, "the synthetic world annotates agents"


def _lines(nusc_map, layers):
    lines = [nusc_map.extract_line(rec["line_token"]) for layer in layers for rec in getattr(nusc_map, layer)]
    return unary_union(lines) if lines else LineString()


def _outline(nusc_map, layers):
    """Boundary of the union of a polygon layer (empty when the layer is)."""
    polys = [nusc_map.extract_polygon(rec["polygon_token"]) for layer in layers for rec in getattr(nusc_map, layer)]
    return unary_union(polys).boundary if polys else LineString()


def test_vector_map_matches_map_layers(nusc, reader, samples, synth_world):
    """Every reader vector lies on the map's own geometry, and the map's geometry in range is covered."""
    from nuscenes.map_expansion.map_api import NuScenesMap

    truths: dict[str, dict] = {}
    seen = {name: 0 for name in MAP_CLASSES}
    inner = box(
        PERCEPTION_X_RANGE[0] + 0.5,
        PERCEPTION_Y_RANGE[0] + 0.5,
        PERCEPTION_X_RANGE[1] - 0.5,
        PERCEPTION_Y_RANGE[1] - 0.5,
    )
    for s in samples[:: max(1, len(samples) // 6)]:
        if s.location not in truths:
            nmap = NuScenesMap(dataroot=str(synth_world.dataroot), map_name=s.location)
            truths[s.location] = {
                "divider": _lines(nmap, ("road_divider", "lane_divider")),
                "ped_crossing": _outline(nmap, ("ped_crossing",)),
                "boundary": _outline(nmap, ("road_segment", "lane")),
            }
        truth = truths[s.location]
        pose = ego_pose_record(nusc, s.token)
        for label, name in enumerate(MAP_CLASSES):
            vectors = s.vector_map.polylines[s.vector_map.labels == label]
            seen[name] += len(vectors)
            # (1) reader -> map: each resampled point, back in map coordinates, lies on the true geometry.
            for vec in vectors:
                assert (vec[:, 0] >= PERCEPTION_X_RANGE[0] - 1e-3).all() and (
                    vec[:, 0] <= PERCEPTION_X_RANGE[1] + 1e-3
                ).all()
                assert (vec[:, 1] >= PERCEPTION_Y_RANGE[0] - 1e-3).all() and (
                    vec[:, 1] <= PERCEPTION_Y_RANGE[1] + 1e-3
                ).all()
                dist = shapely.distance(truth[name], shapely.points(to_global_xy(pose, vec.astype(float))))
                assert dist.max() < 2e-3, (name, dist.max())
            # (2) map -> reader: points of the true geometry well inside the range are on some vector, up to the
            # chord error of resampling (a corner between two resampled points is cut by at most half a spacing).
            covered = unary_union([LineString(v) for v in vectors]) if len(vectors) else None
            spacing = max((np.linalg.norm(np.diff(v, axis=0), axis=1).max() for v in vectors), default=0.0)
            tolerance = 0.5 * spacing + 0.01
            ego_xy = Point(pose["translation"][:2])
            for part in getattr(truth[name], "geoms", [truth[name]]):
                if part.distance(ego_xy) > 40.0:  # the range box's corners are 33.5 m away
                    continue
                along = shapely.line_interpolate_point(part, np.arange(0.0, part.length, 1.0))
                pts = to_ego_xy(pose, shapely.get_coordinates(along))
                pts = pts[shapely.contains_xy(inner, pts[:, 0], pts[:, 1])]
                if len(pts):
                    assert covered is not None, (name, pts[:3])
                    dist = shapely.distance(covered, shapely.points(pts))
                    assert dist.max() < tolerance, (name, pts[np.argmax(dist)], dist.max(), tolerance)
    assert seen["divider"] > 0 and seen["boundary"] > 0, seen


def test_splits_and_tags_follow_synth_meta(reader, samples):
    train = set(reader.sample_tokens("train"))
    val = set(reader.sample_tokens("val"))
    assert train.isdisjoint(val) and train | val == {s.token for s in samples}
    for s in samples:
        assert (s.token in train) == (s.split == "train")
