"""Ego token: a learnable query, plus (optionally) an embedding of the ego status and of the driving command.

Ego status ``(B, 4)`` = (speed m/s, ax m/s^2, ay m/s^2, yaw rate rad/s) in the ego frame, divided by
``EgoConfig.ego_status_scale`` before a 2-layer MLP; the channels ``EgoConfig.ego_status_channels`` turns off are
zeroed first. With ``use_ego_status: false`` (VAD's default) the input is
accepted but ignored, so the interface (and the ONNX graph's inputs) never change. The command (0 right, 1 left,
2 straight; ``constants.COMMAND_*``) indexes an embedding table.

``forward(ego_status (B, 4), command (B,) int64) -> (B, 1, C)``.
"""

from __future__ import annotations

import torch
from torch import nn

from dima_core.models.attention import MLP
from dima_core.models.config import EgoConfig


class EgoEncoder(nn.Module):
    def __init__(self, config: EgoConfig, embed_dim: int, num_commands: int = 3):
        super().__init__()
        self.config = config
        self.query = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02)
        self.status_mlp = MLP(4, embed_dim, embed_dim, 2) if config.use_ego_status else None
        self.command_embed = nn.Embedding(num_commands, embed_dim) if config.use_command else None
        self.norm = nn.LayerNorm(embed_dim)
        self.register_buffer("status_scale", torch.tensor(config.ego_status_scale), persistent=False)
        self.register_buffer(
            "status_mask", torch.tensor([float(c) for c in config.ego_status_channels]), persistent=False
        )

    def forward(self, ego_status: torch.Tensor, command: torch.Tensor) -> torch.Tensor:
        b = command.shape[0]
        token = self.query.expand(b, 1, self.query.shape[-1])
        if self.status_mlp is not None:
            token = token + self.status_mlp(ego_status * self.status_mask / self.status_scale).unsqueeze(1)
        if self.command_embed is not None:
            token = token + self.command_embed(command).unsqueeze(1)
        return self.norm(token)
