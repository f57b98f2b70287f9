"""Surrogate (f): distillation between the planner's and the MLLM planning head's penultimate ego features, and
the Drive-KD multi-teacher extension.

The distance is ``distill.kind`` (:func:`feature_distance`; ``s`` the student, ``t`` the teacher feature, (B, C)):

- ``kl`` (DiMA, the default): each feature vector becomes a distribution ``softmax(feature / T)`` over its channels
  and the loss is ``KL(p_t || p_s)``, times ``T^2`` with ``scale_by_t2`` (Hinton's scaling);
- ``l1``: ``mean |s - t|`` over batch and channels;
- ``l2``: ``mean (s - t)^2`` over batch and channels (the squared error; Orion-Lite's L2 feature imitation);
- ``cosine``: ``mean over the batch of 1 - cos(s, t)`` (scale-free).

``l1``/``l2``/``cosine`` compare the raw features (Orion-Lite, CVPRW 2026: feature imitation plus the GT trajectory
loss beat either alone, and L1 gave fewer collisions than KL). Every kind is >= 0 and exactly 0 when the features
are equal. With ``student="planner"`` (the default) the loss flows into the planner (and through it the shared
scene encoder); the MLLM side is detached unless ``detach_teacher`` is False. When the widths differ, a learned
linear projection maps the MLLM feature into the planner's width (the dual inference mode reuses it); it sits
after the detach, so it is trained by the distillation. Equal widths (the default configs) need no projection.

Multi-teacher (``multi_teacher`` in the MLLM config, off by default): Drive-KD distils one teacher per capability,
taken from different depths of the teacher (layer 1 for perception, intermediate layers for reasoning, the
penultimate layer for planning), and mixes them with per-capability weights. Our student has one distilled
capability, the planner's penultimate ego feature, so :class:`MultiTeacherDistiller` adds one term per extra
teacher: the LLM's hidden state at ``<plan>`` after a configured layer, as a fixed target (detached, parameter-free
LayerNorm so layers of very different scale give comparable targets), matched by a learned regressor of the
planner's feature (FitNets' hint regressor, on the student side so the target cannot drift towards the student).
(f) stays the planning teacher; the weights of (f) and of the extra terms form the planner's row of the mixing
matrix.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from dima_core.models.mllm.config import DistillConfig, DistillKind, HiddenStateTeacher

DISTILL_KINDS: tuple[str, ...] = ("kl", "l1", "l2", "cosine")


def kl_divergence(
    teacher_feature: torch.Tensor, student_feature: torch.Tensor, temperature: float, scale_by_t2: bool = True
) -> torch.Tensor:
    """Mean over the batch of ``KL(softmax(t / T) || softmax(s / T))``.

    Args:
        teacher_feature: (B, C) target-side feature.
        student_feature: (B, C) feature being pulled towards the target.
    Returns:
        () scalar, >= 0, exactly 0 when the features are equal.
    """
    log_p_teacher = F.log_softmax(teacher_feature.float() / temperature, dim=-1)
    log_p_student = F.log_softmax(student_feature.float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return kl * (temperature**2) if scale_by_t2 else kl


def feature_distance(
    student: torch.Tensor,
    teacher: torch.Tensor,
    kind: DistillKind,
    temperature: float = 1.0,
    scale_by_t2: bool = True,
) -> torch.Tensor:
    """The distillation distance ``kind`` between two (B, C) features (formulas in the module docstring).

    Computed in fp32. ``teacher`` is used as given: detach it first when it must not receive a gradient.
    ``temperature`` and ``scale_by_t2`` apply to ``kl`` only. A zero vector counts as orthogonal for ``cosine``, so
    the value stays finite.
    Returns:
        () scalar >= 0, exactly 0 when ``student`` equals ``teacher``.
    """
    if student.shape != teacher.shape:
        raise ValueError(
            f"feature_distance needs equal shapes, got student {tuple(student.shape)} and teacher "
            f"{tuple(teacher.shape)}"
        )
    s, t = student.float(), teacher.float()
    if kind == "kl":
        return kl_divergence(t, s, temperature, scale_by_t2)
    if kind == "l1":
        return (s - t).abs().mean()
    if kind == "l2":
        return (s - t).square().mean()
    if kind == "cosine":
        cos = F.cosine_similarity(s, t, dim=-1, eps=1e-8)
        return (1.0 - cos).clamp_min(0.0).mean()
    raise ValueError(f"unknown distillation kind {kind!r} (one of {', '.join(DISTILL_KINDS)})")


class FeatureDistiller(nn.Module):
    """Distillation (``cfg.kind``) between the planner's (B, C_plan) and the MLLM's (B, C_mllm) penultimate ego
    features.

    ``project`` maps MLLM features into the planner's width (identity when the widths match).
    """

    def __init__(self, planner_dim: int, mllm_dim: int, cfg: DistillConfig):
        super().__init__()
        if cfg.kind not in DISTILL_KINDS:
            raise ValueError(f"distill.kind {cfg.kind!r} is not one of {', '.join(DISTILL_KINDS)}")
        self.cfg = cfg
        self.project: nn.Module = nn.Identity() if planner_dim == mllm_dim else nn.Linear(mllm_dim, planner_dim)

    def sides(self, planner_feature: torch.Tensor, mllm_feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(teacher, student)`` features, both (B, C_plan), with ``student``/``detach_teacher`` applied."""
        if self.cfg.student == "planner":
            # Detach *before* the projection: the MLLM gets no gradient, but a width-bridging projection still
            # learns (it is the only trainable part on that side; dual mode reuses it).
            mllm = mllm_feature.detach() if self.cfg.detach_teacher else mllm_feature
            return self.project(mllm), planner_feature
        teacher = planner_feature.detach() if self.cfg.detach_teacher else planner_feature
        return teacher, self.project(mllm_feature)

    def forward(self, planner_feature: torch.Tensor, mllm_feature: torch.Tensor) -> torch.Tensor:
        """Args:
            planner_feature: (B, C_plan) the planner's penultimate ego feature.
            mllm_feature: (B, C_mllm) the MLLM planning head's penultimate feature.
        Returns:
            () the distillation loss of kind ``cfg.kind``.
        """
        teacher, student = self.sides(planner_feature, mllm_feature)
        return feature_distance(student, teacher, self.cfg.kind, self.cfg.temperature, self.cfg.scale_by_t2)


