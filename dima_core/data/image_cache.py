"""Pre-decoded training images: every camera JPEG of a sample index decoded once, resized to the network input.

Training reads each image once per epoch; decoding a JPEG and resizing it costs ~1.5 ms per camera (measured on the
2-core machine at 192x108 -> 128x72), i.e. ~9 ms per 6-camera sample, every epoch. The cache does that work once and
stores the result as ``uint8`` at model resolution, so an item costs a memory-mapped read plus the normalisation.

Layout of a cache (a directory)::

    images.npy     uint8 (N, 6, 3, H, W) in NumPy's .npy format, memory-mapped when read; row r is the r-th
                   token of cache.json, cameras in CAMERA_NAMES order, RGB, channels first
    source_hw.npy  int32 (N, 6, 2): (height, width) of each decoded source JPEG (the intrinsics' resize factors)
    cache.json     {"magic", "format_version", "key": {...}, "tokens": [...], "created_unix", "build_seconds"}

The pixels are exactly those of the JPEG path: :func:`dima_core.data.images.resize_image` (``cv2.resize`` with the
configured interpolation, the first half of ``prepare_image``) applied to :func:`~dima_core.data.images.load_image`,
before normalisation; the dataset normalises them with the same NumPy expression as ``prepare_image``
(test/test_image_cache.py checks items from the cache equal items from the JPEGs, bit for bit).

The key (:func:`cache_key`) names everything the pixels depend on: the format version, the dataset (dataroot,
version and the index's fingerprint of the devkit tables), the image size and interpolation, the camera order, and a
digest of every source image's path and byte size. Opening a cache with a key that differs raises
:class:`ImageCacheError` naming what changed and how to rebuild; :func:`build_image_cache` refuses to overwrite a
cache of another key unless asked to.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dima_core.constants import CAMERA_NAMES

if TYPE_CHECKING:
    from dima_core.data.index import SampleIndex
    from dima_core.data.sample import DrivingSample

log = logging.getLogger(__name__)

CACHE_MAGIC = "dima-image-cache"
CACHE_FORMAT_VERSION = 1
IMAGES_FILE = "images.npy"
SOURCE_HW_FILE = "source_hw.npy"
META_FILE = "cache.json"


class ImageCacheError(ValueError):
    """A cache is missing, corrupt, of another format, or was built for other data or another image size."""


def _relative(path: str, dataroot: str) -> str:
    """``path`` relative to the dataroot when it lies inside it (a moved dataroot keeps its digest)."""
    rel = os.path.relpath(path, dataroot)
    return path if rel.startswith("..") else rel


def images_digest(samples: Iterable[DrivingSample], dataroot: str) -> str:
    """SHA-1 over (path relative to the dataroot, byte size) of every camera image, in row and camera order.

    A re-rendered world under the same tables changes its JPEG sizes; a missing image is an error here rather than
    when its row is read.
    """
    digest = hashlib.sha1()
    for sample in samples:
        for cam in sample.cameras:
            try:
                size = os.stat(cam.image_path).st_size
            except FileNotFoundError:
                raise ImageCacheError(f"camera image {cam.image_path} (sample {sample.token}) not found") from None
            digest.update(f"{_relative(cam.image_path, dataroot)}|{size}\n".encode())
    return digest.hexdigest()


def _check_cameras(sample: DrivingSample) -> None:
    names = tuple(cam.name for cam in sample.cameras)
    if names != CAMERA_NAMES:
        raise ImageCacheError(f"sample {sample.token} has cameras {names}, the cache stores {CAMERA_NAMES} in order")


def cache_key(
    index: SampleIndex, image_size: Sequence[int], interpolation: str, tokens: Sequence[str] | None = None
) -> dict[str, Any]:
    """What a cache's pixels depend on (module docstring); ``tokens`` (default: the whole index) are its rows."""
    tokens = list(index.tokens()) if tokens is None else list(tokens)
    samples = [index.get(token) for token in tokens]
    for sample in samples:
        _check_cameras(sample)
    return {
        "format_version": CACHE_FORMAT_VERSION,
        "dataroot": index.dataroot,
        "version": index.version,
        "fingerprint": dict(index.fingerprint),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "interpolation": interpolation,
        "cameras": list(CAMERA_NAMES),
        "images": images_digest(samples, index.dataroot),
    }


