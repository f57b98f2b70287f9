"""Statistics of ``dima bench distill`` over seeds: mean ± sample standard deviation, and paired comparisons.

Both arms of one seed share that seed's stage-1 run, data order and initial weights, so their difference is the
effect of the teacher with the seed's noise partly cancelled: the paired comparison takes the per-seed differences
``d_s = method_s - baseline_s`` of a metric (lower is better for L2 and collision), their mean and sample standard
deviation, and the sign count (seeds where the method is better, i.e. ``d_s < 0``, out of the seeds compared).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


def mean_std(values: Sequence[float | None]) -> tuple[float | None, float | None, int]:
    """``(mean, sample std (ddof 1, None for one value), n)`` of the values that are not None."""
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    if not vals:
        return None, None, 0
    return float(np.mean(vals)), (float(np.std(vals, ddof=1)) if len(vals) > 1 else None), len(vals)


def format_mean_std(values: Sequence[float | None], digits: int = 3) -> str:
    """``"m ± s"`` (``"m"`` for one value, ``"-"`` for none)."""
    mean, std, _ = mean_std(values)
    if mean is None:
        return "-"
    return f"{mean:.{digits}f}" if std is None else f"{mean:.{digits}f} ± {std:.{digits}f}"


@dataclass
class Paired:
    """A paired comparison of one metric over seeds (module docstring)."""

    seeds: list[int]
    differences: list[float]  # method - baseline, per seed, in ``seeds`` order
    mean: float | None
    std: float | None
    better: int  # seeds where the method beat the baseline (lower is better unless ``higher_is_better``)
    worse: int  # seeds where it lost

    @property
    def n(self) -> int:
        return len(self.differences)

    def format(self, digits: int = 3) -> str:
        if not self.differences:
            return "-"
        spread = f" ± {self.std:.{digits}f}" if self.std is not None else ""
        per_seed = ", ".join(f"{d:+.{digits}f}" for d in self.differences)
        return f"{self.mean:+.{digits}f}{spread} ({self.better}/{self.n} better; {per_seed})"


def paired(
    method: Sequence[float | None],
    baseline: Sequence[float | None],
    seeds: Sequence[int],
    higher_is_better: bool = False,
) -> Paired:
    """Paired differences of two per-seed series (same seeds, same order); seeds missing either value are left out.
    ``higher_is_better`` is for scores (closed-loop score), where a positive difference is a win.

    Raises:
        ValueError: the series and the seed list differ in length.
    """
    if not len(method) == len(baseline) == len(seeds):
        raise ValueError(
            f"paired comparison needs one value per seed in both series: {len(method)} method, "
            f"{len(baseline)} baseline values for {len(seeds)} seeds"
        )
    kept = [
        (s, float(m) - float(b))
        for s, m, b in zip(seeds, method, baseline, strict=True)
        if m is not None and b is not None
    ]
    diffs = [d for _, d in kept]
    mean, std, _ = mean_std(diffs)
    wins, losses = sum(d < 0 for d in diffs), sum(d > 0 for d in diffs)
    if higher_is_better:
        wins, losses = losses, wins
    return Paired([s for s, _ in kept], diffs, mean, std, wins, losses)


__all__ = ["Paired", "format_mean_std", "mean_std", "paired"]
