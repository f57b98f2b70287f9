"""Unit tests of the data layer's pure functions: frames, ego motion, command rule, CAN interpolation, map
vectorisation, splits, image preparation. No dataset needed."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from pyquaternion import Quaternion
from shapely.geometry import LinearRing, LineString, MultiLineString, Point, Polygon, box

from dima_core.config import ConfigError, config_from_dict, load_config
from dima_core.constants import (
    COMMAND_LEFT,
    COMMAND_RIGHT,
    COMMAND_STRAIGHT,
    FUTURE_STEPS,
    MAP_CLASSES,
    PERCEPTION_X_RANGE,
    PERCEPTION_Y_RANGE,
)
from dima_core.data.config import DataConfig
from dima_core.data.dataset import prepare_image, scale_intrinsic
from dima_core.data.ego_motion import (
    CanPoseSeries,
    driving_command,
    ego_status_from_poses,
    relative_trajectory,
)
from dima_core.data.geometry import invert, record_to_matrix, transform_points, wrap_angle, yaw_of
from dima_core.data.splits import SplitFileError, official_splits, read_synth_meta, read_token_lists
from dima_core.data.vector_map import MapVectorizer, polygon_rings, resample_polyline, split_lines


def pose(x: float, y: float, yaw: float) -> np.ndarray:
    """(4, 4) ego_to_global of a planar pose."""
    return record_to_matrix({"translation": [x, y, 0.0], "rotation": list(Quaternion(axis=[0, 0, 1], angle=yaw))})


# ---------------------------------------------------------------------------------------------------- frames


def test_record_to_matrix_and_invert_round_trip():
    rec = {"translation": [1.0, -2.0, 0.5], "rotation": list(Quaternion(axis=[0.2, 0.1, 1.0], angle=0.7))}
    mat = record_to_matrix(rec)
    pts = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(transform_points(invert(mat), transform_points(mat, pts)), pts, atol=1e-12)
    np.testing.assert_allclose(invert(mat), np.linalg.inv(mat), atol=1e-12)


def test_yaw_and_wrap():
    assert yaw_of(pose(0, 0, 2.5)[:3, :3]) == pytest.approx(2.5)
    assert yaw_of(pose(0, 0, -3.0)[:3, :3]) == pytest.approx(-3.0)
    assert float(wrap_angle(3 * math.pi / 2)) == pytest.approx(-math.pi / 2)


# ---------------------------------------------------------------------------------------------------- ego motion


def test_relative_trajectory_in_ego_frame_and_padding():
    current = pose(10.0, 5.0, math.radians(30))
    # Future expressed in the current ego frame: 2 m forward and 1 m left per step, heading +0.1 rad per step.
    local = [(2.0 * (k + 1), 1.0 * (k + 1), 0.1 * (k + 1)) for k in range(4)]
    poses = [current @ pose(x, y, yaw) for x, y, yaw in local] + [None, None]
    xy, yaw, mask = relative_trajectory(current, poses)
    assert xy.shape == (6, 2) and yaw.shape == (6,) and mask.tolist() == [True] * 4 + [False] * 2
    np.testing.assert_allclose(xy[:4], [[x, y] for x, y, _ in local], atol=1e-6)
    np.testing.assert_allclose(yaw[:4], [y for _, _, y in local], atol=1e-6)
    # Missing steps repeat the last valid one (VAD's padding).
    np.testing.assert_allclose(xy[4:], [xy[3], xy[3]])


def test_relative_trajectory_without_any_valid_step_is_the_origin():
    xy, yaw, mask = relative_trajectory(pose(3, 4, 1.0), [None] * FUTURE_STEPS)
    assert not mask.any() and not xy.any() and not yaw.any()


@pytest.mark.parametrize(
    "lateral, expected",
    [
        (-2.0, COMMAND_RIGHT),
        (-5.0, COMMAND_RIGHT),
        (2.0, COMMAND_LEFT),
        (1.99, COMMAND_STRAIGHT),
        (-1.99, COMMAND_STRAIGHT),
    ],
)
def test_driving_command_threshold(lateral, expected):
    xy = np.zeros((6, 2))
    xy[:, 0] = np.arange(1, 7) * 3.0
    xy[-1, 1] = lateral
    assert driving_command(xy, np.ones(6, bool)) == expected


def test_driving_command_uses_last_valid_step():
    xy = np.zeros((6, 2))
    xy[2, 1] = 3.0  # left at the last valid step...
    xy[5, 1] = -9.0  # ...garbage beyond it must be ignored
    mask = np.array([True, True, True, False, False, False])
    assert driving_command(xy, mask) == COMMAND_LEFT
    assert driving_command(xy, np.zeros(6, bool)) == COMMAND_STRAIGHT


def test_ego_status_from_poses_on_a_circle():
    speed, yaw_rate = 8.0, 0.2  # m/s, rad/s -> radius 40 m, centripetal 1.6 m/s^2 to the left
    radius = speed / yaw_rate
    times = np.array([0.0, 0.5, 1.0])
    poses = []
    for t in times:
        th = yaw_rate * t
        poses.append(pose(radius * math.sin(th), radius * (1 - math.cos(th)), th))
    status = ego_status_from_poses(times, poses, 1)
    assert status.source == "ego_pose"
    # Chord vs arc: central differences are second-order accurate; sin(x)/x at x = 0.1 is 0.9983.
    assert status.speed == pytest.approx(speed, rel=2e-3)
    assert status.yaw_rate == pytest.approx(yaw_rate, rel=1e-6)
    assert status.acceleration[0] == pytest.approx(0.0, abs=1e-3)
    assert status.acceleration[1] == pytest.approx(speed * yaw_rate, rel=5e-3)


def test_ego_status_from_poses_straight_acceleration_and_scene_ends():
    accel, v0 = 1.5, 4.0
    times = np.array([0.0, 0.5, 1.0, 1.5])
    poses = [pose(v0 * t + 0.5 * accel * t * t, 0.0, 0.0) for t in times]
    middle = ego_status_from_poses(times, poses, 1)
    assert middle.speed == pytest.approx(v0 + accel * 0.5)
    assert middle.acceleration[0] == pytest.approx(accel)
    first = ego_status_from_poses(times, poses, 0)  # one-sided speed, acceleration from the next two segments
    assert first.speed == pytest.approx(v0 + accel * 0.25)
    assert first.acceleration[0] == pytest.approx(accel)
    last = ego_status_from_poses(times, poses, 3)
    assert last.acceleration[0] == pytest.approx(accel)
    single = ego_status_from_poses([0.0], poses[:1], 0)
    assert single.speed == 0.0 and single.yaw_rate == 0.0
    with pytest.raises(ValueError):
        ego_status_from_poses([0.0, 0.0], poses[:2], 0)


def test_ego_status_reversing_has_negative_speed():
    times = [0.0, 0.5, 1.0]
    poses = [pose(-2.0 * t, 0.0, 0.0) for t in times]
    assert ego_status_from_poses(times, poses, 1).speed == pytest.approx(-2.0)


def test_can_pose_interpolation_and_gap():
    messages = [
        {
            "utime": 1_000_000 + 20_000 * k,
            "vel": [5.0 + k, 0.1, 0.0],
            "accel": [0.5 * k, -0.2, 9.8],
            "rotation_rate": [0.0, 0.0, 0.01 * k],
            "pos": [0, 0, 0],
            "orientation": [1, 0, 0, 0],
        }
        for k in range(10)
    ][::-1]  # unsorted on purpose
    series = CanPoseSeries.from_messages(messages)
    status = series.ego_status(1_000_000 + 30_000, max_gap_us=250_000)  # halfway between k=1 and k=2
    assert status.source == "can_bus"
    assert status.speed == pytest.approx(6.5)
    np.testing.assert_allclose(status.acceleration, [0.75, -0.2], rtol=1e-6)
    assert status.yaw_rate == pytest.approx(0.015)
    assert series.ego_status(1_000_000 + 180_000 + 100_000, max_gap_us=250_000).speed == pytest.approx(14.0)
    assert series.ego_status(5_000_000, max_gap_us=250_000) is None
    with pytest.raises(ValueError):
        CanPoseSeries.from_messages([])


# ---------------------------------------------------------------------------------------------------- vector map


def test_resample_polyline_is_equidistant():
    line = LineString([(0, 0), (3, 0), (3, 4)])
    pts = resample_polyline(line, 8)
    assert pts.shape == (8, 2)
    np.testing.assert_allclose(pts[0], [0, 0])
    np.testing.assert_allclose(pts[-1], [3, 4])
    steps = [line.project(Point(p)) for p in pts]
    np.testing.assert_allclose(np.diff(steps), 1.0, atol=1e-6)


def test_split_lines_merges_touching_pieces():
    # A ring clipped by a box can come back as two pieces that meet at the ring's start point.
    pieces = MultiLineString([[(0, 0), (1, 0)], [(-1, 0), (0, 0)], [(5, 5), (6, 6)]])
    lines = split_lines(pieces)
    assert sorted(round(line.length, 6) for line in lines) == [round(math.sqrt(2), 6), 2.0]


def test_polygon_rings_orientation():
    poly = Polygon([(0, 0), (4, 0), (4, 4), (0, 4)], holes=[[(1, 1), (2, 1), (2, 2), (1, 2)]])
    exterior, hole = polygon_rings(poly)
    # MapTR: exterior clockwise, holes counter-clockwise.
    assert not LinearRing(exterior.coords).is_ccw and LinearRing(hole.coords).is_ccw


def test_map_vectorizer_straight_road_in_ego_frame():
    # A 12 m wide road along map x, a centre divider, and one crosswalk 10 m ahead of the ego.
    road = box(-500, -6, 500, 6)
    divider = LineString([(-500, 0), (500, 0)])
    crossing = box(108, -6, 112, 6)
    vec = MapVectorizer([divider], [crossing], [road], num_points=20)
    ego = pose(100.0, -2.0, 0.0)  # 2 m right of the divider, heading +x
    vmap = vec(ego)
    names = [MAP_CLASSES[i] for i in vmap.labels]
    assert vmap.polylines.shape[1:] == (20, 2)
    assert names.count("divider") == 1 and names.count("boundary") == 2 and names.count("ped_crossing") == 1
    div = vmap.polylines[names.index("divider")]
    np.testing.assert_allclose(div[:, 1], 2.0, atol=1e-6)  # the divider is 2 m to the left
    np.testing.assert_allclose(sorted([div[0, 0], div[-1, 0]]), PERCEPTION_X_RANGE, atol=1e-6)
    boundaries = [vmap.polylines[i] for i, n in enumerate(names) if n == "boundary"]
    assert sorted(round(float(b[:, 1].mean()), 4) for b in boundaries) == [-4.0, 8.0]
    for b in boundaries:  # only the real road edges: no fake edges along the range box
        assert np.ptp(b[:, 1]) < 1e-6 and np.ptp(b[:, 0]) == pytest.approx(60.0)
    ped = vmap.polylines[names.index("ped_crossing")]
    assert ped[:, 0].min() == pytest.approx(8.0, abs=1e-4) and ped[:, 0].max() == pytest.approx(12.0, abs=1e-4)
    # All points inside the range.
    assert (vmap.polylines[..., 0] >= PERCEPTION_X_RANGE[0] - 1e-6).all()
    assert (np.abs(vmap.polylines[..., 1]) <= PERCEPTION_Y_RANGE[1] + 1e-6).all()


def test_map_vectorizer_rotated_ego_and_empty_area():
    road = box(-6, -500, 6, 500)  # road along map y
    vec = MapVectorizer([], [], [road])
    vmap = vec(pose(0.0, 0.0, math.pi / 2))  # heading +y: the road runs along ego x
    assert len(vmap) == 2
    np.testing.assert_allclose(sorted(vmap.polylines[:, :, 1].mean(axis=1)), [-6.0, 6.0], atol=1e-6)
    assert len(vec(pose(1000.0, 0.0, 0.0))) == 0


# ---------------------------------------------------------------------------------------------------- splits


def test_read_synth_meta(tmp_path):
    path = tmp_path / "synth_meta.json"
    path.write_text(
        json.dumps(
            {
                "splits": {"train": ["scene-0001"], "val": ["scene-0002"]},
                "scenes": {"scene-0001": {"scenario": "overtake", "tags": ["night", "overtake"]}},
            }
        )
    )
    splits = read_synth_meta(path)
    assert splits.split_of("scene-0001") == "train" and splits.split_of("scene-0002") == "val"
    assert splits.split_of("scene-9999") == ""
    assert splits.tags_of("scene-0001", "tok") == ["overtake", "night"]
    path.write_text(json.dumps({"splits": {"train": ["a"], "val": ["a"]}}))
    with pytest.raises(SplitFileError, match="both"):
        read_synth_meta(path)
    path.write_text("{not json")
    with pytest.raises(SplitFileError, match="not valid JSON"):
        read_synth_meta(path)


def test_official_splits_by_version(tmp_path):
    mini = official_splits("v1.0-mini", str(tmp_path))
    assert mini.split_of("scene-0061") == "train" and mini.split_of("scene-0103") == "val"
    trainval = official_splits("v1.0-trainval", str(tmp_path))
    assert trainval.split_of("scene-0001") == "train" and trainval.split_of("scene-0003") == "val"
    assert official_splits("v9-custom", str(tmp_path)).scene_split == {}


def test_token_lists(tmp_path):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"overtake": ["t1", "t2"]}))
    b.write_text(json.dumps({"three_point_turn": ["t2"], "overtake": ["t2"]}))
    assert read_token_lists([a, b]) == {"t1": ["overtake"], "t2": ["overtake", "three_point_turn"]}
    b.write_text(json.dumps({"overtake": "t1"}))
    with pytest.raises(SplitFileError, match="list of strings"):
        read_token_lists([b])


# ---------------------------------------------------------------------------------------------------- config + images


def test_data_yaml_loads_and_errors_name_the_key(tmp_path):
    cfg = load_config("config/data.yaml", DataConfig, section="data")
    assert cfg.image_size == (360, 640) and cfg.map_points_per_vector == 20
    with pytest.raises(ConfigError, match="max_agents"):
        config_from_dict({"max_agents": 0}, DataConfig)
    with pytest.raises(ConfigError, match="interpolation"):
        config_from_dict({"interpolation": "bogus"}, DataConfig)


def test_prepare_image_normalises_and_scales_intrinsics():
    image = np.full((90, 160, 3), (255, 0, 128), np.uint8)
    out, sx, sy = prepare_image(image, (45, 40), mean=(0.5, 0.5, 0.5), std=(0.5, 0.25, 1.0))
    assert out.shape == (3, 45, 40) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0], [1.0, -2.0, 128 / 255 - 0.5], atol=1e-6)
    assert (sx, sy) == (0.25, 0.5)
    k = np.array([[100.0, 0, 80], [0, 110.0, 45], [0, 0, 1]])
    k2 = scale_intrinsic(k, sx, sy)
    p = np.array([3.0, -1.0, 10.0])
    uv = k @ p
    uv2 = k2 @ p
    np.testing.assert_allclose(uv2[:2] / uv2[2], [uv[0] / uv[2] * sx, uv[1] / uv[2] * sy])
