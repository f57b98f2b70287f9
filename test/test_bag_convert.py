"""``dima bag convert``: the synthetic world -> rosbag2 (MCAP), read back with rosbags and compared with the dataset.

ROS-free (no rclpy): the bag is read with ``rosbags.highlevel.AnyReader`` and every message is checked against the
devkit records and the DrivingSample the data layer builds for the same keyframe. The GT topic is also scored with
the planning metric and compared with ``dima eval``'s code path on the same samples.
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from ros_helpers.testing import REPO_ROOT

CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_FRONT_LEFT", "CAM_BACK", "CAM_BACK_LEFT", "CAM_BACK_RIGHT")
SCENE_GAP_S = 1.0


@pytest.fixture(scope="module")
def bag_reader(synth_world, nusc):
    """A NuScenesReader without the map (what the converter builds), sharing the session's devkit tables."""
    from dima_core.data.nuscenes_reader import NuScenesReader

    return NuScenesReader(synth_world.dataroot, synth_world.version, nusc=nusc, with_map=False)


@pytest.fixture(scope="module")
def converted(bag_reader, synth_world, tmp_path_factory):
    """Both synthetic scenes in one MCAP bag."""
    from dima_core.bag.convert import convert_scenes

    out = tmp_path_factory.mktemp("bags") / "synth"
    summary = convert_scenes(
        synth_world.dataroot,
        synth_world.version,
        bag_reader.scene_names(),
        out,
        reader=bag_reader,
        scene_gap_s=SCENE_GAP_S,
    )
    return summary


@pytest.fixture(scope="module")
def bag_messages(converted):
    """topic -> [(record time ns, deserialised message)] in bag order, plus the connections."""
    from dima_core.bag.reading import open_bag

    reader = open_bag(converted.path)
    try:
        out: dict[str, list] = defaultdict(list)
        for conn, t, raw in reader.messages():
            out[conn.topic].append((t, reader.deserialize(raw, conn.msgtype)))
        return dict(out), list(reader.connections)
    finally:
        reader.close()


@pytest.fixture(scope="module")
def samples_in_bag(bag_reader):
    """DrivingSamples of every keyframe, scene by scene (the bag's order)."""
    return [bag_reader.build_sample(t) for t in bag_reader.sample_tokens()]


def _ns(stamp) -> int:
    return int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)


def _offset(converted, sample) -> int:
    return converted.scene_offsets_ns[sample.scene_name]


def test_summary_and_scene_time_shift(converted, samples_in_bag):
    assert converted.num_keyframes == len(samples_in_bag)
    assert converted.storage == "mcap"
    scenes = converted.scenes
    assert converted.scene_offsets_ns[scenes[0]] == 0  # the first scene keeps the dataset's stamps
    # The second scene starts exactly SCENE_GAP_S after the first one's last stamp.
    last_first = max(s.timestamp_us for s in samples_in_bag if s.scene_name == scenes[0]) * 1000
    first_second = min(s.timestamp_us for s in samples_in_bag if s.scene_name == scenes[1]) * 1000
    assert first_second + converted.scene_offsets_ns[scenes[1]] == last_first + int(SCENE_GAP_S * 1e9)


def test_images_are_the_stored_jpegs(bag_messages, samples_in_bag, converted):
    topics, _ = bag_messages
    for cam in CAMERAS:
        msgs = topics[f"/{cam}/image_rect_compressed"]
        assert len(msgs) == len(samples_in_bag), cam  # one per keyframe, nothing between keyframes
        for (t, msg), sample in zip(msgs, samples_in_bag, strict=True):
            view = sample.camera(cam)
            expected_ns = view.timestamp_us * 1000 + _offset(converted, sample)
            assert t == expected_ns and _ns(msg.header.stamp) == expected_ns
            assert msg.header.frame_id == cam
            assert msg.format == "jpeg"
            assert bytes(msg.data) == Path(view.image_path).read_bytes()


