"""Map loss: focal classification + point L1 with Hungarian matching, invariant to how a GT polyline is ordered.

Every GT polyline is expanded into its equivalent orderings: forward and reversed; for a *closed* polyline (first
point equal to the last) of a class in ``closed_classes`` (ped crossings, as MapTR) also every cyclic shift of its
``P - 1`` distinct points in both directions. Matching cost and loss use the ordering closest to the prediction.
Points are compared in coordinates normalised by the perception range, so x and y weigh alike.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dima_core.models.losses.detection import Matches
from dima_core.models.losses.focal import focal_cost, sigmoid_focal_loss
from dima_core.models.losses.matching import hungarian_match


def polyline_orderings(
    polylines: torch.Tensor, labels: torch.Tensor, closed_classes: tuple[int, ...], closed_tol: float = 1e-3
) -> torch.Tensor:
    """``(N, P, 2)`` polylines -> ``(N, S, P, 2)`` equivalent orderings, ``S = max(2, 2 * (P - 1))``.

    Open polylines: forward, reversed (repeated to fill S). Closed ones of ``closed_classes``: all cyclic shifts
    of the first ``P - 1`` points, re-closed, in both directions.
    """
    n, p, _ = polylines.shape
    device = polylines.device
    ar = torch.arange(p, device=device)
    open_orders = torch.stack([ar, ar.flip(0)])  # (2, P)
    if p < 3:
        return polylines[:, open_orders]
    u = p - 1
    shifts = torch.arange(u, device=device)
    cyc = (shifts[:, None] + torch.arange(u, device=device)[None]) % u  # (U, U)
    cyc = torch.cat([cyc, cyc[:, :1]], dim=1)  # re-close: (U, P)
    closed_orders = torch.cat([cyc, cyc.flip(1)])  # (2U, P)
    s = closed_orders.shape[0]
    open_full = open_orders.repeat((s + 1) // 2, 1)[:s]  # (2U, P)
    closed = torch.linalg.norm(polylines[:, 0] - polylines[:, -1], dim=-1) < closed_tol
    if closed_classes:
        cls_ok = (labels[:, None] == torch.tensor(closed_classes, device=device)[None]).any(dim=1)
    else:
        cls_ok = torch.zeros_like(closed)
    use_closed = (closed & cls_ok)[:, None, None]  # (N, 1, 1)
    orders = torch.where(use_closed, closed_orders[None], open_full[None])  # (N, S, P)
    return torch.gather(polylines[:, None].expand(n, s, p, 2), 2, orders[..., None].expand(n, s, p, 2))


def _normalise(points: torch.Tensor, x_range: tuple[float, float], y_range: tuple[float, float]) -> torch.Tensor:
    scale = torch.tensor([x_range[1] - x_range[0], y_range[1] - y_range[0]], dtype=points.dtype, device=points.device)
    return points / scale


def match_map(
    logits: torch.Tensor,
    polylines: torch.Tensor,
    gt_polylines: torch.Tensor,
    gt_labels: torch.Tensor,
    gt_mask: torch.Tensor,
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    closed_classes: tuple[int, ...],
    cls_weight: float,
    pts_weight: float,
    alpha: float,
    gamma: float,
) -> tuple[Matches, list[torch.Tensor]]:
    """Hungarian matching per sample; cost = ``cls_weight * focal + pts_weight * min-ordering mean L1``.

    Returns the matches and, per sample, the ``(M_b, P, 2)`` matched GT in its best ordering (metres).
    """
    queries, gts, targets = [], [], []
    with torch.no_grad():
        pred_n = _normalise(polylines, x_range, y_range)
        for b in range(logits.shape[0]):
            valid = torch.nonzero(gt_mask[b].bool(), as_tuple=False).squeeze(1)
            orders = polyline_orderings(gt_polylines[b, valid], gt_labels[b, valid], closed_classes)  # (G,S,P,2)
            orders_n = _normalise(orders, x_range, y_range)
            # (Nm, G, S): mean L1 over points and coordinates
            l1 = (pred_n[b][:, None, None] - orders_n[None]).abs().mean(dim=(-1, -2))
            pts_cost, best = l1.min(dim=-1)
            cost = cls_weight * focal_cost(logits[b], gt_labels[b, valid], alpha, gamma) + pts_weight * pts_cost
            q, g = hungarian_match(cost)
            queries.append(q)
            gts.append(valid[g])
            targets.append(orders[g, best[q, g]])
    return Matches(queries, gts), targets


def map_loss(
    logits: torch.Tensor,
    polylines: torch.Tensor,
    gt_labels: torch.Tensor,
    matches: Matches,
    matched_targets: list[torch.Tensor],
    x_range: tuple[float, float],
    y_range: tuple[float, float],
    alpha: float,
    gamma: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(focal classification, point L1, direction)`` losses.

    Classification sums over all queries / ``max(#matched, 1)``; point L1 sums both normalised coordinates and
    averages over matched points; direction is ``1 - cos`` between matched consecutive-point directions.
    """
    num_classes = logits.shape[-1]
    targets = torch.zeros_like(logits)
    preds, gts = [], []
    for b, (q, g) in enumerate(zip(matches.query, matches.gt, strict=True)):
        if q.numel():
            targets[b, q] = F.one_hot(gt_labels[b, g].long(), num_classes).to(logits.dtype)
        preds.append(polylines[b, q])
        gts.append(matched_targets[b])
    norm = max(matches.num_matched, 1)
    cls = sigmoid_focal_loss(logits, targets, alpha, gamma) / norm
    zero = 0.0 * polylines.sum() + 0.0
    pred = _normalise(torch.cat(preds), x_range, y_range)
    gt = _normalise(torch.cat(gts), x_range, y_range)
    if pred.shape[0] == 0:
        return cls, zero, zero
    pts = (pred - gt).abs().sum(-1).mean() + zero
    pd, gd = pred[:, 1:] - pred[:, :-1], gt[:, 1:] - gt[:, :-1]
    direction = (1 - F.cosine_similarity(pd, gd, dim=-1, eps=1e-6)).mean() + zero
    return cls, pts, direction