def _key_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    out = []
    for name in sorted(set(saved) | set(wanted)):
        if saved.get(name) == wanted.get(name):
            continue
        if name == "fingerprint":
            a, b = saved.get(name) or {}, wanted.get(name) or {}
            changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
            out.append(f"dataset tables ({', '.join(changed)})")
        elif name == "images":
            out.append("source images (paths or file sizes)")
        else:
            out.append(f"{name} ({saved.get(name)!r} in the cache, {wanted.get(name)!r} wanted)")
    return out


def _decode_rows(
    paths: Sequence[Sequence[str]], tokens: Sequence[str], image_size: Sequence[int], interpolation: str
) -> tuple[np.ndarray, np.ndarray]:
    """``(pixels (n, 6, 3, H, W) uint8, source_hw (n, 6, 2) int32)`` of ``n`` samples' camera images."""
    from dima_core.data.images import load_image, resize_image

    height, width = int(image_size[0]), int(image_size[1])
    pixels = np.empty((len(paths), len(CAMERA_NAMES), 3, height, width), np.uint8)
    source_hw = np.empty((len(paths), len(CAMERA_NAMES), 2), np.int32)
    for r, (row, token) in enumerate(zip(paths, tokens, strict=True)):
        for c, path in enumerate(row):
            image = load_image(path, token)
            source_hw[r, c] = image.shape[:2]
            resized, _, _ = resize_image(image, (height, width), interpolation)
            pixels[r, c] = resized.transpose(2, 0, 1)
    return pixels, source_hw


def _decode_chunk(args: tuple[str, int, list[list[str]], list[str], list[int], str]) -> tuple[int, np.ndarray]:
    """Worker: decode rows ``start..`` into the shared memory-mapped file; returns their source sizes."""
    images_path, start, paths, tokens, image_size, interpolation = args
    import cv2

    cv2.setNumThreads(1)  # one process per core already
    pixels, source_hw = _decode_rows(paths, tokens, image_size, interpolation)
    images = np.load(images_path, mmap_mode="r+")
    images[start : start + len(paths)] = pixels
    images.flush()
    del images
    return start, source_hw


