"""Planning transformer (VAD's ego-agent / ego-map interaction) with a command-conditioned trajectory head.

The Ego token attends to the Agent tokens (keys carry a positional embedding of the predicted box centres) and,
separately, to the Map tokens (keys at the polyline centres); the ego query sits at the BEV cell of the ego origin.
``[ego-agent feature, ego-map feature, ego token]`` is fused into the **penultimate ego feature**
``(B, C_plan)`` — DiMA's distillation target, and the input of :meth:`PlanningTransformer.decode` so that a feature
from elsewhere (DiMA-Dual: max-pool of planner and MLLM features) can be decoded by the same head.

The head emits ``num_commands`` trajectories of ``T`` per-step offsets; their cumulative sum gives positions in the
ego frame ``(B, num_commands, T, 2)``. The command (0 right, 1 left, 2 straight, VAD's order) selects one.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dima_core.models.attention import MLP, CrossAttentionLayer
from dima_core.models.bev_geometry import metric_to_fraction
from dima_core.models.config import PlannerConfig


def select_by_command(trajectories: torch.Tensor, command: torch.Tensor) -> torch.Tensor:
    """``trajectories (B, M, T, 2)``, ``command (B,)`` int64 -> ``(B, T, 2)``, mode ``command[b]`` of sample b."""
    b, _, t, d = trajectories.shape
    index = command.long().view(b, 1, 1, 1).expand(b, 1, t, d)
    return torch.gather(trajectories, 1, index).squeeze(1)


@dataclass
class PlanOutputs:
    trajectories: torch.Tensor  # (B, num_commands, T, 2)
    trajectory: torch.Tensor  # (B, T, 2)
    ego_feature: torch.Tensor  # (B, C_plan)


class PlanningTransformer(nn.Module):
    """``forward(ego (B, 1, C), agents (B, Na, C), agent_centres (B, Na, 2), map_tokens (B, Nm, C),
    map_centres (B, Nm, 2), command (B,)) -> PlanOutputs``; centres are BEV grid fractions (col, row)."""

    def __init__(
        self, config: PlannerConfig, embed_dim: int, x_range: tuple[float, float], y_range: tuple[float, float]
    ):
        super().__init__()
        self.config = config
        c = embed_dim
        self.pos_encoder = MLP(2, c, c, 2)
        origin = metric_to_fraction(torch.zeros(1, 1, 2), x_range, y_range)
        self.register_buffer("ego_position", origin, persistent=False)  # (1, 1, 2)
        self.ego_agent = CrossAttentionLayer(c, config.num_heads, config.ffn_dim, config.dropout)
        self.ego_map = CrossAttentionLayer(c, config.num_heads, config.ffn_dim, config.dropout)
        self.fuse = nn.Sequential(
            nn.Linear(3 * c, config.feature_dim), nn.LayerNorm(config.feature_dim), nn.ReLU(inplace=True)
        )
        self.head = MLP(config.feature_dim, config.feature_dim, config.num_commands * config.future_steps * 2, 2)

    def encode(
        self,
        ego: torch.Tensor,
        agents: torch.Tensor,
        agent_centres: torch.Tensor,
        map_tokens: torch.Tensor,
        map_centres: torch.Tensor,
    ) -> torch.Tensor:
        """The penultimate ego feature ``(B, C_plan)``."""
        ego_pos = self.pos_encoder(self.ego_position)
        e_agent = self.ego_agent(ego, agents, ego_pos, self.pos_encoder(agent_centres.detach()))
        e_map = self.ego_map(ego, map_tokens, ego_pos, self.pos_encoder(map_centres.detach()))
        return self.fuse(torch.cat([e_agent, e_map, ego], dim=-1).squeeze(1))

    def decode(self, ego_feature: torch.Tensor) -> torch.Tensor:
        """Final head on a penultimate feature ``(B, C_plan)`` -> positions ``(B, num_commands, T, 2)``."""
        b = ego_feature.shape[0]
        offsets = self.head(ego_feature).view(b, self.config.num_commands, self.config.future_steps, 2)
        return offsets.cumsum(dim=2)

    def forward(
        self,
        ego: torch.Tensor,
        agents: torch.Tensor,
        agent_centres: torch.Tensor,
        map_tokens: torch.Tensor,
        map_centres: torch.Tensor,
        command: torch.Tensor,
    ) -> PlanOutputs:
        feature = self.encode(ego, agents, agent_centres, map_tokens, map_centres)
        trajectories = self.decode(feature)
        return PlanOutputs(trajectories, select_by_command(trajectories, command), feature)
