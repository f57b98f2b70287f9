"""Cached index (round trip, stale / mismatched / corrupt files, the `dima data index` command) and the PyTorch
dataset + collate (shapes, normalisation, intrinsics, padding, clear image errors) on a generated world."""

from __future__ import annotations

import argparse
import copy
import pickle

import cv2
import numpy as np
import pytest
import torch

from dima_core.constants import CAMERA_NAMES, FUTURE_STEPS, PAST_STEPS
from dima_core.data.config import IMAGENET_MEAN, IMAGENET_STD, DataConfig
from dima_core.data.dataset import DrivingDataset, ImageLoadError, collate
from dima_core.data.index import INDEX_FORMAT_VERSION, SampleIndex, SampleIndexError

# Session fixtures (the generated world, readers, samples) live in test/data_fixtures.py; registering it as a
# plugin makes every data test module share one world instead of generating its own.


def assert_samples_equal(a, b):
    assert a.token == b.token and a.scene_name == b.scene_name and a.split == b.split and a.tags == b.tags
    assert a.command == b.command and a.ego_status.source == b.ego_status.source
    np.testing.assert_array_equal(a.ego_status.as_vector(), b.ego_status.as_vector())
    for field in ("ego_to_global", "ego_future", "ego_future_yaw", "ego_future_mask", "ego_past", "ego_past_mask"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    for field in ("boxes", "velocities", "labels", "future", "future_yaw", "future_mask", "visibility"):
        np.testing.assert_array_equal(getattr(a.agents, field), getattr(b.agents, field))
    np.testing.assert_array_equal(a.vector_map.polylines, b.vector_map.polylines)
    assert [c.image_path for c in a.cameras] == [c.image_path for c in b.cameras]


def test_index_round_trip(sample_index, tmp_path, synth_world):
    path = sample_index.save(tmp_path / "sub" / "index.pkl")
    assert not list(path.parent.glob(".*.tmp")), "atomic write leaves no temp file behind"
    loaded = SampleIndex.load(path, dataroot=synth_world.dataroot, version=synth_world.version)
    assert len(loaded) == len(sample_index)
    for a, b in zip(sample_index, loaded, strict=True):
        assert_samples_equal(a, b)
    some = sample_index[len(sample_index) // 2]
    assert loaded.get(some.token).token == some.token and some.token in loaded
    prev = loaded.previous(some.token, 2)
    assert prev[0] is None or prev[0].token == some.prev_token


def test_index_rejects_mismatch_stale_and_corrupt(sample_index, tmp_path, synth_world):
    path = sample_index.save(tmp_path / "index.pkl")
    with pytest.raises(SampleIndexError, match="version"):
        SampleIndex.load(path, version="v1.0-trainval")
    with pytest.raises(SampleIndexError, match="dataroot"):
        SampleIndex.load(path, dataroot=tmp_path)
    # Stale: the dataset on disk no longer matches what the index recorded.
    stale = copy.copy(sample_index)
    stale.fingerprint = dict(sample_index.fingerprint)
    key = next(k for k in stale.fingerprint if k.endswith("sample.json"))
    stale.fingerprint[key] = "sha1:0000"
    stale_path = stale.save(tmp_path / "stale.pkl")
    with pytest.raises(SampleIndexError, match="stale.*sample.json"):
        SampleIndex.load(stale_path)
    assert len(SampleIndex.load(stale_path, check_fingerprint=False)) == len(sample_index)
    # Other format version.
    payload = pickle.loads(path.read_bytes())
    payload["format_version"] = INDEX_FORMAT_VERSION + 1
    old = tmp_path / "old.pkl"
    old.write_bytes(pickle.dumps(payload))
    with pytest.raises(SampleIndexError, match="format version"):
        SampleIndex.load(old)
    # Truncated file and a file that is not an index at all.
    broken = tmp_path / "broken.pkl"
    broken.write_bytes(path.read_bytes()[:100])
    with pytest.raises(SampleIndexError, match="corrupt"):
        SampleIndex.load(broken)
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"hello": 1}))
    with pytest.raises(SampleIndexError, match="not a dima sample index"):
        SampleIndex.load(other)
    with pytest.raises(FileNotFoundError):
        SampleIndex.load(tmp_path / "missing.pkl")


def test_data_index_command(synth_world, samples, tmp_path, capsys):
    from dima_core.commands import data_index

    split = samples[-1].split
    parser = argparse.ArgumentParser()
    data_index.add_parser(parser.add_subparsers())
    out = tmp_path / "val.pkl"
    args = parser.parse_args(
        [
            "index",
            "--dataroot",
            str(synth_world.dataroot),
            "--version",
            synth_world.version,
            "--split",
            split,
            "--out",
            str(out),
        ]
    )
    assert args.func(args) == 0
    index = SampleIndex.load(out, dataroot=synth_world.dataroot, version=synth_world.version)
    assert len(index) == sum(s.split == split for s in samples) > 0
    assert {s.split for s in index} == {split} and index.split == split
    assert "wrote" in capsys.readouterr().out
    bad = parser.parse_args(
        [
            "index",
            "--dataroot",
            str(synth_world.dataroot),
            "--version",
            synth_world.version,
            "--split",
            "nope",
            "--out",
            str(tmp_path / "x.pkl"),
        ]
    )
    with pytest.raises(ValueError, match="no scenes"):
        bad.func(bad)


def small_config(**kwargs) -> DataConfig:
    return DataConfig(image_size=(48, 80), max_agents=16, max_map_vectors=24, **kwargs)


