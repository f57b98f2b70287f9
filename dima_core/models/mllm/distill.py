"""Surrogate (f): KL distillation between the planner's and the MLLM planning head's penultimate ego features.

Each feature vector becomes a distribution ``softmax(feature / T)`` over its channels. With ``student="planner"``
(the default) the loss is ``KL(p_mllm || p_planner)`` and flows into the planner (and through it the shared scene
encoder); the MLLM side is detached unless ``detach_teacher`` is False. When the widths differ, a learned linear
projection maps the MLLM feature into the planner's width (the dual inference mode reuses it); it sits after the
detach, so it is trained by the KL. Equal widths (the default configs) need no projection.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from dima_core.models.mllm.config import DistillConfig


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


class FeatureDistiller(nn.Module):
    """KL between the planner's (B, C_plan) and the MLLM's (B, C_mllm) penultimate ego features.

    ``project`` maps MLLM features into the planner's width (identity when the widths match).
    """

    def __init__(self, planner_dim: int, mllm_dim: int, cfg: DistillConfig):
        super().__init__()
        self.cfg = cfg
        self.project: nn.Module = nn.Identity() if planner_dim == mllm_dim else nn.Linear(mllm_dim, planner_dim)

    def forward(self, planner_feature: torch.Tensor, mllm_feature: torch.Tensor) -> torch.Tensor:
        """Args:
            planner_feature: (B, C_plan) the planner's penultimate ego feature.
            mllm_feature: (B, C_mllm) the MLLM planning head's penultimate feature.
        Returns:
            () the KL loss.
        """
        if self.cfg.student == "planner":
            # Detach *before* the projection: the MLLM gets no gradient, but a width-bridging projection still
            # learns (it is the only trainable part on that side; dual mode reuses it).
            mllm = mllm_feature.detach() if self.cfg.detach_teacher else mllm_feature
            teacher, student = self.project(mllm), planner_feature
        else:
            teacher = planner_feature.detach() if self.cfg.detach_teacher else planner_feature
            student = self.project(mllm_feature)
        return kl_divergence(teacher, student, self.cfg.temperature, self.cfg.scale_by_t2)


def dual_mode_feature(
    planner_feature: torch.Tensor, mllm_feature: torch.Tensor, project: Optional[nn.Module] = None
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
    project: Optional[nn.Module] = None,
) -> torch.Tensor:
    """Dual inference: the planner's final head applied to :func:`dual_mode_feature`.

    Args:
        final_head: callable (B, C_plan) -> the planner's output (e.g. (B, 3, 6, 2) trajectories).
    Returns:
        whatever ``final_head`` returns for the max-pooled feature.
    """
    return final_head(dual_mode_feature(planner_feature, mllm_feature, project))


__all__ = ["FeatureDistiller", "dual_mode_feature", "dual_mode_plan", "kl_divergence"]
