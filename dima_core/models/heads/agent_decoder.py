"""Agent decoder: Na detection queries decoded over the BEV into 3D boxes, classes, velocities and K-mode futures.

Detection (VAD / Deformable-DETR style): each query has a content part, a positional part and a reference point
(grid fractions, predicted from the positional part); ``num_layers`` :class:`DeformableDecoderLayer` s (query
self-attention, deformable BEV cross-attention, FFN). The box centre is predicted relative to the reference in
logit space (``sigmoid(inverse_sigmoid(ref) + delta)``), so every query starts from its own BEV location.

Motion (VAD's motion decoder): K learned mode embeddings are added to every agent feature, giving ``Na * K`` mode
queries that attend to all agents (agent-agent interaction) and, when given, to the map tokens (agent-map
interaction), each key carrying a positional embedding of its BEV location. An MLP emits per-step offsets that are
cumulatively summed and added to the box centre; a second MLP scores the modes.

Agent token = LayerNorm(detection feature + max over modes of the motion feature).

Raw box parameters per query: ``(d_col, d_row, z, log w, log l, log h, sin yaw, cos yaw, vx, vy)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dima_core.models.attention import MLP, CrossAttentionLayer, DeformableDecoderLayer, inverse_sigmoid
from dima_core.models.bev_geometry import fraction_to_metric
from dima_core.models.config import AgentHeadConfig

BOX_PARAMS = 10


@dataclass
class AgentOutputs:
    """Outputs of :class:`AgentDecoder` (shapes as in :class:`~dima_core.models.beam.BeamTokens`)."""

    tokens: torch.Tensor  # (B, Na, C)
    boxes: torch.Tensor  # (B, Na, 7) x, y, z, w, l, h, yaw
    logits: torch.Tensor  # (B, Na, num_classes)
    velocities: torch.Tensor  # (B, Na, 2)
    trajectories: torch.Tensor  # (B, Na, K, T, 2) positions
    mode_logits: torch.Tensor  # (B, Na, K)
    centres: torch.Tensor  # (B, Na, 2) box centres as BEV grid fractions (col, row)


class AgentDecoder(nn.Module):
    """``forward(bev (B, C, H, W), map_tokens (B, Nm, C) | None, map_centres (B, Nm, 2) | None) -> AgentOutputs``.

    ``map_centres`` are grid fractions (col, row) of the map instances.
    """

    def __init__(
        self, config: AgentHeadConfig, embed_dim: int, x_range: tuple[float, float], y_range: tuple[float, float]
    ):
        super().__init__()
        self.config = config
        self.x_range, self.y_range = x_range, y_range
        c = embed_dim
        self.query_embed = nn.Embedding(config.num_queries, 2 * c)
        self.reference = nn.Linear(c, 2)
        self.layers = nn.ModuleList(
            DeformableDecoderLayer(c, config.num_heads, config.ffn_dim, config.num_points, config.dropout)
            for _ in range(config.num_layers)
        )
        self.cls_branch = nn.Linear(c, config.num_classes)
        self.reg_branch = MLP(c, c, BOX_PARAMS, 3)
        # motion
        self.mode_embed = nn.Embedding(config.num_modes, c)
        self.pos_encoder = MLP(2, c, c, 2)
        self.agent_interaction = CrossAttentionLayer(c, config.num_heads, config.ffn_dim, config.dropout)
        self.map_interaction = CrossAttentionLayer(c, config.num_heads, config.ffn_dim, config.dropout)
        self.traj_branch = MLP(c, c, config.future_steps * 2, 3)
        self.mode_branch = MLP(c, c, 1, 2)
        self.token_norm = nn.LayerNorm(c)
        prior = 0.01
        nn.init.constant_(self.cls_branch.bias, -math.log((1 - prior) / prior))
        nn.init.uniform_(self.reference.weight, -0.1, 0.1)
        nn.init.zeros_(self.reference.bias)

    def forward(
        self, bev: torch.Tensor, map_tokens: torch.Tensor | None = None, map_centres: torch.Tensor | None = None
    ) -> AgentOutputs:
        b, c = bev.shape[:2]
        cfg = self.config
        na, k, t = cfg.num_queries, cfg.num_modes, cfg.future_steps
        content, pos = self.query_embed.weight.split(c, dim=-1)
        x = content[None].expand(b, na, c)
        pos = pos[None].expand(b, na, c)
        reference = self.reference(pos).sigmoid()  # (B, Na, 2)
        maps = bev.unsqueeze(1)
        for layer in self.layers:
            x = layer(x, pos, reference, maps)

        raw = self.reg_branch(x)
        centres = (inverse_sigmoid(reference) + raw[..., 0:2]).sigmoid()
        xy = fraction_to_metric(centres, self.x_range, self.y_range)
        size = raw[..., 3:6].clamp(-5.0, 5.0).exp()
        yaw = torch.atan2(raw[..., 6], raw[..., 7])
        boxes = torch.cat([xy, raw[..., 2:3], size, yaw.unsqueeze(-1)], dim=-1)
        logits = self.cls_branch(x)
        velocities = raw[..., 8:10]

        # motion: (B, Na*K, C) mode queries
        agent_pos = self.pos_encoder(centres.detach())
        modes = (x[:, :, None, :] + self.mode_embed.weight[None, None]).reshape(b, na * k, c)
        mode_pos = agent_pos[:, :, None, :].expand(b, na, k, c).reshape(b, na * k, c)
        modes = self.agent_interaction(modes, x, mode_pos, agent_pos)
        if map_tokens is not None:
            map_pos = None if map_centres is None else self.pos_encoder(map_centres.detach())
            modes = self.map_interaction(modes, map_tokens, mode_pos, map_pos)
        modes = modes.reshape(b, na, k, c)
        offsets = self.traj_branch(modes).reshape(b, na, k, t, 2)
        trajectories = xy[:, :, None, None, :] + offsets.cumsum(dim=3)
        mode_logits = self.mode_branch(modes).squeeze(-1)
        tokens = self.token_norm(x + modes.max(dim=2)[0])
        return AgentOutputs(tokens, boxes, logits, velocities, trajectories, mode_logits, centres)
