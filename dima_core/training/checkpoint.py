"""Training checkpoints: atomic writes, validated loads, and a ``latest`` pointer per run directory.

A checkpoint is one ``torch.save`` file (zip format) holding a plain dict::

    format: "dima-checkpoint"         format_version: 1
    stage, epoch, epoch_step, step    position: epoch index, batches done in it, optimiser steps in total
    model, optimizer, scheduler, scaler                state_dicts (model unwrapped from DDP)
    rng: [per-rank RNG states]        sampler: {seed, epoch, start_index, num_replicas}
    config: resolved TrainConfig      model_config: resolved model config (dicts)
    precision, world_size, torch_version, metrics

Everything in it is a tensor or a plain Python value, so it loads with ``torch.load(weights_only=True)``: opening
a checkpoint never runs pickled code.

Writes are atomic: the bytes go to a temporary file in the *same directory* (``os.replace`` is only atomic within
one filesystem), are flushed and fsynced, then renamed over the final name, and the directory is fsynced so the
rename survives a power cut. A crash at any point leaves either the previous file or the new one at the final path,
never a truncated mix; at worst a stale ``.<name>.tmp-*`` file remains, removed by the next save of that name.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

import torch

log = logging.getLogger(__name__)

FORMAT_NAME = "dima-checkpoint"
FORMAT_VERSION = 1
LATEST_NAME = "latest"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint_step(\d+)\.pt$")
REQUIRED_KEYS: tuple[str, ...] = (
    "format", "format_version", "stage", "epoch", "epoch_step", "step", "model", "optimizer", "scheduler",
    "scaler", "rng", "sampler", "config",
)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, corrupt, truncated, foreign, or not matching this run."""


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint taken after ``step`` optimiser steps (sortable)."""
    return f"checkpoint_step{step:08d}.pt"


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

    Stale temporaries of the same name (from a crashed earlier save) are removed first.
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


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Atomically ``torch.save`` a checkpoint dict (adds the format tag); returns the final path."""
    missing = [k for k in REQUIRED_KEYS if k not in state and k not in ("format", "format_version")]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    payload = dict(state)
    payload["format"] = FORMAT_NAME
    payload["format_version"] = FORMAT_VERSION
    payload.setdefault("torch_version", str(torch.__version__))  # TorchVersion is not weights_only-safe
    return write_atomic(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: str | os.PathLike[str], map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint file, or raise :class:`CheckpointError` saying what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.stat().st_size == 0:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes): an interrupted copy?")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - zip, unpickling and EOF errors all mean the same thing here
        raise CheckpointError(
            f"checkpoint {path} is corrupt or truncated and cannot be read "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else 'no detail'})"
        ) from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a DiMA training checkpoint (no '{FORMAT_NAME}' format tag)")
    version = state.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version}; this code reads {FORMAT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks required entries {missing}")
    return state


def check_model_state(
    model_state: Mapping[str, torch.Tensor], model: torch.nn.Module, source: str
) -> None:
    """Raise :class:`CheckpointError` listing missing/unexpected keys and shape mismatches against ``model``."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(model_state))
    unexpected = sorted(set(model_state) - set(expected))
    mismatched = [
        f"{k}: checkpoint {tuple(model_state[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in sorted(set(expected) & set(model_state))
        if tuple(model_state[k].shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or mismatched:

        def head(items: list[str]) -> str:
            return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys [{head(missing)}]")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys [{head(unexpected)}]")
        if mismatched:
            parts.append(f"{len(mismatched)} shape mismatches [{head(mismatched)}]")
        raise CheckpointError(
            f"checkpoint {source} does not match this model ({'; '.join(parts)}): "
            "was it trained with a different model config?"
        )


def write_latest(run_dir: str | os.PathLike[str], checkpoint_file: str | os.PathLike[str]) -> None:
    """Point ``<run_dir>/latest`` at a checkpoint (a text file holding its name; atomic like the checkpoint)."""
    run_dir = Path(run_dir)
    name = Path(checkpoint_file).name
    write_atomic(run_dir / LATEST_NAME, lambda f: f.write((name + "\n").encode()))


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint file as given, or the one a run directory's ``latest`` pointer names."""
    path = Path(path)
    if path.is_dir():
        pointer = path / LATEST_NAME
        if not pointer.is_file():
            raise CheckpointError(f"{path} is a directory without a '{LATEST_NAME}' pointer: pass a checkpoint file")
        name = pointer.read_text().strip()
        target = path / name
        if not name or not target.is_file():
            raise CheckpointError(f"{pointer} names {name!r}, which does not exist in {path}")
        return target
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    return path


def prune_checkpoints(run_dir: str | os.PathLike[str], keep: int) -> list[Path]:
    """Delete all but the newest ``keep`` step checkpoints (never the one ``latest`` names); returns the deleted."""
    run_dir = Path(run_dir)
    protected = None
    pointer = run_dir / LATEST_NAME
    if pointer.is_file():
        protected = pointer.read_text().strip()
    found = sorted(
        (int(m.group(1)), p) for p in run_dir.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name)) is not None
    )
    deleted = []
    for _, p in found[: max(len(found) - keep, 0)]:
        if p.name != protected:
            p.unlink(missing_ok=True)
            deleted.append(p)
    return deleted


__all__ = [
    "CHECKPOINT_PATTERN",
    "CheckpointError",
    "FORMAT_VERSION",
    "LATEST_NAME",
    "check_model_state",
    "checkpoint_name",
    "load_checkpoint",
    "prune_checkpoints",
    "resolve_checkpoint",
    "save_checkpoint",
    "temp_path_for",
    "write_atomic",
    "write_latest",
]
