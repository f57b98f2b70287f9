"""TensorRT engine cache at unit level (no TensorRT needed): key parts, atomic writes under a crash, hit/build/rebuild
decisions with the builder injected as a plain callable, the build heartbeat and the TensorRT 11 precision policy."""

from __future__ import annotations

import dataclasses
import json
import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dima_core.export.build_progress import BuildHeartbeat
from dima_core.export.engine_cache import EngineCache, EngineKey
from dima_core.export.errors import EngineBuildError
from dima_core.export.io_spec import TensorSpec
from dima_core.export.tensorrt_engine import check_precision, typing_mode

REPO_ROOT = Path(__file__).resolve().parents[1]

KEY = EngineKey(
    tensorrt_version="10.13.0.35",
    gpu_name="NVIDIA H100 80GB HBM3",
    compute_capability="9.0",
    precision="fp16",
    typing="weak",
    inputs=(TensorSpec("images", (1, 6, 3, 144, 256), "float32"), TensorSpec("command", (1,), "int64")),
    onnx_sha256="a" * 64,
)

# One changed value per key part: each must give another digest, i.e. another engine file.
CHANGES = {
    "tensorrt_version": "10.14.1.48",
    "gpu_name": "NVIDIA GeForce RTX 4090",
    "compute_capability": "8.9",
    "precision": "fp32",
    "typing": "strong",
    "inputs": (TensorSpec("images", (1, 6, 3, 360, 640), "float32"), TensorSpec("command", (1,), "int64")),
    "onnx_sha256": "b" * 64,
    "recipe": KEY.recipe + 1,
}


class CountingBuilder:
    """Our build function stand-in: returns distinct plan bytes and counts calls."""

    def __init__(self, delay: float = 0.0) -> None:
        self.calls = 0
        self.delay = delay

    def __call__(self) -> bytes:
        self.calls += 1
        time.sleep(self.delay)
        return f"plan-{self.calls}-".encode() * 100


def test_every_key_part_changes_the_digest():
    assert set(CHANGES) == {f.name for f in dataclasses.fields(EngineKey)}, "a key field is not covered"
    base = KEY.digest()
    digests = {base}
    for name, value in CHANGES.items():
        changed = dataclasses.replace(KEY, **{name: value})
        assert changed.digest() != base, name
        digests.add(changed.digest())
    assert len(digests) == len(CHANGES) + 1
    assert EngineKey.from_dict(json.loads(json.dumps(KEY.to_dict()))) == KEY  # metadata round trip


def test_build_then_hit_then_rebuild_on_key_change(tmp_path):
    cache, build = EngineCache(tmp_path), CountingBuilder()
    path, decision = cache.get_or_build("dima_tiny", KEY, build)
    assert decision.action == "build" and build.calls == 1
    assert path.name == f"dima_tiny.fp16.{KEY.digest()}.engine" and path.read_bytes() == b"plan-1-" * 100
    meta = json.loads(cache.meta_path(path).read_text())
    assert meta["key"] == KEY.to_dict() and meta["engine_bytes"] == path.stat().st_size

    path2, decision = cache.get_or_build("dima_tiny", KEY, build)
    assert (path2, decision.action, build.calls) == (path, "hit", 1)  # no rebuild at the next start

    for name, value in CHANGES.items():
        changed = dataclasses.replace(KEY, **{name: value})
        assert cache.lookup("dima_tiny", changed).action == "build", name
    fp32 = dataclasses.replace(KEY, precision="fp32")
    path3, decision = cache.get_or_build("dima_tiny", fp32, build)
    assert decision.action == "build" and build.calls == 2 and path3 != path
    assert path.exists(), "another precision is another engine, not a replacement"


def test_damaged_cache_entries_are_rebuilt(tmp_path):
    cache, build = EngineCache(tmp_path), CountingBuilder()
    path, _ = cache.get_or_build("m", KEY, build)
    meta = cache.meta_path(path)

    path.write_bytes(path.read_bytes()[:10])  # truncated plan (killed copy)
    assert cache.lookup("m", KEY).action == "rebuild" and "bytes" in cache.lookup("m", KEY).reason
    cache.get_or_build("m", KEY, build)
    assert build.calls == 2 and cache.lookup("m", KEY).action == "hit"

    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF  # same size, different content
    path.write_bytes(bytes(data))
    assert "sha256" in cache.lookup("m", KEY).reason

    path.write_bytes(b"x" * 10)
    meta.unlink()  # engine without metadata: an interrupted build between the two writes
    decision = cache.lookup("m", KEY)
    assert decision.action == "rebuild" and "without its metadata" in decision.reason

    meta.write_text("{not json")
    assert cache.lookup("m", KEY).action == "rebuild"

    # metadata of another key under this key's name (e.g. copied by hand) is not trusted
    cache.get_or_build("m", KEY, build)
    other = json.loads(meta.read_text())
    other["key"]["precision"] = "fp32"
    meta.write_text(json.dumps(other))
    decision = cache.lookup("m", KEY)
    assert decision.action == "rebuild" and "precision" in decision.reason


