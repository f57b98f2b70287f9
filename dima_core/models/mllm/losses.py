"""DiMA stage-2 loss terms (a)-(f) on the teacher's outputs, the Drive-KD attention option, and the weighted sum.

(a) VQA: next-token CE on answer tokens (labels -100 elsewhere).      (b) MLLM planning: L1, masked by GT validity.
(c) Masked BEV reconstruction: L2 on masked tokens only.             (d) Future BEV: L2 vs detached future tokens.
(e) Scene editing: L1 to the edited ego label + a collision hinge against the added car (its QA pairs enter (a)).
(f) KL distillation (:mod:`dima_core.models.mllm.distill`); its Drive-KD multi-teacher extension adds one term
``distill_<name>`` per extra teacher signal (:class:`~dima_core.models.mllm.distill.MultiTeacherDistiller`).
Every term returns a finite scalar, 0 (with a graph) when it has nothing to supervise, so weighted sums and
``backward`` never see NaN.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F

from dima_core.constants import EGO_FOOTPRINT_FORWARD_OFFSET_M, EGO_LENGTH_M, EGO_WIDTH_M
from dima_core.models.mllm.config import LossWeights
from dima_core.models.mllm.prompt import IGNORE_INDEX


def _zero(like: torch.Tensor) -> torch.Tensor:
    """A 0 that keeps ``like``'s graph (so backward works even when a term is empty)."""
    return like.sum() * 0.0


def vqa_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(a) Mean next-token CE over answer tokens.

    Args:
        logits: (B, L, V) LM logits.
        labels: (B, L) token ids, IGNORE_INDEX where not supervised.
    """
    shift_logits = logits[:, :-1].float()
    shift_labels = labels[:, 1:]
    if not (shift_labels != IGNORE_INDEX).any():
        return _zero(shift_logits)
    return F.cross_entropy(
        shift_logits.reshape(-1, shift_logits.shape[-1]), shift_labels.reshape(-1), ignore_index=IGNORE_INDEX
    )


def answer_token_loss(hidden: torch.Tensor, labels: torch.Tensor, lm_head: torch.nn.Module) -> torch.Tensor:
    """(a) as :func:`vqa_loss`, with the LM head applied only where a label is supervised.

    The full ``(B, L, V)`` logits of a prompt are mostly unsupervised (the scene slots and the question); with a
    49 k vocabulary they cost a matrix product, its backward and their memory per pass. Equal to
    ``vqa_loss(lm_head(hidden), labels)`` (the same tokens, the same mean).

    Args:
        hidden: (B, L, D) the LLM's last hidden states (after its final norm). labels: (B, L) as :func:`vqa_loss`.
        lm_head: the LLM's output embedding (D -> V).
    """
    shift_labels = labels[:, 1:]
    keep = shift_labels != IGNORE_INDEX
    if not keep.any():
        return _zero(hidden)
    logits = lm_head(hidden[:, :-1][keep]).float()
    return F.cross_entropy(logits, shift_labels[keep])


def select_mode(trajectories: torch.Tensor, command: torch.Tensor) -> torch.Tensor:
    """(B, M, T, 2), (B,) -> (B, T, 2): the command's mode (VAD: the planner is supervised on that mode only)."""
    b, _, t, d = trajectories.shape
    return torch.gather(trajectories, 1, command.long().view(b, 1, 1, 1).expand(b, 1, t, d)).squeeze(1)


def planning_l1(
    trajectories: torch.Tensor, command: torch.Tensor, gt: torch.Tensor, gt_mask: torch.Tensor
) -> torch.Tensor:
    """(b) Mean L1 (over x, y and valid steps) between the command's mode and the GT ego future.

    Args:
        trajectories: (B, M, T, 2) predicted positions. command: (B,). gt: (B, T, 2). gt_mask: (B, T) bool.
    """
    pred = select_mode(trajectories, command)
    mask = gt_mask.to(pred.dtype).unsqueeze(-1)
    denom = mask.sum() * 2
    if denom == 0:
        return _zero(pred)
    return ((pred - gt.to(pred.dtype)).abs() * mask).sum() / denom


