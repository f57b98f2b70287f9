"""Sigmoid focal loss and the matching cost derived from it (DETR / Deformable-DETR form)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def sigmoid_focal_loss(
    logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0
) -> torch.Tensor:
    """Element-wise focal loss, summed. ``logits`` and ``targets`` (0/1 floats) share a shape; returns a scalar."""
    p = logits.sigmoid()
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    p_t = p * targets + (1 - p) * (1 - targets)
    loss = ce * (1 - p_t) ** gamma
    if alpha >= 0:
        loss = loss * (alpha * targets + (1 - alpha) * (1 - targets))
    return loss.sum()


def focal_cost(
    logits: torch.Tensor, labels: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0, eps: float = 1e-8
) -> torch.Tensor:
    """Classification matching cost ``(Nq, Ng)``: focal loss of predicting ``labels[g]`` minus that of not.

    ``logits (Nq, num_classes)``, ``labels (Ng,)`` int64.
    """
    p = logits.sigmoid()
    neg = (1 - alpha) * p**gamma * (-(1 - p + eps).log())
    pos = alpha * (1 - p) ** gamma * (-(p + eps).log())
    return pos[:, labels] - neg[:, labels]
