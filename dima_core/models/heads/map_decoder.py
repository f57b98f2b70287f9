"""Map decoder: MapTR-style hierarchical queries decoded over the BEV into class-labelled polylines.

``Nm`` instance embeddings plus ``P`` point embeddings give ``Nm * P`` point queries (content and positional
parts). Each point query has its own reference point (grid fractions, from its positional part) and runs through
``num_layers`` :class:`DeformableDecoderLayer` s (self-attention over all point queries, deformable BEV
cross-attention, FFN). A point regresses its location relative to its reference in logit space; an instance's
feature is the mean of its point features, which gives its class logits and its Map token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from dima_core.models.attention import MLP, DeformableDecoderLayer, inverse_sigmoid
from dima_core.models.bev_geometry import fraction_to_metric
from dima_core.models.config import MapHeadConfig


@dataclass
class MapOutputs:
    """Outputs of :class:`MapDecoder`."""

    tokens: torch.Tensor  # (B, Nm, C)
    polylines: torch.Tensor  # (B, Nm, P, 2) ego-frame x, y metres
    logits: torch.Tensor  # (B, Nm, num_classes)
    centres: torch.Tensor  # (B, Nm, 2) mean point as BEV grid fractions (col, row)


class MapDecoder(nn.Module):
    """``forward(bev (B, C, H, W)) -> MapOutputs``."""

    def __init__(
        self, config: MapHeadConfig, embed_dim: int, x_range: tuple[float, float], y_range: tuple[float, float]
    ):
        super().__init__()
        self.config = config
        self.x_range, self.y_range = x_range, y_range
        c = embed_dim
        self.instance_embed = nn.Embedding(config.num_vectors, 2 * c)
        self.point_embed = nn.Embedding(config.num_points, 2 * c)
        self.reference = nn.Linear(c, 2)
        self.layers = nn.ModuleList(
            DeformableDecoderLayer(c, config.num_heads, config.ffn_dim, config.num_sample_points, config.dropout)
            for _ in range(config.num_layers)
        )
        self.point_branch = MLP(c, c, 2, 3)
        self.cls_branch = nn.Linear(c, config.num_classes)
        self.token_norm = nn.LayerNorm(c)
        prior = 0.01
        nn.init.constant_(self.cls_branch.bias, -math.log((1 - prior) / prior))
        nn.init.uniform_(self.reference.weight, -0.1, 0.1)
        nn.init.zeros_(self.reference.bias)

    def forward(self, bev: torch.Tensor) -> MapOutputs:
        b, c = bev.shape[:2]
        nm, p = self.config.num_vectors, self.config.num_points
        queries = (self.instance_embed.weight[:, None, :] + self.point_embed.weight[None, :, :]).reshape(nm * p, 2 * c)
        content, pos = queries.split(c, dim=-1)
        x = content[None].expand(b, nm * p, c)
        pos = pos[None].expand(b, nm * p, c)
        reference = self.reference(pos).sigmoid()  # (B, Nm*P, 2)
        maps = bev.unsqueeze(1)
        for layer in self.layers:
            x = layer(x, pos, reference, maps)
        points = (inverse_sigmoid(reference) + self.point_branch(x)).sigmoid().reshape(b, nm, p, 2)
        polylines = fraction_to_metric(points, self.x_range, self.y_range)
        instance = x.reshape(b, nm, p, c).mean(dim=2)
        logits = self.cls_branch(instance)
        return MapOutputs(self.token_norm(instance), polylines, logits, points.mean(dim=2))
