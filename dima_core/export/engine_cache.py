"""TensorRT engine cache: a key over everything that makes a plan valid, atomic writes, hit/build/rebuild decisions.

A serialized TensorRT plan is only valid for the TensorRT version and GPU architecture it was built with, and only
means what was asked for if precision, typing mode, input shapes and the ONNX file are the ones it was built from.
Users of other stacks hit each of these: engines rebuilt at every start (cache not persisted), "version tag does not
match" after a TensorRT or GPU change, an fp32 engine served for an fp16 request (cache keyed by path only), and a
truncated plan left by a killed build that poisons every later start (research notes, section 6). Hence:

- :class:`EngineKey` holds TensorRT version, GPU name, compute capability, precision, typing mode, input
  names/shapes/dtypes, the ONNX sha256 and :data:`BUILD_RECIPE_VERSION` (our builder settings); its digest is in
  the file name ``<onnx stem>.<precision>.<digest16>.engine``, and the full key is in ``<engine>.json`` next to it,
  so any change of any part is a different file, i.e. a build, never a stale hit.
- :meth:`EngineCache.lookup` is a *hit* only when the engine and its metadata exist, the metadata's key equals
  the requested key, and the engine's size and sha256 equal the recorded ones; anything else is *build* (nothing
  there) or *rebuild* (something there, with the reason logged).
- Plans and metadata are written through :func:`~dima_core.io.atomic.write_atomic` (temporary file in the
  same directory, fsync, ``os.replace``, directory fsync): a build killed at any point leaves no file at the final
  name. The engine is written before its metadata, so a crash between the two reads as "rebuild", never as a hit.
- Builds of one key are serialised by an ``fcntl`` lock: two nodes starting together build once; the second waits
  and then hits.
- The builder is a plain callable ``() -> bytes`` (TensorRT in production, anything in tests), so the decisions are
  unit-tested on machines without TensorRT.

Workspace size is deliberately *not* in the key: it bounds the builder's scratch memory, and any plan it produced is
valid; rebuilding for it would cost minutes for nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from dima_core.export.errors import EngineBuildError
from dima_core.export.io_spec import TensorSpec
from dima_core.io.atomic import write_atomic

log = logging.getLogger(__name__)

META_FORMAT = "dima-engine-cache"
# Bump when the builder's settings change (flags, tactic sources, ...): every cached engine is then rebuilt.
BUILD_RECIPE_VERSION = 1
ENV_ENGINE_DIR = "DIMA_ENGINE_CACHE"


@dataclass(frozen=True)
class EngineKey:
    """Everything that makes a cached plan valid for a request; see the module docstring."""

    tensorrt_version: str
    gpu_name: str
    compute_capability: str  # "major.minor", e.g. "9.0"
    precision: Literal["fp32", "fp16"]
    typing: Literal["weak", "strong"]  # TensorRT network typing mode (strong is the only one in TensorRT >= 11)
    inputs: tuple[TensorSpec, ...]
    onnx_sha256: str
    recipe: int = BUILD_RECIPE_VERSION

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["inputs"] = [s.to_dict() for s in self.inputs]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EngineKey:
        values = dict(data)
        values["inputs"] = tuple(TensorSpec.from_dict(s) for s in values["inputs"])
        return cls(**values)

    def digest(self) -> str:
        """16 hex characters of the sha256 of the canonical JSON of the key (collisions are not a concern here)."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CacheDecision:
    action: Literal["hit", "build", "rebuild"]
    reason: str
    path: Path


