"""The phases of stage 2 as pure functions of the optimiser step: teacher warm-up, distillation ramp, full training.

    step:                  0 ... h-1            | h ... h+N-2            | h+N-1 ...
    phase:                 warmup               | ramp                   | joint
    planner:               frozen (eval, no grad) | trains               | trains
    distill weight scale:  0 (not computed)     | 1/N, 2/N, ..., (N-1)/N | 1

``h = joint.teacher_warmup.steps`` (the handover step), ``N = joint.distill_ramp_steps``. Everything here depends on
the step index only, so a resumed run (and every DDP rank) is in the same phase as the uninterrupted run at every
step: resume stays exact.

:class:`PlannerFreeze` applies the warm-up to the model: the planner (scene encoder included) in eval mode with
``requires_grad`` off. A parameter without gradient is skipped by AdamW (no update, no weight decay, no moment
change) and by gradient clipping, which is what "frozen, optimiser state untouched" needs. Under DDP the step needs
``find_unused_parameters`` (the planner's parameters get no gradient on any rank, and DDP leaves their gradients
unset then); FSDP fixes ``requires_grad`` when it shards, so a warm-up is refused there.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from dima_core.training.stage2.config import JointConfig, is_distill_term


@dataclass(frozen=True)
class Phase:
    """Where step ``step`` is: ``warmup`` (teacher only), ``ramp`` or ``joint``; ``distill_scale`` multiplies the
    distillation weights (0 in the warm-up, where the distillation is not computed)."""

    step: int
    name: str
    distill_scale: float

    @property
    def warmup(self) -> bool:
        return self.name == "warmup"


class Stage2Phases:
    """The phase schedule of one stage-2 run (module docstring)."""

    def __init__(self, joint: JointConfig) -> None:
        self.handover = int(joint.teacher_warmup.steps)
        self.ramp = int(joint.distill_ramp_steps)
        self.warmup_terms = tuple(joint.teacher_warmup.terms)

    def at(self, step: int) -> Phase:
        """The phase of 0-based optimiser step ``step``."""
        if step < self.handover:
            return Phase(step, "warmup", 0.0)
        since = step - self.handover
        if since + 1 < self.ramp:  # step handover + N - 1 already has the full weight
            return Phase(step, "ramp", (since + 1) / self.ramp)
        return Phase(step, "joint", 1.0)

    def term_scale(self, phase: Phase, name: str) -> float:
        """Factor on teacher term ``name``'s configured weight in ``phase`` (0: the term does not train)."""
        if is_distill_term(name):
            return phase.distill_scale
        if phase.warmup:
            return 1.0 if name in self.warmup_terms else 0.0
        return 1.0

    def builds(self, phase: Phase, name: str) -> bool:
        """Whether the step builds the inputs of teacher term ``name`` in ``phase`` (future frames, scene edits and
        the planner feature for the distillation cost a pass each; a warm-up skips those it does not train)."""
        return self.term_scale(phase, name) > 0.0


class PlannerFreeze:
    """Freezes and unfreezes the planner of a joint model for the teacher warm-up (module docstring).

    The trainable flags are taken once, at construction (before any warm-up), and restored at the handover.
    """

    def __init__(self, planner: nn.Module) -> None:
        self.planner = planner
        self._trainable = tuple(p.requires_grad for p in planner.parameters())
        self.frozen = False

    def apply(self, frozen: bool) -> None:
        """Freeze (eval mode, no gradient) or restore (train mode, the original flags). Idempotent: called before
        every training step, since the trainer puts the whole model back in train mode after validation."""
        if frozen:
            self.planner.eval()
            for p in self.planner.parameters():
                p.requires_grad_(False)
        else:
            if self.frozen:
                for p, flag in zip(self.planner.parameters(), self._trainable, strict=True):
                    p.requires_grad_(flag)
            self.planner.train()
        self.frozen = frozen


__all__ = ["Phase", "PlannerFreeze", "Stage2Phases"]