def hidden_distill_loss(
    student: torch.Tensor,
    target: torch.Tensor,
    kind: Literal["cosine", "kl"],
    temperature: float = 1.0,
    scale_by_t2: bool = True,
) -> torch.Tensor:
    """Distance between a regressed student feature and a teacher target, both (B, D).

    ``cosine``: mean over the batch of ``1 - cos(student, target)`` (0 when parallel; a zero vector counts as
    orthogonal, so the value stays finite). ``kl``: :func:`kl_divergence` with the target as the teacher side.
    The target is used as given: detach it first when it must not receive a gradient.
    Returns:
        () scalar >= 0, exactly 0 when ``student`` equals ``target``.
    """
    if kind not in ("cosine", "kl"):
        raise ValueError(f"unknown hidden distillation loss {kind!r} (cosine, kl)")
    return feature_distance(student, target, kind, temperature, scale_by_t2)


class MultiTeacherDistiller(nn.Module):
    """Drive-KD multi-teacher distillation into the planner's ego feature (module docstring).

    Args:
        planner_dim: C_plan, the planner's penultimate ego feature width.
        llm_dim: D_llm, the teacher LLM's hidden width.
        teachers: the extra teacher signals (:class:`HiddenStateTeacher`), one loss term each.
        distill: (f)'s settings (temperature and T^2 scaling of the ``kl`` kind).
        num_hidden_states: ``len(hidden_states)`` of the LLM (decoder layers + 1) to check the layer indices now
            rather than at the first step; None skips the early check.
    """

    def __init__(
        self,
        planner_dim: int,
        llm_dim: int,
        teachers: Sequence[HiddenStateTeacher],
        distill: DistillConfig,
        num_hidden_states: int | None = None,
    ) -> None:
        super().__init__()
        self.teachers = list(teachers)
        self.distill = distill
        if num_hidden_states is not None:
            for t in self.teachers:
                self._check_layer(t, num_hidden_states)
        # One regressor per teacher: each target lives in its own layer's space.
        self.regressors = nn.ModuleDict({t.name: nn.Linear(planner_dim, llm_dim) for t in self.teachers})

    @staticmethod
    def _check_layer(teacher: HiddenStateTeacher, num_hidden_states: int) -> None:
        if not -num_hidden_states <= teacher.layer < num_hidden_states or teacher.layer in (0, -num_hidden_states):
            raise ValueError(
                f"multi_teacher '{teacher.name}': layer {teacher.layer} is outside the LLM's decoder layers "
                f"(1..{num_hidden_states - 1} or -1..-{num_hidden_states - 1})"
            )

    def targets(self, hidden_states: Sequence[torch.Tensor], plan_positions: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teachers' fixed targets ``{name: (B, D_llm)}``.

        Args:
            hidden_states: the LLM's ``hidden_states`` (index 0 = embeddings), each (B, L, D_llm).
            plan_positions: (B, 1) sequence position of ``<plan>`` per sample.
        """
        out = {}
        for t in self.teachers:
            self._check_layer(t, len(hidden_states))
            h = hidden_states[t.layer]
            at_plan = torch.gather(h, 1, plan_positions.view(-1, 1, 1).expand(-1, 1, h.shape[-1])).squeeze(1)
            target = at_plan.detach().float()
            out[t.name] = F.layer_norm(target, (target.shape[-1],))
        return out

    def forward(
        self, planner_feature: torch.Tensor, hidden_states: Sequence[torch.Tensor], plan_positions: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Args:
            planner_feature: (B, C_plan) the planner's penultimate ego feature (the student).
            hidden_states / plan_positions: as in :meth:`targets`.
        Returns:
            ``{name: () loss}``, unweighted (the weights are the teachers' ``weight``).
        """
        targets = self.targets(hidden_states, plan_positions)
        losses = {}
        for t in self.teachers:
            student = self.regressors[t.name](planner_feature.to(self.regressors[t.name].weight.dtype))
            losses[t.name] = hidden_distill_loss(
                student, targets[t.name], t.loss, self.distill.temperature, self.distill.scale_by_t2
            )
        return losses


def dual_mode_feature(
    planner_feature: torch.Tensor, mllm_feature: torch.Tensor, project: nn.Module | None = None
) -> torch.Tensor:
    """DiMA-Dual's fused ego feature: the elementwise max of both penultimate features.

    Args:
        planner_feature: (B, C_plan).
        mllm_feature: (B, C_mllm); ``project`` maps it to C_plan first when given.
    Returns:
        (B, C_plan) ``torch.maximum`` of the two.
    """
    if project is not None:
        mllm_feature = project(mllm_feature)
    if mllm_feature.shape != planner_feature.shape:
        raise ValueError(
            f"dual mode needs equal feature shapes, got {tuple(planner_feature.shape)} and {tuple(mllm_feature.shape)}"
        )
    return torch.maximum(planner_feature, mllm_feature.to(planner_feature.dtype))


def dual_mode_plan(
    planner_feature: torch.Tensor,
    mllm_feature: torch.Tensor,
    final_head: nn.Module,
    project: nn.Module | None = None,
) -> torch.Tensor:
    """Dual inference: the planner's final head applied to :func:`dual_mode_feature`.

    Args:
        final_head: callable (B, C_plan) -> the planner's output (e.g. (B, 3, 6, 2) trajectories).
    Returns:
        whatever ``final_head`` returns for the max-pooled feature.
    """
    return final_head(dual_mode_feature(planner_feature, mllm_feature, project))


__all__ = [
    "DISTILL_KINDS",
    "FeatureDistiller",
    "MultiTeacherDistiller",
    "dual_mode_feature",
    "dual_mode_plan",
    "feature_distance",
    "hidden_distill_loss",
    "kl_divergence",
]
