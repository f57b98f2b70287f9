"""Where a training step's time goes: explicit timers around the trainer's real code paths.

The :class:`~dima_core.training.trainer.Trainer` and the stage-1 step function open a named section around each
part of a step (``with timer.section("backward"): ...``). By default their timer is :data:`NULL_TIMER`, whose
sections are one reused no-op context manager, so an ordinary run pays nothing measurable. ``dima bench train``
installs a :class:`StepTimer` (:meth:`Trainer.set_timer`) and reads the split from it.

Sections (:data:`SECTIONS`) and what the trainer puts in them:

==========  ==================================================================================================
data        waiting for the next batch from the DataLoader (decode, collate, worker hand-off) and the copy
            to the device
forward     the step function minus the loss (the model's forward, the history BEV of temporal models)
loss        the loss module: Hungarian matching and every loss term, in fp32
backward    ``total.backward()`` (through the loss scaler)
optimizer   zero_grad, gradient clipping, ``optimizer.step()``, scaler update, lr schedule step
logging     reading the loss values back, the per-step history, the all-reduced log window, progress bar,
            the stop-signal check
checkpoint  saving checkpoints inside the loop (interval and end-of-epoch saves)
==========  ==================================================================================================

Sections nest: a section's time excludes the sections opened inside it (``loss`` runs inside the trainer's
``forward`` and is counted once, as ``loss``). Time a step spends outside every section is ``other``. On CUDA each
section boundary synchronises the device first, so kernels are charged to the section that launched them (this
slows the run a little; only the benchmark does it). A step's wall time runs from the end of the previous step to
the end of this one, so whatever happens between steps (an epoch-end checkpoint, a new DataLoader) belongs to the
next step.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import torch

SECTIONS: tuple[str, ...] = ("data", "forward", "loss", "backward", "optimizer", "logging", "checkpoint")


class NullTimer:
    """A timer that measures nothing (the trainer's default)."""

    enabled = False
    _NULL: AbstractContextManager[None] = nullcontext()

    def section(self, name: str) -> AbstractContextManager[None]:
        return self._NULL

    def restart(self) -> None:
        return None

    def end_step(self, samples: int) -> None:
        return None


NULL_TIMER = NullTimer()


@dataclass
class TimingSummary:
    """Totals over the counted (post warm-up) steps. Times in seconds."""

    steps: int
    samples: int
    wall_s: float  # sum of the counted steps' wall time
    cpu_s: float  # CPU time of this process (all its threads; not DataLoader workers) over the same steps
    sections: dict[str, float] = field(default_factory=dict)  # exclusive wall time per section, plus "other"

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def samples_per_cpu_s(self) -> float:
        return self.samples / self.cpu_s if self.cpu_s > 0 else float("nan")

    def ms_per_step(self, name: str) -> float:
        return 1e3 * self.sections.get(name, 0.0) / max(self.steps, 1)

    def fraction(self, name: str) -> float:
        return self.sections.get(name, 0.0) / self.wall_s if self.wall_s > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "samples": self.samples,
            "wall_s": self.wall_s,
            "cpu_s": self.cpu_s,
            "samples_per_s": self.samples_per_s,
            "samples_per_cpu_s": self.samples_per_cpu_s,
            "sections_s": dict(self.sections),
        }


class StepTimer:
    """Exclusive wall time per section and per step, skipping the first ``warmup_steps`` steps.

    Args:
        device: the training device; on CUDA every section boundary synchronises it.
        warmup_steps: steps measured but not counted (allocator warm-up, oneDNN primitive creation, first batch).
    """

    enabled = True

    def __init__(self, device: torch.device | None = None, warmup_steps: int = 0) -> None:
        if warmup_steps < 0:
            raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self._sync = device is not None and device.type == "cuda"
        self.warmup_steps = warmup_steps
        self._stack: list[list[Any]] = []  # [name, start, time spent in nested sections]
        self._pending: dict[str, float] = {}  # sections of the step in progress
        self._totals: dict[str, float] = {}
        self._seen = 0  # steps ended, warm-up included
        self._counted = 0
        self._samples = 0
        self._wall = 0.0
        self._cpu = 0.0
        self._step_start = time.perf_counter()
        self._step_cpu = time.process_time()

    def _synchronise(self) -> None:
        if self._sync:
            torch.cuda.synchronize()

    def restart(self) -> None:
        """Start the current step's clock now (call right before the first step; the trainer's loop does)."""
        self._pending = {}
        self._step_start = time.perf_counter()
        self._step_cpu = time.process_time()

    @contextmanager
    def section(self, name: str) -> Iterator[None]:
        if name not in SECTIONS:
            raise ValueError(f"unknown timing section {name!r} (sections: {', '.join(SECTIONS)})")
        self._synchronise()
        entry = [name, time.perf_counter(), 0.0]
        self._stack.append(entry)
        try:
            yield
        finally:
            self._synchronise()
            elapsed = time.perf_counter() - entry[1]
            self._stack.pop()
            self._pending[name] = self._pending.get(name, 0.0) + elapsed - entry[2]
            if self._stack:
                self._stack[-1][2] += elapsed

    def end_step(self, samples: int) -> None:
        """Close the step in progress (``samples`` in its batch); warm-up steps are dropped."""
        self._synchronise()
        now, cpu = time.perf_counter(), time.process_time()
        self._seen += 1
        if self._seen > self.warmup_steps:
            self._counted += 1
            self._samples += samples
            self._wall += now - self._step_start
            self._cpu += cpu - self._step_cpu
            for name, seconds in self._pending.items():
                self._totals[name] = self._totals.get(name, 0.0) + seconds
        self._pending = {}
        self._step_start, self._step_cpu = now, cpu

    def pending(self) -> dict[str, float]:
        """Sections recorded since the last step ended (e.g. the final checkpoint after the loop)."""
        return dict(self._pending)

    def summary(self) -> TimingSummary:
        sections = {name: self._totals.get(name, 0.0) for name in SECTIONS}
        sections["other"] = max(self._wall - sum(sections.values()), 0.0)
        return TimingSummary(self._counted, self._samples, self._wall, self._cpu, sections)


__all__ = ["NULL_TIMER", "NullTimer", "SECTIONS", "StepTimer", "TimingSummary"]