def token_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean over tokens of the squared L2 distance per token, divided by C (= MSE). (B, K, C) each."""
    if pred.numel() == 0:
        return _zero(pred)
    return F.mse_loss(pred.float(), target.float())


def reconstruction_loss(pred: torch.Tensor, target_masked: torch.Tensor, detach_target: bool = True) -> torch.Tensor:
    """(c) L2 between predictions at the masked positions (B, K, C) and the original tokens there (B, K, C)."""
    return token_l2(pred, target_masked.detach() if detach_target else target_masked)


def future_loss(
    preds: dict[int, torch.Tensor],
    targets: dict[int, torch.Tensor],
    valid: dict[int, torch.Tensor] | None = None,
) -> torch.Tensor:
    """(d) Sum over future offsets of the L2 to the encoder's tokens of those frames, always detached.

    Args:
        preds: ``{k: (B, K, C)}`` predictions at some positions. targets: ``{k: (B, K, C)}`` the encoder's tokens
        of frame t+k at the same positions. valid: ``{k: (B,) bool}`` samples that have frame t+k (None = all).
    """
    first = next(iter(preds.values()))
    total = _zero(first)
    for k, pred in preds.items():
        if k not in targets:
            continue
        target = targets[k].detach()
        if valid is not None and k in valid:
            keep = valid[k].bool()
            if not keep.any():
                continue
            pred, target = pred[keep], target[keep]
        total = total + token_l2(pred, target)
    return total


def edit_collision_hinge(
    ego: torch.Tensor, agent: torch.Tensor, agent_size: torch.Tensor, margin: float
) -> torch.Tensor:
    """Penetration depth between the ego footprint and an added car (axis-aligned, heading kept at 0 as the planning
    metric keeps the ego's), grown by ``margin``: per step ``min(relu(hx - |dx|), relu(hy - |dy|))``.

    Args:
        ego: (B, T, 2) ego positions. agent: (B, T, 2) the car's centres. agent_size: (B, 2) its (length, width).
    Returns:
        (B, T) >= 0, 0 when the boxes (with margin) are apart.
    """
    centre = ego + torch.tensor([EGO_FOOTPRINT_FORWARD_OFFSET_M, 0.0], device=ego.device, dtype=ego.dtype)
    d = (centre - agent).abs()
    hx = (EGO_LENGTH_M + agent_size[:, 0:1]) / 2 + margin
    hy = (EGO_WIDTH_M + agent_size[:, 1:2]) / 2 + margin
    return torch.minimum(F.relu(hx - d[..., 0]), F.relu(hy - d[..., 1]))


def scene_edit_loss(
    trajectories: torch.Tensor, command: torch.Tensor, targets: dict[str, torch.Tensor], margin: float = 1.0
) -> torch.Tensor:
    """(e) Planning on the edited scene: L1 to the edited ego label + mean collision hinge against added cars.

    Args:
        trajectories: (B, M, T, 2) predictions on the edited scene. command: (B,).
        targets: :func:`~dima_core.models.mllm.scene_editing.edited_plan_targets` output.
    """
    l1 = planning_l1(trajectories, command, targets["ego_future"], targets["ego_mask"])
    valid = targets["agent_valid"]
    if not valid.any():
        return l1
    pred = select_mode(trajectories, command)[valid]
    hinge = edit_collision_hinge(
        pred, targets["agent_future"][valid].to(pred.dtype), targets["agent_size"][valid].to(pred.dtype), margin
    )
    return l1 + hinge.mean()


def attention_distill_loss(
    student_attentions: Sequence[torch.Tensor],
    reference_attentions: Sequence[torch.Tensor],
    layer_pairs: Sequence[tuple[int, int]],
    text_mask: torch.Tensor,
    vision_mask: torch.Tensor,
) -> torch.Tensor:
    """Drive-KD option: MSE between head-averaged text->vision attention at chosen layer pairs.

    Args:
        student_attentions / reference_attentions: per layer (B, H, L, L) attention probabilities (eager attention)
            of the same prompt layout (same tokenizer and query counts, so positions align).
        layer_pairs: (student layer, reference layer); negative indices count from the end.
        text_mask: (B, L) bool, the text (query) rows. vision_mask: (B, L) bool, the BEAM placeholder columns.
    Returns:
        () mean over pairs of the MSE over the (text row, vision column) entries.
    """
    pair_mask = (text_mask.unsqueeze(2) & vision_mask.unsqueeze(1)).float()  # (B, L, L)
    count = pair_mask.sum().clamp_min(1.0)
    total = _zero(student_attentions[0])
    for s, r in layer_pairs:
        a = student_attentions[s].float().mean(dim=1)
        b = reference_attentions[r].float().mean(dim=1).detach()
        total = total + (((a - b) ** 2) * pair_mask).sum() / count
    return total / max(len(layer_pairs), 1)


def total_loss(
    terms: dict[str, torch.Tensor], weights: LossWeights, extra_weights: Mapping[str, float] | None = None
) -> torch.Tensor:
    """Weighted sum of the present terms; keys are :class:`LossWeights` field names or keys of ``extra_weights``
    (the multi-teacher terms ``distill_<name>``, :meth:`MllmConfig.extra_term_weights`)."""
    extra = extra_weights or {}
    out: torch.Tensor | None = None
    for name, value in terms.items():
        weighted = (extra[name] if name in extra else getattr(weights, name)) * value
        out = weighted if out is None else out + weighted
    if out is None:
        raise ValueError("total_loss: no loss terms")
    return out


__all__ = [
    "attention_distill_loss",
    "edit_collision_hinge",
    "future_loss",
    "planning_l1",
    "reconstruction_loss",
    "scene_edit_loss",
    "select_mode",
    "token_l2",
    "total_loss",
    "vqa_loss",
]
