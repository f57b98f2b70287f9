"""Training checkpoints: the format, atomic writes, validated loads, and a ``latest`` pointer per run directory.

A checkpoint is one ``torch.save`` file (zip format) holding a plain dict, its keys named by the ``KEY_*``
constants below::

    format: "dima-checkpoint"         format_version: 1
    stage, epoch, epoch_step, step    position: epoch index, batches done in it, optimiser steps in total
    model, optimizer, scheduler, scaler                state_dicts (model unwrapped from DDP)
    rng: [per-rank RNG states]        sampler: {seed, epoch, start_index, num_replicas, batch_size}
    config: resolved TrainConfig      model_config: resolved model config (dicts)
    precision, world_size, torch_version

Everything in it is a tensor or a plain Python value, so it loads with ``torch.load(weights_only=True)``: opening
a checkpoint never runs pickled code. Files are written through :func:`dima_core.io.atomic.write_atomic`: a crash
leaves either the previous checkpoint or the new one at the final path, never a truncated mix.

The trainer writes checkpoints (:mod:`dima_core.training.trainer`); the model loader (``load_dima``), export and
evaluation read them. This module imports neither side.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from dima_core.io.atomic import write_atomic

FORMAT_NAME = "dima-checkpoint"
FORMAT_VERSION = 1
LATEST_NAME = "latest"
CHECKPOINT_PATTERN = re.compile(r"^checkpoint_step(\d+)\.pt$")

# Keys of the checkpoint dict (what each holds: the module docstring).
KEY_FORMAT = "format"
KEY_FORMAT_VERSION = "format_version"
KEY_STAGE = "stage"
KEY_EPOCH = "epoch"
KEY_EPOCH_STEP = "epoch_step"
KEY_STEP = "step"
KEY_MODEL = "model"
KEY_OPTIMIZER = "optimizer"
KEY_SCHEDULER = "scheduler"
KEY_SCALER = "scaler"
KEY_RNG = "rng"
KEY_SAMPLER = "sampler"
KEY_CONFIG = "config"
KEY_MODEL_CONFIG = "model_config"
KEY_PRECISION = "precision"
KEY_WORLD_SIZE = "world_size"
KEY_TORCH_VERSION = "torch_version"

# The format tag is added by save_checkpoint; everything else the caller supplies.
_FORMAT_KEYS: tuple[str, ...] = (KEY_FORMAT, KEY_FORMAT_VERSION)
REQUIRED_KEYS: tuple[str, ...] = (
    *_FORMAT_KEYS,
    KEY_STAGE,
    KEY_EPOCH,
    KEY_EPOCH_STEP,
    KEY_STEP,
    KEY_MODEL,
    KEY_OPTIMIZER,
    KEY_SCHEDULER,
    KEY_SCALER,
    KEY_RNG,
    KEY_SAMPLER,
    KEY_CONFIG,
)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used: missing, corrupt, truncated, foreign, or not matching this run."""


def checkpoint_name(step: int) -> str:
    """File name of the checkpoint taken after ``step`` optimiser steps (sortable)."""
    return f"checkpoint_step{step:08d}.pt"


def save_checkpoint(state: Mapping[str, Any], path: str | os.PathLike[str]) -> Path:
    """Atomically ``torch.save`` a checkpoint dict (adds the format tag); returns the final path."""
    missing = [k for k in REQUIRED_KEYS if k not in state and k not in _FORMAT_KEYS]
    if missing:
        raise ValueError(f"checkpoint state lacks {missing}")
    payload = dict(state)
    payload[KEY_FORMAT] = FORMAT_NAME
    payload[KEY_FORMAT_VERSION] = FORMAT_VERSION
    payload.setdefault(KEY_TORCH_VERSION, str(torch.__version__))  # TorchVersion is not weights_only-safe
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
    if not isinstance(state, dict) or state.get(KEY_FORMAT) != FORMAT_NAME:
        raise CheckpointError(f"{path} is not a DiMA training checkpoint (no '{FORMAT_NAME}' format tag)")
    version = state.get(KEY_FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {path} has format version {version}; this code reads {FORMAT_VERSION}")
    missing = [k for k in REQUIRED_KEYS if k not in state]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks required entries {missing}")
    return state


def check_model_state(model_state: Mapping[str, torch.Tensor], model: torch.nn.Module, source: str) -> None:
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
    "FORMAT_NAME",
    "FORMAT_VERSION",
    "KEY_CONFIG",
    "KEY_EPOCH",
    "KEY_EPOCH_STEP",
    "KEY_FORMAT",
    "KEY_FORMAT_VERSION",
    "KEY_MODEL",
    "KEY_MODEL_CONFIG",
    "KEY_OPTIMIZER",
    "KEY_PRECISION",
    "KEY_RNG",
    "KEY_SAMPLER",
    "KEY_SCALER",
    "KEY_SCHEDULER",
    "KEY_STAGE",
    "KEY_STEP",
    "KEY_TORCH_VERSION",
    "KEY_WORLD_SIZE",
    "LATEST_NAME",
    "REQUIRED_KEYS",
    "check_model_state",
    "checkpoint_name",
    "load_checkpoint",
    "prune_checkpoints",
    "resolve_checkpoint",
    "save_checkpoint",
    "write_latest",
]
