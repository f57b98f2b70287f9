"""The real nuscenes-devkit loads a generated synthetic world: tables, map expansion, prediction helper, CAN bus,
lidar, and the side file with splits and scenario tags."""

from __future__ import annotations

import json

import numpy as np

from dima_core.constants import CAMERA_NAMES, LIDAR_NAME


def test_tables_load_and_link(synth_written, synth_nusc):
    nusc = synth_nusc
    cfg = synth_written.world.cfg
    assert len(nusc.scene) == 2
    for scene in nusc.scene:
        assert scene["nbr_samples"] == cfg.num_keyframes
        tokens = []
        tok = scene["first_sample_token"]
        while tok:
            sample = nusc.get("sample", tok)
            assert set(sample["data"]) == set(CAMERA_NAMES) | {LIDAR_NAME}
            tokens.append(tok)
            tok = sample["next"]
        assert tokens[-1] == scene["last_sample_token"] and len(tokens) == scene["nbr_samples"]
    for sd in nusc.sample_data:
        assert sd["is_key_frame"]
        if sd["sensor_modality"] == "camera":
            assert (sd["width"], sd["height"]) == (cfg.camera.width, cfg.camera.height)
    for inst in nusc.instance:
        chain, tok = [], inst["first_annotation_token"]
        while tok:
            chain.append(tok)
            tok = nusc.get("sample_annotation", tok)["next"]
        assert len(chain) == inst["nbr_annotations"] and chain[-1] == inst["last_annotation_token"]
    cats = {a["category_name"] for a in nusc.sample_annotation}
    assert "vehicle.car" in cats and any(c.startswith("human.pedestrian") for c in cats)
    assert {a["visibility_token"] for a in nusc.sample_annotation} <= {"1", "2", "3", "4"}


def test_camera_intrinsics_and_extrinsics(synth_nusc):
    nusc = synth_nusc
    sample = nusc.sample[0]
    yaws = {}
    for cam in CAMERA_NAMES:
        sd = nusc.get("sample_data", sample["data"][cam])
        cs = nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        K = np.array(cs["camera_intrinsic"])
        assert K.shape == (3, 3) and abs(K[0, 2] - sd["width"] / 2) < 1e-6
        assert 1.4 < cs["translation"][2] < 1.7
        from pyquaternion import Quaternion

        forward = Quaternion(cs["rotation"]).rotate([0.0, 0.0, 1.0])  # optical axis in the ego frame
        yaws[cam] = round(float(np.degrees(np.arctan2(forward[1], forward[0]))))
        fov = np.degrees(2 * np.arctan(sd["width"] / 2 / K[0, 0]))
        assert (60 < fov < 70) if cam != "CAM_BACK" else (85 < fov < 115)
    assert yaws == {
        "CAM_FRONT": 0,
        "CAM_FRONT_RIGHT": -55,
        "CAM_FRONT_LEFT": 55,
        "CAM_BACK": 180,
        "CAM_BACK_LEFT": 110,
        "CAM_BACK_RIGHT": -110,
    }


def test_map_expansion_loads(synth_written, synth_nusc):
    from nuscenes.map_expansion.map_api import NuScenesMap

    for log in synth_nusc.log:
        nmap = NuScenesMap(dataroot=str(synth_written.dataroot), map_name=log["location"])
        assert nmap.lane and nmap.road_segment and nmap.drivable_area and nmap.road_divider
        sample = synth_nusc.get(
            "sample", [s for s in synth_nusc.scene if s["log_token"] == log["token"]][0]["first_sample_token"]
        )
        pose = synth_nusc.get("ego_pose", synth_nusc.get("sample_data", sample["data"][LIDAR_NAME])["ego_pose_token"])
        x, y = pose["translation"][:2]
        layers = nmap.layers_on_point(x, y)
        assert layers["drivable_area"] and layers["road_segment"]
        lane = nmap.get_closest_lane(x, y, radius=3.0)
        assert lane
        poses = np.array(nmap.discretize_lanes([lane], 0.5)[lane])
        assert np.min(np.linalg.norm(poses[:, :2] - [x, y], axis=1)) < 2.0  # the ego drives on its lane centre
        records = nmap.get_records_in_patch((x - 30, y - 30, x + 30, y + 30), ["lane", "ped_crossing", "lane_divider"])
        assert records["lane"]
        mask = nmap.get_map_mask((x, y, 60, 60), 0.0, ["drivable_area", "lane"], canvas_size=(60, 60))
        assert mask.shape == (2, 60, 60) and mask[0].sum() > 0


