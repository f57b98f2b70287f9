"""Planning losses: imitation L1 and VAD's three planning constraints, in our ego frame (x forward, y left).

All take the command-selected plan ``(B, T, 2)`` (positions) and the GT validity mask ``(B, T)`` and return a
masked mean (zero when nothing is valid). Perception inputs are the model's own predictions (VAD's design).

- :func:`imitation_l1`: mean |plan - GT| over valid steps and both coordinates.
- :func:`collision_loss` (VAD ``PlanCollisionLoss``): agents whose best class score is at least
  ``score_thresh`` (vehicle classes only, optionally) follow their highest-scoring mode; at every step, agents
  within ``radius`` of the waypoint count; with ``d_lon`` / ``d_lat`` the smallest longitudinal / lateral gap to
  a counted agent, the loss is ``relu(lon_thresh - d_lon) + relu(lat_thresh - d_lat)`` (VAD's x/y thresholds
  1.5/3.0 m are lateral/longitudinal in its frame: here lateral 1.5 m, longitudinal 3.0 m).
- :func:`boundary_loss` (VAD ``PlanMapBoundLoss``): ``relu(dis_thresh - d)`` with ``d`` the distance from the
  waypoint to the nearest segment of a confident boundary polyline; zero from the first step whose motion
  segment crosses a boundary on (as VAD: once across, pushing back is not the job of this term).
- :func:`direction_loss` (VAD ``PlanMapDirectionLoss``): ``|heading - lane heading|`` folded to ``[0, pi/2]``
  (a lane has no preferred direction), with the lane heading of the nearest confident divider segment; zero where
  that divider is farther than ``dis_thresh`` or when the plan moves less than ``static_thresh`` in total.
"""

from __future__ import annotations

import math

import torch

_FAR = 1e4


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values (B, T, ...)`` over the steps where ``mask (B, T)`` is set."""
    m = mask.to(values.dtype)
    while m.dim() < values.dim():
        m = m.unsqueeze(-1)
    m = m.expand_as(values)
    return (values * m).sum() / m.sum().clamp(min=1.0)


def imitation_l1(plan: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``plan, gt (B, T, 2)``, ``mask (B, T)`` -> masked mean absolute error."""
    return _masked_mean((plan - torch.nan_to_num(gt)).abs(), mask)


def best_mode_trajectories(trajectories: torch.Tensor, mode_logits: torch.Tensor) -> torch.Tensor:
    """``(B, Na, K, T, 2)``, ``(B, Na, K)`` -> the highest-scoring mode ``(B, Na, T, 2)``."""
    b, na, k, t, d = trajectories.shape
    idx = mode_logits.argmax(dim=-1).view(b, na, 1, 1, 1).expand(b, na, 1, t, d)
    return torch.gather(trajectories, 2, idx).squeeze(2)


def collision_loss(
    plan: torch.Tensor,
    mask: torch.Tensor,
    agent_trajectories: torch.Tensor,
    agent_mode_logits: torch.Tensor,
    agent_logits: torch.Tensor,
    score_thresh: float = 0.5,
    lat_thresh: float = 1.5,
    lon_thresh: float = 3.0,
    radius: float = 3.0,
    vehicle_classes: int | None = 5,
) -> torch.Tensor:
    """Ego-agent collision constraint; ``vehicle_classes``: only class indices below it count (None: all)."""
    futures = best_mode_trajectories(agent_trajectories, agent_mode_logits)  # (B, Na, T, 2)
    scores, classes = agent_logits.sigmoid().max(dim=-1)  # (B, Na)
    confident = scores >= score_thresh
    if vehicle_classes is not None:
        confident = confident & (classes < vehicle_classes)
    delta = plan[:, None] - futures  # (B, Na, T, 2)
    near = confident[..., None] & (torch.linalg.norm(delta, dim=-1) <= radius)  # (B, Na, T)
    far = torch.full_like(delta[..., 0], _FAR)
    d_lon = torch.where(near, delta[..., 0].abs(), far).min(dim=1)[0]  # (B, T)
    d_lat = torch.where(near, delta[..., 1].abs(), far).min(dim=1)[0]
    loss = torch.stack([(lon_thresh - d_lon).clamp(min=0), (lat_thresh - d_lat).clamp(min=0)], dim=-1)
    return _masked_mean(loss, mask)


def _point_segment_distance(points: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor) -> torch.Tensor:
    """Distances between points ``(B, T, 1, 1, 2)`` and segments ``(B, 1, N, S, 2)`` -> ``(B, T, N, S)``."""
    seg = ends - starts
    rel = points - starts
    t = ((rel * seg).sum(-1) / (seg * seg).sum(-1).clamp(min=1e-9)).clamp(0.0, 1.0)
    closest = starts + t[..., None] * seg
    return torch.linalg.norm(points - closest, dim=-1)