def default_engine_dir() -> Path:
    """``$DIMA_ENGINE_CACHE``, else ``$XDG_CACHE_HOME/dima/engines``, else ``~/.cache/dima/engines``.

    Not next to the ONNX file: models are often installed read-only (a ROS share directory, a container layer), and
    an unwritable engine path is the classic "engine rebuilt at every start".
    """
    if os.environ.get(ENV_ENGINE_DIR):
        return Path(os.environ[ENV_ENGINE_DIR]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "dima" / "engines"


def _sha256_file(path: Path) -> str:
    from dima_core.export.sidecar import file_sha256

    return file_sha256(path)


class EngineCache:
    """A directory of ``<stem>.<precision>.<digest>.engine`` plans with ``.json`` metadata."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_engine_dir()

    def ensure_writable(self) -> None:
        """Create the directory, or fail now with the fix, rather than after a minutes-long build."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EngineBuildError(
                f"engine cache directory {self.directory} cannot be created ({exc}); pass a "
                f"writable --engine-dir or set {ENV_ENGINE_DIR}"
            ) from exc
        if not os.access(self.directory, os.W_OK | os.X_OK):
            raise EngineBuildError(
                f"engine cache directory {self.directory} is not writable: engines could not be "
                f"persisted and would be rebuilt at every start; pass a writable --engine-dir or "
                f"set {ENV_ENGINE_DIR}"
            )

    def path_for(self, stem: str, key: EngineKey) -> Path:
        return self.directory / f"{stem}.{key.precision}.{key.digest()}.engine"

    @staticmethod
    def meta_path(engine_path: Path) -> Path:
        return engine_path.with_name(engine_path.name + ".json")

    def lookup(self, stem: str, key: EngineKey) -> CacheDecision:
        """Hit, build or rebuild for ``key`` (reads files only; never builds)."""
        path = self.path_for(stem, key)
        meta_path = self.meta_path(path)
        if not path.exists() and not meta_path.exists():
            return CacheDecision("build", "no cached engine for this key", path)
        if not path.exists():
            return CacheDecision("rebuild", "engine metadata present but the engine file is missing", path)
        if not meta_path.exists():
            return CacheDecision("rebuild", "engine file present without its metadata (interrupted build?)", path)
        try:
            meta = json.loads(meta_path.read_text())
            cached = EngineKey.from_dict(meta["key"])
        except (OSError, ValueError, KeyError, TypeError) as exc:
            return CacheDecision("rebuild", f"unreadable engine metadata ({type(exc).__name__}: {exc})", path)
        if meta.get("format") != META_FORMAT or cached != key:
            changed = sorted(k for k, v in key.to_dict().items() if cached.to_dict().get(k) != v)
            return CacheDecision("rebuild", f"cached engine was built for a different {changed}", path)
        size = path.stat().st_size
        if size != meta.get("engine_bytes"):
            return CacheDecision(
                "rebuild",
                f"engine file has {size} bytes, metadata records {meta.get('engine_bytes')} (truncated or replaced)",
                path,
            )
        if _sha256_file(path) != meta.get("engine_sha256"):
            return CacheDecision(
                "rebuild", "engine file sha256 differs from its metadata (corrupted or replaced)", path
            )
        return CacheDecision("hit", "cached engine matches every key part", path)

    @contextlib.contextmanager
    def _lock(self, path: Path) -> Iterator[None]:
        """Exclusive lock per engine path across processes (no-op where fcntl does not exist)."""
        try:
            import fcntl
        except ImportError:  # not POSIX: concurrent builds stay correct (atomic rename), just duplicated
            yield
            return
        with open(path.with_name(f".{path.name}.lock"), "a+b") as handle:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def get_or_build(
        self, stem: str, key: EngineKey, build: Callable[[], bytes], extra_meta: dict[str, Any] | None = None
    ) -> tuple[Path, CacheDecision]:
        """The cached engine for ``key``, building it with ``build()`` on a miss; returns (path, decision)."""
        self.ensure_writable()
        path = self.path_for(stem, key)
        with self._lock(path):
            decision = self.lookup(stem, key)  # re-checked under the lock: another process may have just built it
            if decision.action == "hit":
                log.info("TensorRT engine cache hit: %s", path)
                return path, decision
            log.warning("TensorRT engine cache %s for %s: %s", decision.action, path.name, decision.reason)
            t0 = time.perf_counter()
            data = build()
            if not data:
                raise EngineBuildError(f"the engine builder returned no data for {path.name}")
            data = bytes(data)
            write_atomic(path, lambda f: f.write(data))
            meta = {
                "format": META_FORMAT,
                "key": key.to_dict(),
                "digest": key.digest(),
                "engine_bytes": len(data),
                "engine_sha256": hashlib.sha256(data).hexdigest(),
                "build_seconds": round(time.perf_counter() - t0, 3),
                "built_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                **(extra_meta or {}),
            }
            text = json.dumps(meta, indent=2) + "\n"
            write_atomic(self.meta_path(path), lambda f: f.write(text.encode()))
            self._prune_superseded(stem, key, path)
        return path, decision

    def _prune_superseded(self, stem: str, key: EngineKey, keep: Path) -> None:
        """Delete older engines of the same model and precision built for the same GPU model.

        Engines for other GPU models stay: one cache directory may be shared by machines with different GPUs.
        """
        for other in self.directory.glob(f"{stem}.{key.precision}.*.engine"):
            if other == keep:
                continue
            meta_path = self.meta_path(other)
            try:
                gpu = json.loads(meta_path.read_text())["key"]["gpu_name"]
            except (OSError, ValueError, KeyError, TypeError):
                gpu = key.gpu_name  # no readable metadata: an orphan of an interrupted build, safe to drop
            if gpu == key.gpu_name:
                log.info("removing superseded engine %s", other.name)
                other.unlink(missing_ok=True)
                meta_path.unlink(missing_ok=True)


__all__ = [
    "BUILD_RECIPE_VERSION",
    "CacheDecision",
    "ENV_ENGINE_DIR",
    "EngineCache",
    "EngineKey",
    "default_engine_dir",
]