def test_camera_info_matches_calibration(bag_messages, samples_in_bag):
    topics, _ = bag_messages
    for cam in CAMERAS:
        msgs = topics[f"/{cam}/camera_info"]
        assert len(msgs) == len(samples_in_bag)
        for (_, info), sample in zip(msgs, samples_in_bag, strict=True):
            view = sample.camera(cam)
            k = np.asarray(view.intrinsic, np.float64)
            assert info.header.frame_id == cam
            np.testing.assert_array_equal(np.asarray(info.k).reshape(3, 3), k)
            np.testing.assert_array_equal(np.asarray(info.r).reshape(3, 3), np.eye(3))
            np.testing.assert_array_equal(np.asarray(info.p).reshape(3, 4), np.hstack([k, np.zeros((3, 1))]))
            np.testing.assert_array_equal(np.asarray(info.d), np.zeros(5))
            assert info.distortion_model == "plumb_bob"
            assert (info.width, info.height) == (view.width, view.height)


def _assert_transform(transform, record) -> None:
    t, q = transform.translation, transform.rotation
    assert [t.x, t.y, t.z] == [float(v) for v in record["translation"]]
    assert [q.w, q.x, q.y, q.z] == [float(v) for v in record["rotation"]]


def test_tf_static_is_the_calibration_once_per_scene(bag_messages, bag_reader, converted):
    topics, connections = bag_messages
    static = topics["/tf_static"]
    assert len(static) == len(converted.scenes)
    for (t, msg), scene in zip(static, converted.scenes, strict=True):
        scene_rec = next(s for s in bag_reader.nusc.scene if s["name"] == scene)
        first = bag_reader.nusc.get("sample", scene_rec["first_sample_token"])
        assert [tf.child_frame_id for tf in msg.transforms] == list(CAMERAS)
        for tf, cam in zip(msg.transforms, CAMERAS, strict=True):
            sd = bag_reader.nusc.get("sample_data", first["data"][cam])
            assert tf.header.frame_id == "base_link" and _ns(tf.header.stamp) == t
            _assert_transform(tf.transform, bag_reader.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"]))
    # Late subscribers must still get the calibration: transient-local, depth 1, as tf2's static broadcaster.
    (conn,) = [c for c in connections if c.topic == "/tf_static"]
    (qos,) = conn.ext.offered_qos_profiles
    assert (qos.durability.name, qos.reliability.name, qos.depth) == ("TRANSIENT_LOCAL", "RELIABLE", 1)


def test_tf_and_odometry_match_ego_poses(bag_messages, bag_reader, samples_in_bag, converted):
    topics, _ = bag_messages
    tf_by_stamp = {}
    for t, msg in topics["/tf"]:
        (tf,) = msg.transforms
        assert (tf.header.frame_id, tf.child_frame_id) == ("map", "base_link") and _ns(tf.header.stamp) == t
        tf_by_stamp[t] = tf.transform
    odoms, accels = topics["/odom"], topics["/accel"]
    assert len(odoms) == len(accels) == len(samples_in_bag)
    for (t, odom), (_, accel), sample in zip(odoms, accels, samples_in_bag, strict=True):
        rec = bag_reader.nusc.get("sample", sample.token)
        ref_sd = bag_reader.reference_sample_data(rec)
        pose = bag_reader.nusc.get("ego_pose", ref_sd["ego_pose_token"])
        assert t == ref_sd["timestamp"] * 1000 + _offset(converted, sample)
        _assert_transform(tf_by_stamp[t], pose)  # map -> base_link at the reference time is the ego pose
        # and at every camera's capture time its own recorded ego pose.
        for cam in CAMERAS:
            cam_sd = bag_reader.nusc.get("sample_data", rec["data"][cam])
            cam_t = cam_sd["timestamp"] * 1000 + _offset(converted, sample)
            _assert_transform(tf_by_stamp[cam_t], bag_reader.nusc.get("ego_pose", cam_sd["ego_pose_token"]))
        assert (odom.header.frame_id, odom.child_frame_id) == ("map", "base_link")
        p, q = odom.pose.pose.position, odom.pose.pose.orientation
        assert [p.x, p.y, p.z] == [float(v) for v in pose["translation"]]
        assert [q.w, q.x, q.y, q.z] == [float(v) for v in pose["rotation"]]
        np.testing.assert_allclose(odom.pose.pose.position.x, sample.ego_to_global[0, 3], rtol=0, atol=1e-9)
        assert odom.twist.twist.linear.x == pytest.approx(sample.ego_status.speed, abs=0)
        assert odom.twist.twist.angular.z == pytest.approx(sample.ego_status.yaw_rate, abs=0)
        assert accel.header.frame_id == "base_link"
        assert [accel.accel.accel.linear.x, accel.accel.accel.linear.y] == [
            float(v) for v in sample.ego_status.acceleration
        ]


def test_command_and_ground_truth_match_samples(bag_messages, samples_in_bag, converted):
    from dima_core.bag.messages import ground_truth_from_message
    from dima_core.eval.planning_metrics import sample_splits

    topics, _ = bag_messages
    commands, gts = topics["/planning/command"], topics["/evaluation/ground_truth"]
    assert len(commands) == len(gts) == len(samples_in_bag)
    for (tc, cmd), (tg, msg), sample in zip(commands, gts, samples_in_bag, strict=True):
        front_ns = sample.camera("CAM_FRONT").timestamp_us * 1000 + _offset(converted, sample)
        assert tc == tg == front_ns == _ns(cmd.header.stamp)
        assert cmd.command == sample.command
        gt = ground_truth_from_message(msg)
        assert gt.stamp_ns == front_ns and msg.header.frame_id == "base_link"
        assert (gt.sample_token, gt.scene_name) == (sample.token, sample.scene_name)
        assert gt.timestamp_us == sample.timestamp_us
        assert gt.command == sample.command and gt.tags == list(sample.tags)
        assert gt.eval_splits == sample_splits(sample)
        for name in ("ego_future", "ego_future_yaw", "ego_future_mask"):
            got, want = getattr(gt, name), getattr(sample, name)
            assert got.dtype == want.dtype and np.array_equal(got, want), name
        a, b = gt.agents, sample.agents
        assert len(a) == len(b) and a.instance_tokens == b.instance_tokens
        for name in ("boxes", "labels", "num_lidar_points", "future", "future_yaw", "future_mask"):
            assert np.array_equal(getattr(a, name), getattr(b, name)), name
        assert np.array_equal(a.velocities, b.velocities, equal_nan=True)
    assert any(len(s.agents) for s in samples_in_bag) and any(not s.has_full_future for s in samples_in_bag)


def test_ground_truth_scores_like_dima_eval(bag_messages, samples_in_bag):
    """Online scoring from the GT topic gives the very report ``dima eval``'s code gives on the samples."""
    from dima_core.bag.messages import ground_truth_from_message
    from dima_core.eval.evaluate import evaluate_planners
    from dima_core.eval.occupancy import build_occupancy
    from dima_core.eval.planning_metrics import PlanningMetricAccumulator

    def planner(token: str, future: np.ndarray) -> np.ndarray:
        # Deterministic per sample, sometimes veering into other agents: exercises L2 and collision alike.
        rng = np.random.default_rng(int(token[-6:], 16))
        return (future * rng.uniform(0.5, 1.2) + rng.normal(0.0, 1.5, size=(6, 2))).astype(np.float32)

    reference = evaluate_planners(samples_in_bag, {"p": lambda s: planner(s.token, s.ego_future)})["p"]
    online = PlanningMetricAccumulator()
    for _, msg in bag_messages[0]["/evaluation/ground_truth"]:
        gt = ground_truth_from_message(msg)
        if not gt.has_full_future:
            online.num_skipped_incomplete += 1
            continue
        occupancy = build_occupancy(gt.agents, online.occupancy_config)
        online.add(
            planner(gt.sample_token, gt.ego_future),
            gt.ego_future,
            gt.ego_future_mask,
            occupancy,
            token=gt.sample_token,
            splits=gt.eval_splits,
        )
    assert online.result() == reference
    # Non-trivial: samples scored, incomplete futures skipped, some collisions and splits populated.
    assert reference["num_samples"] > 0 and reference["num_skipped_incomplete_future"] > 0
    assert reference["vad"]["collision"]["avg"] > 0
    assert any(split["num_samples"] for split in reference["splits"].values())


def _mcap_header(path: Path) -> tuple[str, str]:
    """(profile, library) of an MCAP file's Header record (magic, opcode 0x01, u64 length, two u32-prefixed strings)."""
    data = path.read_bytes()[:4096]
    assert data[:8] == b"\x89MCAP0\r\n", "not an MCAP file"
    assert data[8] == 0x01, "MCAP must start with a Header record"
    pos = 17
    (n,) = struct.unpack_from("<I", data, pos)
    profile = data[pos + 4 : pos + 4 + n].decode()
    pos += 4 + n
    (m,) = struct.unpack_from("<I", data, pos)
    return profile, data[pos + 4 : pos + 4 + m].decode()


def test_metadata_storage_profile_and_types(converted, bag_messages):
    import yaml

    meta = yaml.safe_load((converted.path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]
    assert meta["storage_identifier"] == "mcap"
    (rel,) = meta["relative_file_paths"]
    assert rel.endswith(".mcap")
    profile, _ = _mcap_header(converted.path / rel)
    assert profile == "ros2"
    from dima_core.bag.topics import bag_topics

    expected = {spec.name: spec for spec in bag_topics()}
    _, connections = bag_messages
    assert {c.topic for c in connections} == set(expected)
    for conn in connections:
        spec = expected[conn.topic]
        assert conn.msgtype == spec.msgtype
        assert conn.ext.serialization_format == "cdr"
        assert conn.msgdef.format.name == "MSG"  # ros2msg schemas embedded, incl. the dima types
        assert list(conn.ext.offered_qos_profiles) == [spec.qos]
    gt_conn = next(c for c in connections if c.topic == "/evaluation/ground_truth")
    assert "float32[] agent_futures" in gt_conn.msgdef.data


def test_sqlite3_storage_and_cli(synth_world, bag_reader, tmp_path, capsys):
    from dima_core.bag.reading import bag_info
    from dima_core.cli import main

    scene = bag_reader.scene_names()[0]
    out = tmp_path / "db3bag"
    rc = main(
        [
            "bag",
            "convert",
            "--dataroot",
            str(synth_world.dataroot),
            "--version",
            synth_world.version,
            "--scene",
            scene,
            "--out",
            str(out),
            "--storage",
            "sqlite3",
        ]
    )
    assert rc == 0
    assert list(out.glob("*.db3"))
    info = bag_info(out)
    assert info.storage == "sqlite3"
    scene_token = next(s["token"] for s in bag_reader.nusc.scene if s["name"] == scene)
    n = sum(bag_reader.nusc.get("sample", t)["scene_token"] == scene_token for t in bag_reader.sample_tokens())
    counts = {t.name: t.count for t in info.topics}
    assert counts["/CAM_FRONT/image_rect_compressed"] == n and counts["/tf_static"] == 1
    assert main(["bag", "info", str(out)]) == 0
    assert "/evaluation/ground_truth" in capsys.readouterr().out
    # An existing bag is never overwritten silently; a directory that is not a bag is never deleted.
    assert (
        main(
            [
                "bag",
                "convert",
                "--dataroot",
                str(synth_world.dataroot),
                "--version",
                synth_world.version,
                "--scene",
                scene,
                "--out",
                str(out),
            ]
        )
        == 2
    )
    assert "already exists" in capsys.readouterr().err


def test_clear_errors(synth_world, bag_reader, tmp_path):
    from dima_core.bag.convert import convert_scenes
    from dima_core.bag.reading import BagError, bag_info

    with pytest.raises(ValueError, match="scene 'scene-nope' is not in"):
        convert_scenes(synth_world.dataroot, synth_world.version, ["scene-nope"], tmp_path / "x", reader=bag_reader)
    assert not (tmp_path / "x").exists()
    keep = tmp_path / "not_a_bag"
    keep.mkdir()
    (keep / "precious.txt").write_text("x")
    with pytest.raises(ValueError, match="not a rosbag2 directory"):
        convert_scenes(
            synth_world.dataroot,
            synth_world.version,
            bag_reader.scene_names()[:1],
            keep,
            reader=bag_reader,
            overwrite=True,
        )
    assert (keep / "precious.txt").exists()
    with pytest.raises(BagError, match="does not exist"):
        bag_info(tmp_path / "missing")
    with pytest.raises(BagError, match="no metadata.yaml"):
        bag_info(keep)


def test_conversion_is_ros_free():
    """convert/info and the command module never import rclpy (they must run on machines without ROS)."""
    code = (
        "import sys; import dima_core.bag.convert, dima_core.bag.reading, dima_core.bag.messages, "
        "dima_core.commands.bag, dima_core.cli; dima_core.cli.build_parser(); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rclpy', 'dima_ros')); "
        "sys.exit(f'imported {bad}' if bad else 0)"
    )
    env = dict(os.environ, PYTHONPATH=f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
