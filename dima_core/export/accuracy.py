"""Accuracy cost of a precision: a backend's plans against the fp32 reference's on the same held-out frames.

Two numbers per precision, both in metres (``dima export --precision int8`` gates on the first and records both;
``dima bench latency`` prints them next to the latency):

- **trajectory difference**: the Euclidean distance between the candidate's and the reference's waypoints, max and
  mean over frames and the 6 waypoints of ``trajectory`` (the plan the node publishes), and the max over every
  command's plan (``trajectories``, the published candidates);
- **open-loop L2 change**: the candidate's L2 to the GT ego future minus the reference's, with ``dima eval``'s
  headline convention (VAD's average of the 1 s / 2 s / 3 s cumulative L2), over the frames with a full GT future.
  With random weights this L2 says nothing about driving; the difference still measures the precision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from dima_core.export.dataset_frames import Infer, PlannerFrame, run_frame
from dima_core.export.io_spec import TensorSpec


@dataclass
class AccuracyCost:
    """A candidate's plans against the fp32 reference's on ``frames`` frames (metres)."""

    frames: int
    scored_frames: int  # frames with a full GT future (the L2 ones)
    max_trajectory_diff_m: float
    mean_trajectory_diff_m: float
    max_candidates_diff_m: float
    l2_reference_m: float | None
    l2_m: float | None

    @property
    def l2_change_m(self) -> float | None:
        if self.l2_m is None or self.l2_reference_m is None:
            return None
        return self.l2_m - self.l2_reference_m

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "l2_change_m": self.l2_change_m}

    def summary(self) -> str:
        change = "-" if self.l2_change_m is None else f"{self.l2_change_m:+.4f}"
        return (
            f"max trajectory diff {self.max_trajectory_diff_m:.4f} m (mean {self.mean_trajectory_diff_m:.4f}, "
            f"all commands {self.max_candidates_diff_m:.4f}), open-loop L2 change {change} m over "
            f"{self.scored_frames} of {self.frames} frames"
        )


def predict(infer: Infer, specs: tuple[TensorSpec, ...], frames: Sequence[PlannerFrame]) -> list[dict[str, np.ndarray]]:
    """``[{"trajectory": (6, 2), "trajectories": (C, 6, 2)}]`` per frame, float64, run as the runtime runs them."""
    plans = []
    for frame in frames:
        _, outputs = run_frame(frame, specs, infer)
        plans.append(
            {
                "trajectory": np.asarray(outputs["trajectory"], np.float64)[0],
                "trajectories": np.asarray(outputs["trajectories"], np.float64)[0],
            }
        )
    return plans


def _vad_l2(
    plans: Sequence[Mapping[str, np.ndarray]], frames: Sequence[PlannerFrame], keep: np.ndarray
) -> float | None:
    from dima_core.eval.planning_metrics import per_step_l2, summarize

    if not keep.any():
        return None
    pred = np.stack([p["trajectory"] for p in plans])[keep]
    gt = np.stack([f.ego_future for f in frames])[keep]
    l2 = per_step_l2(pred, gt)
    return summarize(l2, np.zeros_like(l2, dtype=bool))["vad"]["l2"]["avg"]


def accuracy_cost(
    reference: Sequence[Mapping[str, np.ndarray]],
    candidate: Sequence[Mapping[str, np.ndarray]],
    frames: Sequence[PlannerFrame],
) -> AccuracyCost:
    """Compare per-frame plans of :func:`predict` (same frames, same order)."""
    if not (len(reference) == len(candidate) == len(frames)) or not frames:
        raise ValueError(
            f"need one reference and one candidate plan per frame, got {len(reference)} / "
            f"{len(candidate)} for {len(frames)} frames"
        )
    diff = np.stack(
        [np.linalg.norm(c["trajectory"] - r["trajectory"], axis=-1) for r, c in zip(reference, candidate, strict=True)]
    )  # (F, 6)
    every = max(
        float(np.linalg.norm(c["trajectories"] - r["trajectories"], axis=-1).max())
        for r, c in zip(reference, candidate, strict=True)
    )
    if not (np.isfinite(diff).all() and np.isfinite(every)):
        # NaN compares false against any tolerance; report it as an infinite difference so every gate fails.
        return AccuracyCost(len(frames), 0, float("inf"), float("inf"), float("inf"), None, None)
    keep = np.array([bool(f.ego_future_mask.all()) for f in frames])
    return AccuracyCost(
        frames=len(frames),
        scored_frames=int(keep.sum()),
        max_trajectory_diff_m=float(diff.max()),
        mean_trajectory_diff_m=float(diff.mean()),
        max_candidates_diff_m=every,
        l2_reference_m=_vad_l2(reference, frames, keep),
        l2_m=_vad_l2(candidate, frames, keep),
    )


__all__ = ["AccuracyCost", "accuracy_cost", "predict"]