def test_dataset_item_and_collate_shapes(sample_index):
    cfg = small_config(num_prev_frames=1)
    ds = DrivingDataset(sample_index, cfg)
    assert len(ds) == len(sample_index)
    i = next(k for k, s in enumerate(sample_index) if s.prev_token)
    batch = collate([ds[0], ds[i]])
    h, w = cfg.image_size
    expected = {
        "images": (2, 6, 3, h, w),
        "intrinsics": (2, 6, 3, 3),
        "cam_to_ego": (2, 6, 4, 4),
        "ego_to_image": (2, 6, 3, 4),
        "ego_status": (2, 4),
        "command": (2,),
        "ego_future": (2, FUTURE_STEPS, 2),
        "ego_future_mask": (2, FUTURE_STEPS),
        "ego_past": (2, PAST_STEPS, 2),
        "agent_boxes": (2, 16, 7),
        "agent_labels": (2, 16),
        "agent_velocities": (2, 16, 2),
        "agent_future": (2, 16, FUTURE_STEPS, 2),
        "agent_future_mask": (2, 16, FUTURE_STEPS),
        "agent_mask": (2, 16),
        "map_polylines": (2, 24, cfg.map_points_per_vector, 2),
        "map_labels": (2, 24),
        "map_mask": (2, 24),
        "prev_images": (2, 1, 6, 3, h, w),
        "prev_ego_to_ego": (2, 1, 4, 4),
        "prev_mask": (2, 1),
    }
    for key, shape in expected.items():
        assert tuple(batch[key].shape) == shape, key
    assert batch["images"].dtype == torch.float32 and batch["command"].dtype == torch.int64
    assert batch["agent_mask"].dtype == torch.bool and torch.isfinite(batch["agent_velocities"]).all()
    assert batch["token"] == [sample_index[0].token, sample_index[i].token]
    assert batch["prev_mask"][1, 0] and (batch["prev_mask"][0, 0] == bool(sample_index[0].prev_token))
    # Padding is marked: labels -1 exactly where the masks are False.
    assert ((batch["agent_labels"] == -1) == ~batch["agent_mask"]).all()
    assert ((batch["map_labels"] == -1) == ~batch["map_mask"]).all()


def test_dataset_normalisation_intrinsics_and_agent_range(sample_index):
    cfg = small_config(image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)  # non-identity, so normalisation is tested
    ds = DrivingDataset(sample_index, cfg)
    item = ds[0]
    sample = sample_index[0]
    cam = sample.cameras[2]
    raw = cv2.cvtColor(cv2.imread(cam.image_path), cv2.COLOR_BGR2RGB)
    resized = cv2.resize(raw, (80, 48), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    expected = (resized - np.array(cfg.image_mean, np.float32)) / np.array(cfg.image_std, np.float32)
    np.testing.assert_allclose(item["images"][2].permute(1, 2, 0).numpy(), expected, atol=1e-5)
    sx, sy = 80 / cam.width, 48 / cam.height
    np.testing.assert_allclose(item["intrinsics"][2].numpy(), np.diag([sx, sy, 1.0]) @ cam.intrinsic, rtol=1e-6)
    # A point in front of the camera projects to the same place, scaled, through ego_to_image.
    point = cam.cam_to_ego @ np.array([0.5, -0.2, 10.0, 1.0])
    uv_full = cam.ego_to_image() @ point
    uv = item["ego_to_image"][2].double().numpy() @ point
    np.testing.assert_allclose(uv[:2] / uv[2], uv_full[:2] / uv_full[2] * [sx, sy], rtol=1e-5)
    # Agents: only those in the perception range, nearest first.
    boxes = item["agent_boxes"][item["agent_mask"]].numpy()
    assert (np.abs(boxes[:, 0]) <= 30).all() and (np.abs(boxes[:, 1]) <= 15).all()
    dist = np.hypot(boxes[:, 0], boxes[:, 1])
    assert (np.diff(dist) >= -1e-6).all()
    labels_only = DrivingDataset(sample_index, cfg, load_images=False)[0]
    assert "images" not in labels_only
    assert torch.equal(labels_only["intrinsics"], item["intrinsics"])


def test_dataset_split_filter(sample_index):
    split = sample_index[-1].split
    ds = DrivingDataset(sample_index, small_config(split=split))
    assert len(ds) == sum(s.split == split for s in sample_index) > 0
    assert all(ds[i]["split"] == split for i in range(0, len(ds), max(1, len(ds) // 3)))


def test_dataset_missing_and_corrupt_images_name_the_file(sample_index, tmp_path):
    broken = copy.deepcopy(sample_index[0])
    missing = tmp_path / "nope.jpg"
    broken.cameras[0].image_path = str(missing)
    index = SampleIndex(samples=[broken], dataroot=sample_index.dataroot, version=sample_index.version)
    with pytest.raises(ImageLoadError, match="nope.jpg.*not found"):
        DrivingDataset(index, small_config())[0]
    garbage = tmp_path / "garbage.jpg"
    garbage.write_bytes(b"definitely not a jpeg")
    broken.cameras[0].image_path = str(garbage)
    with pytest.raises(ImageLoadError, match="garbage.jpg.*corrupt"):
        DrivingDataset(index, small_config())[0]


def test_camera_order_in_batch_follows_constants(sample_index):
    assert [c.name for c in sample_index[0].cameras] == list(CAMERA_NAMES)