def test_failed_build_leaves_nothing_and_superseded_engines_are_pruned(tmp_path):
    cache = EngineCache(tmp_path)

    def failing() -> bytes:
        raise EngineBuildError("Could not find any implementation for node (out of memory?)")

    with pytest.raises(EngineBuildError, match="implementation"):
        cache.get_or_build("m", KEY, failing)
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == []
    with pytest.raises(EngineBuildError, match="no data"):
        cache.get_or_build("m", KEY, lambda: b"")

    build = CountingBuilder()
    old, _ = cache.get_or_build("m", KEY, build)
    other_gpu = dataclasses.replace(KEY, gpu_name="NVIDIA A100", onnx_sha256="c" * 64)
    kept, _ = cache.get_or_build("m", other_gpu, build)
    new, _ = cache.get_or_build("m", dataclasses.replace(KEY, onnx_sha256="d" * 64), build)  # re-exported ONNX
    assert new.exists() and kept.exists()
    assert not old.exists() and not cache.meta_path(old).exists(), "superseded engine of the same GPU not removed"


_CRASH_SCRIPT = """
import os, sys
from dima_core.io.atomic import write_atomic

def half_then_die(f):
    f.write(b"N" * 4096)
    f.flush()
    os.fsync(f.fileno())
    os._exit(17)  # killed mid-write: no cleanup handlers run

# One interpreter for both targets (importing torch twice costs seconds on a loaded box): a forked child crashes
# on the first, then this process crashes on the second.
pid = os.fork()
if pid == 0:
    write_atomic(sys.argv[1], half_then_die)
_, status = os.waitpid(pid, 0)
if os.waitstatus_to_exitcode(status) != 17:
    os._exit(1)
write_atomic(sys.argv[2], half_then_die)
"""


def test_crash_mid_write_never_leaves_a_truncated_engine(tmp_path):
    from training_fixtures import subprocess_env

    cache, build = EngineCache(tmp_path), CountingBuilder()
    path, _ = cache.get_or_build("m", KEY, build)
    good = path.read_bytes()
    fresh = cache.path_for("m", dataclasses.replace(KEY, precision="fp32"))
    # over an existing engine, and where none existed yet
    proc = subprocess.run(
        [sys.executable, "-c", _CRASH_SCRIPT, str(path), str(fresh)],
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 17, proc.stderr
    assert path.read_bytes() == good, "the previous engine was damaged by a crashed write"
    assert not fresh.exists(), "a crashed first write left a file at the final name"
    assert list(tmp_path.glob(".*.tmp-*")), "expected the crashed writer's temporary file"
    assert cache.lookup("m", KEY).action == "hit"
    cache.get_or_build("m", dataclasses.replace(KEY, precision="fp32"), build)
    assert not [p for p in tmp_path.glob(".*.tmp-*") if fresh.name in p.name], "stale temporary not cleaned"


def test_concurrent_starts_build_once(tmp_path):
    cache, build = EngineCache(tmp_path), CountingBuilder(delay=0.3)
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(cache.get_or_build("m", KEY, build)[1].action)) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert build.calls == 1 and sorted(results) == ["build", "hit"]


def test_unwritable_cache_dir_fails_before_building(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    build = CountingBuilder()
    with pytest.raises(EngineBuildError, match="engine-dir"):
        EngineCache(blocker / "engines").get_or_build("m", KEY, build)
    assert build.calls == 0


def test_build_heartbeat_repeats_a_loud_line(caplog):
    log = logging.getLogger("test.heartbeat")
    with caplog.at_level(logging.WARNING, logger="test.heartbeat"):
        with BuildHeartbeat("building TensorRT engine m.engine", interval=0.05, logger=log):
            time.sleep(0.3)
    messages = [r.getMessage() for r in caplog.records]
    assert "this can take minutes" in messages[0]
    assert sum("still running" in m for m in messages) >= 2
    assert "done in" in messages[-1]


def test_tensorrt_11_precision_policy():
    assert typing_mode(10) == "weak" and typing_mode(11) == "strong"
    check_precision(10, "fp16", "fp32")  # TensorRT 10: fp16 by builder flag from the fp32 graph
    check_precision(11, "fp32", "fp32")
    with pytest.raises(EngineBuildError, match="tensorrt-cu12<11"):
        check_precision(11, "fp16", "fp32")
    with pytest.raises(EngineBuildError, match="fp32 or fp16"):
        check_precision(10, "int8", "fp32")