def test_prediction_helper_and_lidar(synth_nusc):
    from nuscenes.prediction import PredictHelper
    from nuscenes.utils.data_classes import LidarPointCloud
    from nuscenes.utils.geometry_utils import points_in_box

    nusc = synth_nusc
    helper = PredictHelper(nusc)
    sample = nusc.sample[2]
    movers = [
        a
        for a in (nusc.get("sample_annotation", t) for t in sample["anns"])
        if a["next"] and a["category_name"] == "vehicle.car"
    ]
    assert movers
    fut = helper.get_future_for_agent(movers[0]["instance_token"], sample["token"], 1.0, in_agent_frame=False)
    assert fut.shape[1] == 2 and len(fut) >= 1
    assert np.isfinite(helper.get_velocity_for_agent(movers[0]["instance_token"], sample["token"]))
    # LIDAR_TOP: 5-float points; num_lidar_pts equals the devkit's points_in_box count in the sensor frame.
    path, boxes, _ = nusc.get_sample_data(sample["data"][LIDAR_NAME])
    pc = LidarPointCloud.from_file(path)
    assert pc.points.shape[0] == 4 and pc.points.shape[1] > 100
    checked = 0
    for box in boxes:
        ann = nusc.get("sample_annotation", box.token)
        inside = int(points_in_box(box, pc.points[:3], wlh_factor=1.0).sum())
        assert abs(inside - ann["num_lidar_pts"]) <= 2
        checked += ann["num_lidar_pts"] > 0
    assert checked > 0


def test_can_bus(synth_written, synth_nusc):
    from nuscenes.can_bus.can_bus_api import NuScenesCanBus

    can = NuScenesCanBus(dataroot=str(synth_written.dataroot))
    cfg = synth_written.world.cfg
    for scene in synth_nusc.scene:
        pose = can.get_messages(scene["name"], "pose")
        assert len(pose) >= cfg.can_bus_hz * (cfg.scene_seconds - 0.5) - 1
        assert set(pose[0]) == {"utime", "pos", "orientation", "vel", "accel", "rotation_rate"}
        utimes = np.array([m["utime"] for m in pose])
        assert np.all(np.diff(utimes) > 0)
        first = synth_nusc.get("sample", scene["first_sample_token"])
        ego = synth_nusc.get("ego_pose", synth_nusc.get("sample_data", first["data"][LIDAR_NAME])["ego_pose_token"])
        assert pose[0]["utime"] == ego["timestamp"]
        assert np.allclose(pose[0]["pos"][:2], ego["translation"][:2], atol=1e-3)
        assert can.get_messages(scene["name"], "vehicle_monitor")
        route, _ = can.get_pose_and_route(scene["name"], print_warnings=False)
        assert len(route) > 1


def test_meta_file(synth_written):
    meta = json.loads((synth_written.dataroot / "synth_meta.json").read_text())
    names = {s.name for s in synth_written.world.scenes}
    assert set(meta["splits"]["train"]) | set(meta["splits"]["val"]) == names
    assert not set(meta["splits"]["train"]) & set(meta["splits"]["val"])
    assert meta["seed"] == synth_written.world.seed and meta["version"] == synth_written.version
    for scene in synth_written.world.scenes:
        assert meta["scenes"][scene.name]["scenario"] == scene.scenario
        assert scene.scenario in meta["scenes"][scene.name]["tags"]


def test_holdout_scenarios_go_to_val():
    from dima_core.data.synth import SynthWorld
    from synth_fixtures import small_config

    cfg = small_config(scene_seconds=4.0, holdout_scenarios=["overtake"], val_fraction=0.0)
    world = SynthWorld.generate(cfg, 5, 4, ["overtake", "cruise"])
    splits = world.splits()
    assert splits["val"] == [s.name for s in world.scenes if s.scenario == "overtake"]
    assert splits["train"] == [s.name for s in world.scenes if s.scenario == "cruise"]
