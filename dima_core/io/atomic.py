"""Atomic file writes: a file at its final path is either the previous version or the complete new one.

The bytes go to a temporary file in the *same directory* (``os.replace`` is only atomic within one filesystem), are
flushed and fsynced, then renamed over the final name, and the directory is fsynced so the rename survives a power
cut. A crash at any point leaves either the previous file or the new one at the final path, never a truncated mix;
at worst a stale ``.<name>.tmp-*`` file remains, removed by the next write of that name.

Used for training checkpoints (:mod:`dima_core.io.checkpoint`), export sidecars and the TensorRT engine cache.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import IO


def _fsync_dir(directory: Path) -> None:
    # The rename lives in the directory entry; without this a power cut can lose it even after os.replace.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # e.g. platforms that cannot open directories; the rename is still atomic
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def temp_path_for(path: Path) -> Path:
    """A unique temporary name next to ``path`` (same directory, so the final rename is atomic)."""
    return path.parent / f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def write_atomic(path: str | os.PathLike[str], write: Callable[[IO[bytes]], None]) -> Path:
    """Write a file through ``write(fileobj)`` so that ``path`` is either untouched or complete.

    Stale temporaries of the same name (from a crashed earlier write) are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp-*"):
        stale.unlink(missing_ok=True)
    tmp = temp_path_for(path)
    try:
        with open(tmp, "wb") as fileobj:
            write(fileobj)
            fileobj.flush()
            os.fsync(fileobj.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)
    return path


__all__ = ["temp_path_for", "write_atomic"]
