"""Detection loss (focal classification + L1 box regression, Hungarian-matched) and motion loss (minADE mode).

Box regression targets, VAD's ``normalize_bbox`` form: ``(x, y, z, log w, log l, log h, sin yaw, cos yaw)`` in
metres plus ``(vx, vy)`` with code weight 0.2 (VAD's ``code_weights``). Ground-truth velocities that are not finite
(the devkit returns NaN when it cannot estimate one) are ignored.

Motion: for every matched agent with at least one valid future step, the predicted displacements from the
predicted box centre are compared with the GT displacements from the GT box centre (so motion is learnt
independently of the localisation error); the mode with the smallest masked ADE is the target: L1 on that mode
over the valid steps, cross-entropy of the mode logits towards it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from dima_core.models.losses.focal import focal_cost, sigmoid_focal_loss
from dima_core.models.losses.matching import hungarian_match

VELOCITY_CODE_WEIGHT = 0.2


def encode_boxes(boxes: torch.Tensor) -> torch.Tensor:
    """``(..., 7)`` x, y, z, w, l, h, yaw -> ``(..., 8)`` x, y, z, log w, log l, log h, sin yaw, cos yaw."""
    size = boxes[..., 3:6].clamp(min=1e-3).log()
    yaw = boxes[..., 6:7]
    return torch.cat([boxes[..., 0:3], size, yaw.sin(), yaw.cos()], dim=-1)


@dataclass
class Matches:
    """Per-sample Hungarian matches: ``query[b]`` (M_b,) and ``gt[b]`` (M_b,) indices into the padded GT."""

    query: list[torch.Tensor]
    gt: list[torch.Tensor]

    @property
    def num_matched(self) -> int:
        return sum(int(q.numel()) for q in self.query)


def match_agents(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_mask: torch.Tensor,
    cls_weight: float,
    box_weight: float,
    alpha: float,
    gamma: float,
) -> Matches:
    """Hungarian matching per sample; cost = ``cls_weight * focal cost + box_weight * L1(encoded boxes)``.

    ``logits (B, Na, C)``, ``boxes (B, Na, 7)``, ``gt_boxes (B, Ng, 7)``, ``gt_labels (B, Ng)``, ``gt_mask (B, Ng)``.
    """
    queries, gts = [], []
    with torch.no_grad():
        pred_enc = encode_boxes(boxes)
        gt_enc = encode_boxes(gt_boxes)
        for b in range(logits.shape[0]):
            valid = torch.nonzero(gt_mask[b].bool(), as_tuple=False).squeeze(1)
            cost = cls_weight * focal_cost(logits[b], gt_labels[b, valid], alpha, gamma)
            cost = cost + box_weight * torch.cdist(pred_enc[b], gt_enc[b, valid], p=1)
            q, g = hungarian_match(cost)
            queries.append(q)
            gts.append(valid[g])
    return Matches(queries, gts)


def detection_loss(
    logits: torch.Tensor,
    boxes: torch.Tensor,
    velocities: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_velocities: torch.Tensor,
    matches: Matches,
    alpha: float,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(focal classification, L1 box)``, each summed and divided by ``max(#matched, 1)``."""
    num_classes = logits.shape[-1]
    targets = torch.zeros_like(logits)
    pred_parts, gt_parts, vel_pred, vel_gt = [], [], [], []
    for b, (q, g) in enumerate(zip(matches.query, matches.gt, strict=True)):
        if q.numel():
            targets[b, q] = F.one_hot(gt_labels[b, g].long(), num_classes).to(logits.dtype)
        pred_parts.append(encode_boxes(boxes[b, q]))
        gt_parts.append(encode_boxes(gt_boxes[b, g]))
        vel_pred.append(velocities[b, q])
        vel_gt.append(gt_velocities[b, g])
    norm = max(matches.num_matched, 1)
    cls = sigmoid_focal_loss(logits, targets, alpha, gamma) / norm
    pred_enc, gt_enc = torch.cat(pred_parts), torch.cat(gt_parts)
    vp, vg = torch.cat(vel_pred), torch.cat(vel_gt)
    vel_ok = torch.isfinite(vg).all(dim=-1, keepdim=True).to(vp.dtype)
    vel_l1 = (vp - torch.nan_to_num(vg)).abs() * vel_ok
    box = ((pred_enc - gt_enc).abs().sum() + VELOCITY_CODE_WEIGHT * vel_l1.sum()) / norm
    # keep every prediction in the graph even with no GT, so DDP sees all parameters used
    box = box + (0.0 * (boxes.sum() + velocities.sum()) + 0.0)
    return cls, box


def motion_loss(
    trajectories: torch.Tensor,
    mode_logits: torch.Tensor,
    boxes: torch.Tensor,
    gt_boxes: torch.Tensor,
    gt_futures: torch.Tensor,
    gt_future_mask: torch.Tensor,
    matches: Matches,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(L1 on the minADE mode, CE towards that mode)``, averaged over matched agents with a valid future.

    ``trajectories (B, Na, K, T, 2)`` positions, ``mode_logits (B, Na, K)``, ``boxes (B, Na, 7)``,
    ``gt_futures (B, Ng, T, 2)`` positions, ``gt_future_mask (B, Ng, T)``.
    """
    disp_pred, disp_gt, masks, logits = [], [], [], []
    for b, (q, g) in enumerate(zip(matches.query, matches.gt, strict=True)):
        disp_pred.append(trajectories[b, q] - boxes[b, q, None, None, :2])  # (M, K, T, 2)
        disp_gt.append(gt_futures[b, g] - gt_boxes[b, g, None, :2])  # (M, T, 2)
        masks.append(gt_future_mask[b, g].to(trajectories.dtype))  # (M, T)
        logits.append(mode_logits[b, q])
    pred, gt, mask, logit = torch.cat(disp_pred), torch.cat(disp_gt), torch.cat(masks), torch.cat(logits)
    keep = mask.sum(dim=-1) > 0
    zero = 0.0 * (trajectories.sum() + mode_logits.sum()) + 0.0
    if not bool(keep.any()):
        return zero, zero
    pred, gt, mask, logit = pred[keep], gt[keep], mask[keep], logit[keep]
    gt = torch.nan_to_num(gt)
    dist = torch.linalg.norm(pred - gt[:, None], dim=-1)  # (M, K, T)
    ade = (dist * mask[:, None]).sum(-1) / mask.sum(-1, keepdim=True)
    best = ade.argmin(dim=1)  # (M,)
    best_pred = pred[torch.arange(pred.shape[0], device=pred.device), best]  # (M, T, 2)
    reg = ((best_pred - gt).abs() * mask[..., None]).sum() / (mask.sum() * 2)
    cls = F.cross_entropy(logit, best)
    return reg + zero, cls + zero
