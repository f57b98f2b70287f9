"""What one training run of ``dima bench distill`` cost: wall time, planner updates, samples and a FLOP estimate.

FLOPs are measured, not guessed from parameter counts: :class:`FlopSampler` runs the first ``samples_per_phase``
optimiser steps of each phase (stage 1 and the planner-only control: ``train``; stage 2: ``warmup`` and ``joint``,
the ramp costing what the joint phase costs) under ``torch.utils.flop_counter.FlopCounterMode`` (forward, backward
and optimiser step), and the run's estimate is ``sum over phases of mean counted FLOPs per step x steps of the
phase``. The counter covers the operators torch has FLOP formulas for (matrix products, convolutions, attention);
elementwise work is not counted, so the numbers compare arms of the same models, they are not hardware FLOPs. The
counted steps run slower under the counter; the wall time includes that overhead (a few steps of many).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

FLOP_METHOD = (
    "torch.utils.flop_counter.FlopCounterMode over the first {k} steps of each phase (forward + backward "
    "+ optimiser; matmul/conv/attention operators only) x the steps of that phase"
)


@dataclass
class RunCost:
    """The cost of one training run (an arm's is :func:`arm_cost` of its runs)."""

    wall_s: float = 0.0  # build + fit
    steps: int = 0  # optimiser steps the run made (all parameters)
    planner_steps: int = 0  # steps that updated the planner (not the teacher warm-up)
    samples: int = 0  # samples those steps read
    planner_samples: int = 0  # samples the planner trained on
    flops: float = 0.0  # estimate (module docstring)
    flops_per_step: dict[str, float] = field(default_factory=dict)  # phase -> mean counted FLOPs of one step
    steps_by_phase: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _GlobalOnly:
    """Stands in for ``FlopCounterMode``'s per-module tracker, which the totals here do not need: the tracker hooks
    the backward of every module input that requires grad, and that fails (torch 2.13, ``register_multi_grad_hook``
    asserts) on a view of a parameter taken under ``no_grad``, as the stage-2 step's future-BEV encoding does. All
    FLOPs are then attributed to the ``Global`` entry that ``get_total_flops`` sums."""

    parents = ("Global",)

    def __enter__(self) -> _GlobalOnly:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None


class FlopSampler:
    """Counts the FLOPs of the first ``samples_per_phase`` steps of each phase of a run, over one trainer or several
    (a run stopped and resumed: :meth:`attach` each).

    It wraps ``trainer.train_step`` (an instance attribute set here; the trainer's loop calls it once per step), so
    neither the loop nor the step changes: the counter only observes the operators. ``phase_of(trainer)`` names the
    phase of the step about to run.
    """

    def __init__(self, phase_of: Callable[[Any], str], samples_per_phase: int = 2) -> None:
        self.phase_of = phase_of
        self.samples_per_phase = samples_per_phase
        self.counted: dict[str, list[float]] = {}
        self.steps: dict[str, int] = {}
        self.samples: dict[str, int] = {}

    def attach(self, trainer: Any) -> FlopSampler:
        from torch.utils.flop_counter import FlopCounterMode

        original = trainer.train_step

        def train_step(batch: Any) -> Any:
            phase = self.phase_of(trainer)
            self.steps[phase] = self.steps.get(phase, 0) + 1
            self.samples[phase] = self.samples.get(phase, 0) + _batch_size(batch)
            counted = self.counted.setdefault(phase, [])
            if len(counted) >= self.samples_per_phase:
                return original(batch)
            counter = FlopCounterMode(display=False)
            counter.mod_tracker = _GlobalOnly()  # type: ignore[assignment]
            with counter:
                out = original(batch)
            counted.append(float(counter.get_total_flops()))
            return out

        trainer.train_step = train_step
        return self

    def cost(self, wall_s: float, frozen_planner_phases: tuple[str, ...] = ("warmup",)) -> RunCost:
        """The :class:`RunCost` of the steps seen so far."""
        per_step = {p: sum(v) / len(v) for p, v in self.counted.items() if v}
        steps = sum(self.steps.values())
        planner = sum(n for p, n in self.steps.items() if p not in frozen_planner_phases)
        samples = sum(self.samples.values())
        planner_samples = sum(n for p, n in self.samples.items() if p not in frozen_planner_phases)
        flops = sum(per_step.get(p, 0.0) * n for p, n in self.steps.items())
        return RunCost(wall_s, steps, planner, samples, planner_samples, flops, per_step, dict(self.steps))


TOTALS = ("wall_s", "steps", "planner_steps", "samples", "planner_samples", "flops")


def arm_cost(runs: Mapping[str, RunCost]) -> dict[str, Any]:
    """An arm's cost: the sums of :data:`TOTALS` over its runs (e.g. ``stage1`` + ``stage2``), and each run."""
    totals: dict[str, Any] = {key: sum(getattr(run, key) for run in runs.values()) for key in TOTALS}
    totals["runs"] = {name: run.to_json() for name, run in runs.items()}
    return totals


def _batch_size(batch: Any) -> int:
    """Samples in a collated batch: its tokens, else the leading dimension of its first tensor."""
    import torch

    if isinstance(batch, dict):
        if "token" in batch:
            return len(batch["token"])
        batch = list(batch.values())
    for value in batch if isinstance(batch, (list, tuple)) else [batch]:
        if isinstance(value, torch.Tensor) and value.dim():
            return int(value.shape[0])
    return 0


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)``."""
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


__all__ = ["FLOP_METHOD", "FlopSampler", "RunCost", "TOTALS", "arm_cost", "timed"]