def build_image_cache(
    index: SampleIndex,
    out: str | os.PathLike,
    image_size: Sequence[int],
    interpolation: str = "area",
    workers: int = 1,
    overwrite: bool = False,
    progress: bool = False,
    chunk: int = 64,
) -> ImageCache:
    """Decode every camera image of ``index`` once into a cache at ``out`` (written to a temporary directory next to
    it, then renamed into place, so a reader never sees a partial cache).

    An existing cache with the same key is kept as it is (returned); one with another key is an error unless
    ``overwrite``. ``workers`` > 1 decodes in that many processes.
    """
    from dima_core.data.images import INTERPOLATIONS

    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"unknown interpolation {interpolation!r}: use {', '.join(INTERPOLATIONS)}")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out = Path(out)
    tokens = list(index.tokens())
    if not tokens:
        raise ImageCacheError(f"the index of {index.dataroot} has no samples: nothing to cache")
    key = cache_key(index, image_size, interpolation, tokens)
    if (out / META_FILE).is_file():
        try:
            existing = ImageCache.open(out)
        except ImageCacheError as exc:
            if not overwrite:
                raise ImageCacheError(
                    f"{out} holds an unreadable image cache ({exc}); remove it or overwrite it "
                    "(`dima data cache --force`)"
                ) from exc
        else:
            differences = _key_differences(existing.key, key)
            if not differences:
                log.info("image cache %s is up to date (%d samples)", out, len(existing))
                return existing
            if not overwrite:
                raise ImageCacheError(
                    f"{out} holds an image cache for other data ({'; '.join(differences)}): "
                    "rebuild it with `dima data cache --force` or choose another --out"
                )
    elif out.exists() and any(out.iterdir()):
        raise ImageCacheError(f"{out} exists and is not an image cache: choose an empty or new directory")

    height, width = int(image_size[0]), int(image_size[1])
    start_time = time.perf_counter()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        images_path = tmp / IMAGES_FILE
        images = np.lib.format.open_memmap(
            images_path, mode="w+", dtype=np.uint8, shape=(len(tokens), len(CAMERA_NAMES), 3, height, width)
        )
        source_hw = np.zeros((len(tokens), len(CAMERA_NAMES), 2), np.int32)
        paths = [[cam.image_path for cam in index.get(token).cameras] for token in tokens]
        starts = list(range(0, len(tokens), chunk))
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(tokens), desc="image cache", unit="sample")
        if workers == 1:
            for start in starts:
                pixels, hw = _decode_rows(
                    paths[start : start + chunk], tokens[start : start + chunk], image_size, interpolation
                )
                images[start : start + len(pixels)] = pixels
                source_hw[start : start + len(pixels)] = hw
                if bar is not None:
                    bar.update(len(pixels))
            images.flush()
            del images
        else:
            images.flush()
            del images  # the workers write through their own mappings
            import multiprocessing

            # spawn, not fork: the parent has torch's and OpenCV's thread pools, which a forked child inherits broken
            jobs = [
                (
                    str(images_path),
                    start,
                    paths[start : start + chunk],
                    tokens[start : start + chunk],
                    [height, width],
                    interpolation,
                )
                for start in starts
            ]
            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
                for start, hw in pool.map(_decode_chunk, jobs):
                    source_hw[start : start + len(hw)] = hw
                    if bar is not None:
                        bar.update(len(hw))
        if bar is not None:
            bar.close()
        np.save(tmp / SOURCE_HW_FILE, source_hw)
        seconds = time.perf_counter() - start_time
        meta = {
            "magic": CACHE_MAGIC,
            "format_version": CACHE_FORMAT_VERSION,
            "key": key,
            "tokens": tokens,
            "created_unix": time.time(),
            "build_seconds": seconds,
        }
        (tmp / META_FILE).write_text(json.dumps(meta))
        # Replace: the old cache (if any) moves aside first, so `out` is always either complete or absent.
        old = None
        if out.exists():
            old = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, old)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    log.info(
        "image cache %s: %d samples x %d cameras at %dx%d (%s) in %.1f s",
        out,
        len(tokens),
        len(CAMERA_NAMES),
        width,
        height,
        interpolation,
        seconds,
    )
    return ImageCache.open(out)


