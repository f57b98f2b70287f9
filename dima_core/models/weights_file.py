"""Planner weights as one safetensors file: how trained planners ship (the package's default planner included).

A training checkpoint (``.pt``) carries the optimiser, the data order and RNG states for exact resume, and is read
with ``torch.load``. A deployed planner needs none of that: this file holds the planner's tensors only, read without
pickle (safetensors), plus string metadata that makes it self-describing, as a checkpoint is:

- ``format`` = ``dima-planner-weights``, ``format_version`` = ``1``;
- ``model_config``: the resolved :class:`~dima_core.models.ModelConfig` as JSON (so the file cannot be paired with
  the wrong architecture) and ``model_config_sha256``, the hash of that JSON (a damaged header is caught);
- ``source``: JSON with where the weights came from (run, step, stage, training config, data).

Every loader of planners (``load_dima`` in vision mode, hence ``dima export``, ``dima eval``, ``dima sim`` and the
torch backend of the node) accepts such a file wherever it accepts a checkpoint. A file that is missing, truncated,
not ours, or whose tensors do not fit its own config raises :class:`WeightsFileError` naming the problem: never a
silently random planner.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dima_core.io.atomic import write_atomic
from dima_core.io.checkpoint import (
    KEY_CONFIG,
    KEY_MODEL,
    KEY_MODEL_CONFIG,
    KEY_STAGE,
    KEY_STEP,
    CheckpointError,
    load_checkpoint,
    resolve_checkpoint,
)

WEIGHTS_SUFFIX = ".safetensors"
WEIGHTS_FORMAT = "dima-planner-weights"
WEIGHTS_FORMAT_VERSION = "1"
# The planner shipped with the package (docs/planner_model_card.md); `make planner` rebuilds it.
SHIPPED_PLANNER = Path(__file__).resolve().parent.parent / "weights" / "planner_drive.safetensors"


class WeightsFileError(CheckpointError):
    """A planner weights file that cannot be used: missing, corrupt, foreign, or not matching its own config."""


@dataclass(frozen=True)
class PlannerWeights:
    """The content of a weights file.

    Attributes:
        state_dict: the planner's tensors (``VisionPlanner.state_dict()`` keys), float32 on the CPU.
        model_config: the resolved model config as a plain dict (``config_to_dict`` form).
        source: where the weights came from (run directory, step, stage, training config name, ...).
    """

    state_dict: dict[str, torch.Tensor]
    model_config: dict[str, Any]
    source: dict[str, Any]


def is_weights_file(path: str | os.PathLike[str]) -> bool:
    """True for a path that names a planner weights file (by its suffix; the content is checked on reading)."""
    return Path(path).suffix == WEIGHTS_SUFFIX


def _config_json(model_config: Mapping[str, Any]) -> str:
    return json.dumps(model_config, sort_keys=True, separators=(",", ":"))


def save_planner_weights(
    path: str | os.PathLike[str],
    state_dict: Mapping[str, torch.Tensor],
    model_config: Mapping[str, Any],
    source: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``state_dict`` (float32, contiguous, CPU) with its config and provenance; returns the path.

    Written atomically (``write_atomic``): an interrupted write never leaves a half file under ``path``.
    """
    from safetensors.torch import save

    path = Path(path)
    if path.suffix != WEIGHTS_SUFFIX:
        raise WeightsFileError(f"{path}: a planner weights file must end in {WEIGHTS_SUFFIX}")
    tensors = {k: v.detach().to("cpu", torch.float32).contiguous() for k, v in state_dict.items()}
    config_json = _config_json(model_config)
    metadata = {
        "format": WEIGHTS_FORMAT,
        "format_version": WEIGHTS_FORMAT_VERSION,
        "model_config": config_json,
        "model_config_sha256": hashlib.sha256(config_json.encode()).hexdigest(),
        "source": json.dumps(dict(source or {}), sort_keys=True),
    }
    payload = save(tensors, metadata=metadata)
    return write_atomic(path, lambda fileobj: fileobj.write(payload))