def _cross(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]


def _segments_intersect(p0: torch.Tensor, p1: torch.Tensor, q0: torch.Tensor, q1: torch.Tensor) -> torch.Tensor:
    """Proper intersection of broadcastable segments ``p0-p1`` and ``q0-q1`` (parallel ones never intersect)."""
    r, s = p1 - p0, q1 - q0
    denom = _cross(r, s)
    ok = denom.abs() > 1e-9
    safe = torch.where(ok, denom, torch.ones_like(denom))
    t = _cross(q0 - p0, s) / safe
    u = _cross(q0 - p0, r) / safe
    return ok & (t >= 0) & (t <= 1) & (u >= 0) & (u <= 1)


def boundary_loss(
    plan: torch.Tensor,
    mask: torch.Tensor,
    map_polylines: torch.Tensor,
    map_logits: torch.Tensor,
    boundary_class: int = 2,
    score_thresh: float = 0.5,
    dis_thresh: float = 1.0,
) -> torch.Tensor:
    """Ego-boundary overstepping constraint. ``map_polylines (B, Nm, P, 2)``, ``map_logits (B, Nm, num_classes)``."""
    confident = map_logits[..., boundary_class].sigmoid() >= score_thresh  # (B, Nm)
    starts, ends = map_polylines[:, None, :, :-1], map_polylines[:, None, :, 1:]  # (B, 1, Nm, P-1, 2)
    dist = _point_segment_distance(plan[:, :, None, None], starts, ends)  # (B, T, Nm, P-1)
    dist = torch.where(confident[:, None, :, None], dist, torch.full_like(dist, _FAR))
    nearest = dist.flatten(2).min(dim=-1)[0]  # (B, T)
    loss = (dis_thresh - nearest).clamp(min=0)
    prev = torch.cat([torch.zeros_like(plan[:, :1]), plan[:, :-1]], dim=1)
    crosses = _segments_intersect(prev[:, :, None, None], plan[:, :, None, None], starts, ends)  # (B, T, Nm, P-1)
    crosses = (crosses & confident[:, None, :, None]).flatten(2).any(dim=-1)  # (B, T)
    crossed = torch.cummax(crosses.to(plan.dtype), dim=1)[0]
    return _masked_mean(loss * (1 - crossed), mask)


def _safe_heading(vec: torch.Tensor) -> torch.Tensor:
    """``atan2(y, x)`` of ``(..., 2)`` vectors, 0 (with zero gradient) for zero-length vectors."""
    tiny = torch.linalg.norm(vec, dim=-1, keepdim=True) < 1e-6
    safe = torch.where(tiny, torch.tensor([1.0, 0.0], dtype=vec.dtype, device=vec.device), vec)
    return torch.atan2(safe[..., 1], safe[..., 0])


def direction_loss(
    plan: torch.Tensor,
    mask: torch.Tensor,
    map_polylines: torch.Tensor,
    map_logits: torch.Tensor,
    divider_class: int = 0,
    score_thresh: float = 0.5,
    dis_thresh: float = 2.0,
    static_thresh: float = 1.0,
) -> torch.Tensor:
    """Ego-lane direction constraint (see the module docstring)."""
    b, t, _ = plan.shape
    nm, p = map_polylines.shape[1:3]
    confident = map_logits[..., divider_class].sigmoid() >= score_thresh  # (B, Nm)
    starts, ends = map_polylines[:, None, :, :-1], map_polylines[:, None, :, 1:]
    dist = _point_segment_distance(plan[:, :, None, None], starts, ends)  # (B, T, Nm, P-1)
    dist = torch.where(confident[:, None, :, None], dist, torch.full_like(dist, _FAR)).flatten(2)
    nearest, idx = dist.min(dim=-1)  # (B, T)
    seg_dirs = (map_polylines[:, :, 1:] - map_polylines[:, :, :-1]).reshape(b, 1, nm * (p - 1), 2)
    lane_dir = torch.gather(seg_dirs.expand(b, t, nm * (p - 1), 2), 2, idx[..., None, None].expand(b, t, 1, 2))
    lane_yaw = _safe_heading(lane_dir.squeeze(2))
    prev = torch.cat([torch.zeros_like(plan[:, :1]), plan[:, :-1]], dim=1)
    ego_yaw = _safe_heading(plan - prev)
    diff = torch.atan2(torch.sin(ego_yaw - lane_yaw), torch.cos(ego_yaw - lane_yaw))  # (-pi, pi]
    diff = diff.abs()
    diff = torch.minimum(diff, math.pi - diff)  # lanes are undirected: [0, pi/2]
    moving = torch.linalg.norm(plan[:, -1], dim=-1) >= static_thresh  # (B,)
    active = (nearest <= dis_thresh) & moving[:, None]
    return _masked_mean(diff * active.to(diff.dtype), mask)
