"""The pre-decoded image cache (dima_core/data/image_cache.py): items read from it equal items decoded from the JPEGs
bit for bit, and a cache that does not fit the data or the settings is refused with a message naming why."""

from __future__ import annotations

import dataclasses
import pickle
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from dima_core.cli import main
from dima_core.data.config import IMAGENET_MEAN, IMAGENET_STD, DataConfig
from dima_core.data.dataset import DrivingDataset
from dima_core.data.image_cache import ImageCache, ImageCacheError, build_image_cache
from dima_core.data.index import SampleIndex

SIZE = (45, 80)  # (H, W): the world renders 160 x 90, so every image is resized


def assert_items_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for key in a:
        if isinstance(a[key], torch.Tensor):
            assert a[key].dtype == b[key].dtype and torch.equal(a[key], b[key]), f"{key} differs"
        else:
            assert a[key] == b[key], f"{key} differs"


@pytest.fixture(scope="module")
def cache(sample_index, tmp_path_factory: pytest.TempPathFactory) -> ImageCache:
    return build_image_cache(sample_index, tmp_path_factory.mktemp("cache") / "c", SIZE, "area")


@pytest.mark.parametrize("normalise", ["identity", "imagenet"])
def test_items_from_the_cache_equal_items_from_the_jpegs(sample_index, cache: ImageCache, normalise: str) -> None:
    cfg = DataConfig(image_size=SIZE, num_prev_frames=1, interpolation="area")
    if normalise == "imagenet":
        cfg = dataclasses.replace(cfg, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)
    from_jpeg = DrivingDataset(sample_index, cfg)
    from_cache = DrivingDataset(sample_index, dataclasses.replace(cfg, image_cache=str(cache.path)))
    assert from_cache.image_cache is not None and from_jpeg.image_cache is None
    # the first sample (no previous frame), the second (one), one in the middle, the last; prev_images included
    picks = [0, 1, len(from_jpeg) // 2, len(from_jpeg) - 1]
    for i in picks:
        assert_items_equal(from_jpeg[i], from_cache[i])
    assert bool(from_cache[1]["prev_mask"][0]) and from_cache[1]["prev_images"].abs().sum() > 0


def test_parallel_build_and_pickling(sample_index, cache: ImageCache, tmp_path: Path) -> None:
    parallel = build_image_cache(sample_index, tmp_path / "p", SIZE, "area", workers=2, chunk=7)
    assert parallel.tokens == cache.tokens
    for token in cache.tokens:
        assert np.array_equal(parallel.images(token), cache.images(token))
        assert np.array_equal(parallel.source_hw(token), cache.source_hw(token))
    # DataLoader workers get the dataset pickled: the mapped pixels stay behind, each process maps the file itself.
    cache.images(cache.tokens[0])
    blob = pickle.dumps(cache)
    assert len(blob) < cache.images(cache.tokens[0]).nbytes * len(cache) / 4
    assert np.array_equal(pickle.loads(blob).images(cache.tokens[-1]), cache.images(cache.tokens[-1]))


def test_a_cache_for_other_settings_or_data_is_refused(sample_index, cache: ImageCache, tmp_path: Path) -> None:
    with pytest.raises(ImageCacheError, match=r"image_size \(\[45, 80\] in the cache, \[72, 128\] wanted\)"):
        DrivingDataset(sample_index, DataConfig(image_size=(72, 128), image_cache=str(cache.path)))
    with pytest.raises(ImageCacheError, match="interpolation"):
        DrivingDataset(sample_index, DataConfig(image_size=SIZE, interpolation="linear", image_cache=str(cache.path)))
    other_world = dataclasses.replace(sample_index, fingerprint={**sample_index.fingerprint, "v1.0-x/scene.json": "x"})
    with pytest.raises(ImageCacheError, match=r"dataset tables \(v1.0-x/scene.json\).*dima data cache --force"):
        ImageCache.open(cache.path, index=other_world, image_size=SIZE, interpolation="area")
    fewer = dataclasses.replace(sample_index, samples=sample_index.samples[:3])
    with pytest.raises(ImageCacheError, match="samples the index .* lacks"):
        ImageCache.open(cache.path, index=fewer, image_size=SIZE, interpolation="area")
    with pytest.raises(ImageCacheError, match="not found: build it with `dima data cache`"):
        ImageCache.open(tmp_path / "nothing")
    # Building over a cache of another size needs --force; the rebuilt cache then has the new size.
    target = tmp_path / "c"
    shutil.copytree(cache.path, target)
    with pytest.raises(ImageCacheError, match="holds an image cache for other data .*image_size"):
        build_image_cache(sample_index, target, (36, 64), "area")
    rebuilt = build_image_cache(sample_index, target, (36, 64), "area", overwrite=True)
    assert rebuilt.image_size == (36, 64) and rebuilt.images(rebuilt.tokens[0]).shape == (6, 3, 36, 64)


def test_re_rendered_images_invalidate_the_cache(sample_index, tmp_path: Path) -> None:
    """Same tables, different JPEGs (e.g. the world re-rendered at another quality): the source digest changes."""
    samples = []
    for sample in sample_index.samples[:2]:
        cameras = []
        for cam in sample.cameras:
            copy = tmp_path / "jpg" / f"{sample.token}_{cam.name}.jpg"
            copy.parent.mkdir(exist_ok=True)
            shutil.copy(cam.image_path, copy)
            cameras.append(dataclasses.replace(cam, image_path=str(copy)))
        samples.append(dataclasses.replace(sample, cameras=cameras, prev_token=""))
    index = SampleIndex(
        samples=samples, dataroot=str(tmp_path), version=sample_index.version, fingerprint=sample_index.fingerprint
    )
    cache = build_image_cache(index, tmp_path / "cache", SIZE, "area")
    ImageCache.open(cache.path, index=index, image_size=SIZE, interpolation="area")  # fits
    path = samples[1].cameras[2].image_path
    image = cv2.imread(path)
    cv2.imwrite(path, image, [cv2.IMWRITE_JPEG_QUALITY, 20])
    with pytest.raises(ImageCacheError, match="source images"):
        ImageCache.open(cache.path, index=index, image_size=SIZE, interpolation="area")


def test_data_cache_command_and_training_build_on_first_use(synth_world, tmp_path: Path) -> None:
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage1 import load_image_cache

    index_path = tmp_path / "index.pkl"
    assert (
        main(
            [
                "data",
                "index",
                "--dataroot",
                str(synth_world.dataroot),
                "--version",
                synth_world.version,
                "--out",
                str(index_path),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "data",
                "cache",
                "--index",
                str(index_path),
                "--image-size",
                *map(str, SIZE),
                "--out",
                str(tmp_path / "cli"),
            ]
        )
        == 0
    )
    index = SampleIndex.load(index_path)
    made = ImageCache.open(tmp_path / "cli", index=index, image_size=SIZE, interpolation="area")
    assert len(made) == len(index)
    # Training with data.dataset.image_cache set to a path that does not exist yet builds it there once.
    data = DataConfig(
        dataroot=str(synth_world.dataroot),
        version=synth_world.version,
        image_size=SIZE,
        image_cache=str(tmp_path / "auto"),
    )
    built = load_image_cache(index, data, DistContext())
    assert built.tokens == made.tokens
    assert np.array_equal(built.images(built.tokens[5]), made.images(made.tokens[5]))
    smaller = dataclasses.replace(data, image_size=(36, 64))
    with pytest.raises(ImageCacheError, match="image_size"):
        load_image_cache(index, smaller, DistContext())
    # The run directory's own cache (data.cache_images) is rebuilt instead: nobody else uses it.
    assert load_image_cache(index, smaller, DistContext(), rebuild_stale=True).image_size == (36, 64)