class ImageCache:
    """A built cache, opened for reading. The pixel file is memory-mapped lazily, in the process that reads it, so a
    dataset holding a cache pickles small into DataLoader workers.

    Use :meth:`open`; ``images(token)`` is ``(6, 3, H, W) uint8``, ``source_hw(token)`` ``(6, 2) int``.
    """

    def __init__(self, path: Path, key: dict[str, Any], tokens: list[str], source_hw: np.ndarray) -> None:
        self.path = path
        self.key = key
        self.tokens = tokens
        self._rows = {token: r for r, token in enumerate(tokens)}
        self._source_hw = source_hw
        self._images: np.ndarray | None = None
        self._checked: set[tuple[Any, ...]] = set()

    @staticmethod
    def open(
        path: str | os.PathLike,
        index: SampleIndex | None = None,
        image_size: Sequence[int] | None = None,
        interpolation: str | None = None,
        tokens: Sequence[str] | None = None,
    ) -> ImageCache:
        """Open and validate a cache.

        With ``index`` (and ``image_size``, ``interpolation``), the cache must have been built from that dataset,
        at that size, with that interpolation, and hold every sample in ``tokens`` (default: the whole index);
        otherwise :class:`ImageCacheError` says what differs and how to rebuild.
        """
        path = Path(path)
        meta_path = path / META_FILE
        if not meta_path.is_file():
            raise ImageCacheError(f"image cache {path} not found: build it with `dima data cache`")
        try:
            meta = json.loads(meta_path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ImageCacheError(f"image cache {path} is corrupt ({META_FILE}: {exc})") from exc
        if not isinstance(meta, dict) or meta.get("magic") != CACHE_MAGIC:
            raise ImageCacheError(f"{path} is not a dima image cache")
        if meta.get("format_version") != CACHE_FORMAT_VERSION:
            raise ImageCacheError(
                f"image cache {path} has format version {meta.get('format_version')}, this code "
                f"reads {CACHE_FORMAT_VERSION}: rebuild it with `dima data cache --force`"
            )
        try:
            source_hw = np.load(path / SOURCE_HW_FILE)
            header = np.load(path / IMAGES_FILE, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise ImageCacheError(f"image cache {path} is corrupt or incomplete ({exc})") from exc
        key, cached_tokens = meta["key"], list(meta["tokens"])
        height, width = key["image_size"]
        expected = (len(cached_tokens), len(CAMERA_NAMES), 3, height, width)
        if header.dtype != np.uint8 or header.shape != expected or source_hw.shape != (*expected[:2], 2):
            raise ImageCacheError(
                f"image cache {path} is corrupt: {IMAGES_FILE} is {header.dtype} {header.shape}, "
                f"{SOURCE_HW_FILE} {source_hw.shape}; {META_FILE} describes {expected}"
            )
        del header
        cache = ImageCache(path, key, cached_tokens, source_hw)
        if index is not None:
            if image_size is None or interpolation is None:
                raise ValueError("ImageCache.open: checking against an index needs image_size and interpolation")
            cache.check(index, image_size, interpolation, tokens)
        return cache

    def check(
        self, index: SampleIndex, image_size: Sequence[int], interpolation: str, tokens: Sequence[str] | None = None
    ) -> None:
        """Raise :class:`ImageCacheError` unless this cache holds ``tokens`` of ``index`` as the dataset wants them.

        A check that passed is remembered (per index object, size, interpolation and tokens): the train and val
        datasets of one run share the cache without hashing the image files again.
        """
        wanted_tokens = list(index.tokens()) if tokens is None else list(tokens)
        memo = (
            id(index),
            len(index),
            int(image_size[0]),
            int(image_size[1]),
            interpolation,
            hash(tuple(wanted_tokens)),
        )
        if memo in self._checked:
            return
        missing = [t for t in wanted_tokens if t not in self._rows]
        # The digest covers the cache's own rows: the key is compared over the same samples it was built from.
        own = [t for t in self.tokens if t in index]
        if len(own) != len(self.tokens):
            missing_in_index = len(self.tokens) - len(own)
            raise ImageCacheError(
                f"image cache {self.path} holds {missing_in_index} samples the index of {index.dataroot} lacks: it was "
                f"built from other data; rebuild it with `dima data cache --force`"
            )
        differences = _key_differences(self.key, cache_key(index, image_size, interpolation, self.tokens))
        if differences:
            raise ImageCacheError(
                f"image cache {self.path} was built for other data or settings ({'; '.join(differences)}): rebuild it "
                "with `dima data cache --force` (or point data.dataset.image_cache elsewhere)"
            )
        if missing:
            raise ImageCacheError(
                f"image cache {self.path} lacks {len(missing)} of the {len(wanted_tokens)} samples "
                f"needed (e.g. {missing[0]}): rebuild it from the full index"
            )
        self._checked.add(memo)

    def __len__(self) -> int:
        return len(self.tokens)

    def __contains__(self, token: object) -> bool:
        return token in self._rows

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_images"] = None  # each process maps the file itself
        return state

    @property
    def image_size(self) -> tuple[int, int]:
        height, width = self.key["image_size"]
        return int(height), int(width)

    def _row(self, token: str) -> int:
        try:
            return self._rows[token]
        except KeyError:
            raise KeyError(f"sample {token} is not in the image cache {self.path}") from None

    def images(self, token: str) -> np.ndarray:
        """``(6, 3, H, W) uint8`` resized RGB of the sample's cameras (a read-only view of the mapped file)."""
        if self._images is None:
            self._images = np.load(self.path / IMAGES_FILE, mmap_mode="r")
        return self._images[self._row(token)]

    def source_hw(self, token: str) -> np.ndarray:
        """``(6, 2)`` (height, width) of the sample's source JPEGs."""
        return self._source_hw[self._row(token)]


__all__ = [
    "CACHE_FORMAT_VERSION",
    "ImageCache",
    "ImageCacheError",
    "build_image_cache",
    "cache_key",
    "images_digest",
]
