"""Cached sample index: every DrivingSample of a dataset (no pixels) in one versioned file.

Training epochs read this instead of re-querying the devkit. The file is a pickle of a plain dict::

    {"magic": "dima-sample-index", "format_version": int, "schema": {...}, "dataroot": str, "version": str,
     "split": str | None, "fingerprint": {...}, "created_unix": float, "samples": [DrivingSample, ...]}

``schema`` lists the field names of the sample dataclasses, so an index written before a contract change is
reported as stale rather than unpickled into objects with missing attributes. ``fingerprint`` records the size of
each devkit table and a hash of the small tables that define the sample set (scene, sample, ego_pose...), plus the
split/tag side files; loading compares it with the dataroot to catch a dataset regenerated under the same path.
Pickle executes code on load: only load index files you wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import pickle
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from dima_core.data.sample import AgentAnnotations, CameraView, DrivingSample, EgoStatus, VectorMap
from dima_core.data.splits import SYNTH_META_FILENAME

if TYPE_CHECKING:
    from dima_core.data.nuscenes_reader import NuScenesReader

INDEX_MAGIC = "dima-sample-index"
INDEX_FORMAT_VERSION = 1
# Tables whose content defines which samples exist and where the ego is; hashed (the rest: sizes only, because
# sample_annotation.json of v1.0-trainval is about 0.5 GB).
_HASHED_TABLES = ("scene.json", "sample.json", "log.json", "calibrated_sensor.json", "ego_pose.json")
_HASH_LIMIT_BYTES = 64 * 1024 * 1024


class SampleIndexError(ValueError):
    """An index file is corrupt, of another format, stale, or was built from another dataset."""


def schema_signature() -> dict[str, list[str]]:
    """Field names of the sample dataclasses: part of the index format."""
    classes = (DrivingSample, CameraView, AgentAnnotations, VectorMap, EgoStatus)
    return {cls.__name__: [f.name for f in dataclasses.fields(cls)] for cls in classes}


def _file_digest(path: Path) -> str:
    digest = hashlib.sha1()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_fingerprint(
    dataroot: str | os.PathLike, version: str, extra_files: Sequence[str | os.PathLike] = ()
) -> dict[str, str]:
    """Sizes of all ``<dataroot>/<version>/*.json`` tables, hashes of the defining ones and of side files."""
    root = Path(dataroot)
    out: dict[str, str] = {}
    table_dir = root / version
    for table in sorted(table_dir.glob("*.json")):
        size = table.stat().st_size
        key = f"{version}/{table.name}"
        if table.name in _HASHED_TABLES and size <= _HASH_LIMIT_BYTES:
            out[key] = f"sha1:{_file_digest(table)}"
        else:
            out[key] = f"size:{size}"
    for side in [root / SYNTH_META_FILENAME, *map(Path, extra_files)]:
        if side.is_file():
            out[str(side)] = f"sha1:{_file_digest(side)}"
    return out


@dataclass
class SampleIndex:
    """All samples of a dataset (or of one split), with their provenance."""

    samples: list[DrivingSample]
    dataroot: str
    version: str
    split: str | None = None
    fingerprint: dict[str, str] = field(default_factory=dict)
    created_unix: float = 0.0
    extra_files: list[str] = field(default_factory=list)  # token-list files the tags came from

    def __post_init__(self) -> None:
        self._by_token = {s.token: i for i, s in enumerate(self.samples)}

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> DrivingSample:
        return self.samples[i]

    def __iter__(self) -> Iterator[DrivingSample]:
        return iter(self.samples)

    def __contains__(self, token: object) -> bool:
        return token in self._by_token

    def get(self, token: str) -> DrivingSample:
        if token not in self._by_token:
            raise KeyError(f"sample {token} is not in the index of {self.dataroot} ({self.version})")
        return self.samples[self._by_token[token]]

    def tokens(self, split: str | None = None) -> list[str]:
        return [s.token for s in self.samples if split is None or s.split == split]

    def previous(self, token: str, count: int) -> list[DrivingSample | None]:
        """The ``count`` previous keyframes of ``token``, most recent first; None past the scene start."""
        out: list[DrivingSample | None] = []
        current: DrivingSample | None = self.get(token)
        for _ in range(count):
            prev = current.prev_token if current is not None else ""
            current = self.samples[self._by_token[prev]] if prev and prev in self._by_token else None
            out.append(current)
        return out

    # ------------------------------------------------------------------ persistence

    def save(self, path: str | os.PathLike) -> Path:
        """Write atomically (temp file in the same folder + os.replace): readers never see a partial index."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "magic": INDEX_MAGIC,
            "format_version": INDEX_FORMAT_VERSION,
            "schema": schema_signature(),
            "dataroot": self.dataroot,
            "version": self.version,
            "split": self.split,
            "fingerprint": self.fingerprint,
            "extra_files": list(self.extra_files),
            "created_unix": self.created_unix or time.time(),
            "samples": self.samples,
        }
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as fh:
                pickle.dump(payload, fh, protocol=pickle.HIGHEST_PROTOCOL)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return path

    @staticmethod
    def load(
        path: str | os.PathLike,
        *,
        dataroot: str | os.PathLike | None = None,
        version: str | None = None,
        check_fingerprint: bool = True,
    ) -> SampleIndex:
        """Load and validate an index.

        Args:
            path: the index file.
            dataroot, version: when given, the index must have been built from exactly these.
            check_fingerprint: compare the recorded dataset fingerprint (tables, split meta, the token-list files
                the index was built with) with the files on disk; skipped when the dataroot is not on this machine.

        Raises:
            FileNotFoundError: no such file.
            SampleIndexError: corrupt, other format or schema, other dataset, or stale.
        """
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"sample index {path} not found: build it with `dima data index`")
        try:
            with path.open("rb") as fh:
                payload = pickle.load(fh)
        except Exception as exc:  # truncated / foreign files raise many different unpickling errors
            raise SampleIndexError(
                f"sample index {path} is corrupt or not an index ({type(exc).__name__}: {exc})"
            ) from exc
        if not isinstance(payload, dict) or payload.get("magic") != INDEX_MAGIC:
            raise SampleIndexError(f"{path} is not a dima sample index")
        rebuild = (
            f"rebuild it with `dima data index --dataroot {payload.get('dataroot')} --version "
            f"{payload.get('version')} --out {path}`"
        )
        if payload.get("format_version") != INDEX_FORMAT_VERSION:
            raise SampleIndexError(
                f"sample index {path} has format version {payload.get('format_version')}, this code reads "
                f"{INDEX_FORMAT_VERSION}: {rebuild}"
            )
        if payload.get("schema") != schema_signature():
            raise SampleIndexError(f"sample index {path} was written for another DrivingSample layout: {rebuild}")
        if dataroot is not None and str(Path(dataroot).resolve()) != payload["dataroot"]:
            raise SampleIndexError(
                f"sample index {path} was built from dataroot {payload['dataroot']}, not {Path(dataroot).resolve()}"
            )
        if version is not None and version != payload["version"]:
            raise SampleIndexError(f"sample index {path} was built from version {payload['version']}, not {version}")
        if check_fingerprint and Path(payload["dataroot"], payload["version"]).is_dir():
            current = dataset_fingerprint(payload["dataroot"], payload["version"], payload.get("extra_files", []))
            if current != payload["fingerprint"]:
                changed = sorted(
                    k
                    for k in set(current) | set(payload["fingerprint"])
                    if current.get(k) != payload["fingerprint"].get(k)
                )
                raise SampleIndexError(
                    f"sample index {path} is stale: the dataset changed since it was built ({', '.join(changed)}); "
                    f"{rebuild}"
                )
        return SampleIndex(
            samples=payload["samples"],
            dataroot=payload["dataroot"],
            version=payload["version"],
            split=payload["split"],
            fingerprint=payload["fingerprint"],
            created_unix=payload["created_unix"],
            extra_files=list(payload.get("extra_files", [])),
        )


def build_index(
    reader: NuScenesReader,
    split: str | None = None,
    progress: bool = False,
) -> SampleIndex:
    """Build every sample of ``split`` (all when None) with ``reader``."""
    tokens = reader.sample_tokens(split)
    iterator = tokens
    if progress:
        from tqdm import tqdm

        iterator = tqdm(tokens, desc="index", unit="sample")
    samples = [reader.build_sample(token) for token in iterator]
    return SampleIndex(
        samples=samples,
        dataroot=reader.dataroot,
        version=reader.version,
        split=split,
        fingerprint=dataset_fingerprint(reader.dataroot, reader.version, reader.longtail_token_files),
        created_unix=time.time(),
        extra_files=list(reader.longtail_token_files),
    )


__all__ = [
    "INDEX_FORMAT_VERSION",
    "SampleIndex",
    "SampleIndexError",
    "build_index",
    "dataset_fingerprint",
    "schema_signature",
]
