"""The planning results-file interface (docs/design.md, Evaluation protocol), so any planner's output can be scored::

    {"meta": {"convention_note": "..."},
     "results": {"<sample_token>": {"trajectory": [[x, y], ... 6 waypoints]}}}

Trajectories are positions (not offsets) at 0.5 .. 3.0 s in the current ego frame of the sample (nuScenes
``ego_pose`` of the keyframe's reference sensor: x forward, y left, metres). Extra keys in ``meta`` or in a result
entry are kept out of the way (ignored), so producers may add e.g. the command or candidate modes.

Loading checks everything and raises :class:`ResultsFileError` naming the file and the offending token: unreadable
or invalid JSON, a missing ``results`` object, a trajectory that is not 6 x 2 numbers, NaN/inf, and (when the known
tokens are given) tokens the dataset does not have. Tokens the dataset has but the file lacks are not an error here:
:func:`match_tokens` reports them so the evaluation can count them.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dima_core.constants import FUTURE_STEPS

DEFAULT_CONVENTION_NOTE = (
    "trajectory = 6 ego positions [x, y] at 0.5..3.0 s in the current ego frame (nuScenes ego_pose of the "
    "keyframe's reference sensor; x forward, y left; metres); positions, not per-step offsets"
)


class ResultsFileError(ValueError):
    """A results file is unreadable or malformed; the message names the file and, where relevant, the token."""


@dataclass
class PlanningResults:
    """Loaded results: sample token -> (6, 2) float64 trajectory in that sample's ego frame."""

    trajectories: dict[str, np.ndarray]
    convention_note: str = ""
    meta: dict[str, Any] = field(default_factory=dict)
    source: str = ""

    def __len__(self) -> int:
        return len(self.trajectories)


@dataclass
class TokenMatch:
    """How a results file covers an evaluation's sample set.

    Attributes:
        scored: tokens in both the file and the evaluation set, in evaluation order.
        missing: tokens of the evaluation set the file lacks (not scored; counted in the report).
        extra: tokens the file has that exist in the dataset but are outside the evaluation set (e.g. another
            split); ignored.
    """

    scored: list[str]
    missing: list[str]
    extra: list[str]


def _trajectory(value: Any, where: str) -> np.ndarray:
    """Validate one trajectory (6 x 2 finite numbers) and return it as (6, 2) float64."""
    if not isinstance(value, (list, tuple)) or len(value) != FUTURE_STEPS:
        got = f"{len(value)} entries" if isinstance(value, (list, tuple)) else type(value).__name__
        raise ResultsFileError(f"{where}: 'trajectory' must be a list of {FUTURE_STEPS} [x, y] points, got {got}")
    for i, point in enumerate(value):
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            raise ResultsFileError(f"{where}: waypoint {i} must be [x, y], got {point!r}")
        for v in point:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ResultsFileError(f"{where}: waypoint {i} has a non-number {v!r}")
            if not math.isfinite(v):
                raise ResultsFileError(f"{where}: waypoint {i} has a NaN or infinite value {v!r}")
    return np.asarray(value, np.float64)


def results_from_dict(
    data: Any, source: str = "<results>", known_tokens: Iterable[str] | None = None
) -> PlanningResults:
    """Validate a parsed results object (see the module docstring).

    Args:
        data: the parsed JSON.
        source: name used in error messages (usually the file path).
        known_tokens: every sample token of the dataset; a result for any other token is an error.
    """
    if not isinstance(data, dict):
        raise ResultsFileError(f"{source}: the top level must be a JSON object, got {type(data).__name__}")
    results = data.get("results")
    if not isinstance(results, dict):
        raise ResultsFileError(f"{source}: missing or non-object 'results' (expected {{token: {{'trajectory': ...}}}})")
    meta = data.get("meta", {})
    if not isinstance(meta, dict):
        raise ResultsFileError(f"{source}: 'meta' must be an object, got {type(meta).__name__}")
    note = meta.get("convention_note", "")
    if not isinstance(note, str):
        raise ResultsFileError(f"{source}: meta.convention_note must be a string")
    known = set(known_tokens) if known_tokens is not None else None
    trajectories: dict[str, np.ndarray] = {}
    for token, entry in results.items():
        where = f"{source}: results[{token!r}]"
        if known is not None and token not in known:
            raise ResultsFileError(f"{where}: unknown sample token {token!r} (not a sample of this dataset/version)")
        if not isinstance(entry, dict) or "trajectory" not in entry:
            raise ResultsFileError(f"{where}: must be an object with a 'trajectory' key")
        trajectories[token] = _trajectory(entry["trajectory"], where)
    return PlanningResults(trajectories=trajectories, convention_note=note, meta=dict(meta), source=source)


class _NonFiniteJSON(ValueError):
    """A bare NaN / Infinity / -Infinity constant in the JSON text."""


def _reject_constant(name: str) -> float:
    raise _NonFiniteJSON(f"non-finite value {name}")


def load_results(path: str | os.PathLike, known_tokens: Iterable[str] | None = None) -> PlanningResults:
    """Read and validate a results file; raises ResultsFileError (a ValueError) or FileNotFoundError."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"results file {path} does not exist")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ResultsFileError(f"{path}: cannot read: {exc}") from exc
    try:
        # parse_constant turns bare NaN/Infinity (accepted by Python's json) into an error that names the value.
        data = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    except _NonFiniteJSON as exc:
        raise ResultsFileError(f"{path}: {exc} (the results file must hold finite numbers only)") from exc
    return results_from_dict(data, str(path), known_tokens)


def write_results(
    path: str | os.PathLike,
    trajectories: Mapping[str, np.ndarray],
    convention_note: str = DEFAULT_CONVENTION_NOTE,
    meta: Mapping[str, Any] | None = None,
) -> None:
    """Write a results file atomically (temp file + rename).

    Args:
        path: output path.
        trajectories: sample token -> (6, 2) positions in that sample's ego frame.
        convention_note: stored as ``meta.convention_note``.
        meta: extra meta keys (e.g. the producing method).
    """
    body: dict[str, Any] = {"meta": {**(dict(meta) if meta else {}), "convention_note": convention_note}}
    results: dict[str, Any] = {}
    for token, traj in trajectories.items():
        arr = np.asarray(traj, np.float64)
        if arr.shape != (FUTURE_STEPS, 2):
            raise ResultsFileError(
                f"results[{token!r}]: trajectory must have shape ({FUTURE_STEPS}, 2), got {arr.shape}"
            )
        if not np.isfinite(arr).all():
            raise ResultsFileError(f"results[{token!r}]: trajectory has NaN or infinite values")
        results[token] = {"trajectory": arr.tolist()}
    body["results"] = results
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(body, indent=1, allow_nan=False), encoding="utf-8")
    os.replace(tmp, path)


def match_tokens(results: PlanningResults, evaluation_tokens: Iterable[str]) -> TokenMatch:
    """Split the evaluation set into scored and missing tokens, and list the file's tokens outside it."""
    ordered = list(evaluation_tokens)
    wanted = set(ordered)
    scored = [t for t in ordered if t in results.trajectories]
    missing = [t for t in ordered if t not in results.trajectories]
    extra = [t for t in results.trajectories if t not in wanted]
    return TokenMatch(scored=scored, missing=missing, extra=extra)


__all__ = [
    "DEFAULT_CONVENTION_NOTE",
    "PlanningResults",
    "ResultsFileError",
    "TokenMatch",
    "load_results",
    "match_tokens",
    "results_from_dict",
    "write_results",
]