def read_planner_weights(path: str | os.PathLike[str]) -> PlannerWeights:
    """Read and validate a weights file, or raise :class:`WeightsFileError` saying what is wrong with it."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        hint = " (the shipped planner is built by `make planner`)" if path == SHIPPED_PLANNER else ""
        raise WeightsFileError(f"planner weights file {path} does not exist{hint}")
    if path.stat().st_size == 0:
        raise WeightsFileError(f"planner weights file {path} is empty (0 bytes): an interrupted copy?")
    try:
        with safe_open(str(path), framework="pt", device="cpu") as handle:
            metadata = dict(handle.metadata() or {})
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}
    except Exception as exc:  # noqa: BLE001 - header, JSON and truncation errors all mean "cannot be read"
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise WeightsFileError(
            f"planner weights file {path} is corrupt or truncated and cannot be read ({detail})"
        ) from exc
    if metadata.get("format") != WEIGHTS_FORMAT:
        raise WeightsFileError(
            f"{path} is a safetensors file but not DiMA planner weights (no '{WEIGHTS_FORMAT}' "
            "format tag): export a trained run with `dima weights export`"
        )
    if metadata.get("format_version") != WEIGHTS_FORMAT_VERSION:
        raise WeightsFileError(
            f"planner weights file {path} has format version {metadata.get('format_version')}; "
            f"this code reads {WEIGHTS_FORMAT_VERSION}"
        )
    config_json = metadata.get("model_config", "")
    if hashlib.sha256(config_json.encode()).hexdigest() != metadata.get("model_config_sha256"):
        raise WeightsFileError(
            f"planner weights file {path}: its stored model config does not match its hash "
            "(the header was edited or damaged)"
        )
    try:
        model_config = json.loads(config_json)
        source = json.loads(metadata.get("source") or "{}")
    except json.JSONDecodeError as exc:
        raise WeightsFileError(f"planner weights file {path}: unreadable metadata ({exc})") from exc
    return PlannerWeights(tensors, model_config, source)


def weights_as_checkpoint_state(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A weights file in the shape of a stage-1 checkpoint's state (``model``, ``model_config``, ``step``, ...).

    Lets the checkpoint loaders (``load_dima``) take either kind of file through one code path.
    """
    weights = read_planner_weights(path)
    return {
        KEY_MODEL: weights.state_dict,
        KEY_MODEL_CONFIG: weights.model_config,
        KEY_CONFIG: {},  # no training config travels with a weights file (its provenance: read_planner_weights)
        KEY_STEP: int(weights.source.get("step", 0)),
        KEY_STAGE: 1,
    }


def load_weights_or_checkpoint(path: str | os.PathLike[str]) -> tuple[Path, dict[str, Any]]:
    """``(file, state)`` of a weights file or a checkpoint (file or run directory), for initialising a new run.

    ``dima train --init`` takes either: a weights file gives the planner's tensors (``model``), its config, stage 1.
    """
    if is_weights_file(path):
        return Path(path), weights_as_checkpoint_state(path)
    file = resolve_checkpoint(path)
    return file, load_checkpoint(file, map_location="cpu")


def check_expected_config(path: str | os.PathLike[str], stored: Mapping[str, Any], expected: Mapping[str, Any]) -> None:
    """Raise :class:`WeightsFileError` when a file's config differs from the one a deployment expects.

    ``expected`` is the ``config_to_dict`` form of the model config the caller was set up for (e.g. a node
    configured with a model YAML); the message names the first differing fields.
    """
    differing = sorted(key for key in set(stored) | set(expected) if stored.get(key) != expected.get(key))
    if differing:
        shown = ", ".join(f"{key}: file {stored.get(key)!r} vs expected {expected.get(key)!r}" for key in differing[:4])
        more = f" (+{len(differing) - 4} more)" if len(differing) > 4 else ""
        raise WeightsFileError(f"planner weights file {path} is for another model config ({shown}{more})")


__all__ = [
    "PlannerWeights",
    "SHIPPED_PLANNER",
    "WEIGHTS_FORMAT",
    "WEIGHTS_FORMAT_VERSION",
    "WEIGHTS_SUFFIX",
    "WeightsFileError",
    "check_expected_config",
    "is_weights_file",
    "load_weights_or_checkpoint",
    "read_planner_weights",
    "save_planner_weights",
    "weights_as_checkpoint_state",
]
