"""Attention building blocks shared by the BEV encoder, the BEAM decoders and the planner.

- :class:`DeformableBevAttention`: each query samples a few learned offsets around its reference point in one or
  more same-sized BEV maps with ``F.grid_sample`` and mixes them with learned softmax weights (Deformable-DETR
  attention, single scale, no custom CUDA op). Used for the BEV self/temporal attention and for the decoders'
  cross-attention to the BEV.
- :class:`DeformableDecoderLayer`: self-attention (``nn.MultiheadAttention``) -> deformable BEV cross-attention ->
  FFN, post-norm, DETR-style positional embeddings added to queries and keys.
- :class:`CrossAttentionLayer`: ``nn.MultiheadAttention`` cross-attention + FFN (planner, motion interaction).
- :class:`MLP`, :func:`inverse_sigmoid`.
"""

from __future__ import annotations

import math
from itertools import pairwise

import torch
import torch.nn.functional as F
from torch import nn


def inverse_sigmoid(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``log(x / (1 - x))`` with ``x`` clamped to ``[eps, 1 - eps]``."""
    x = x.clamp(min=eps, max=1 - eps)
    return torch.log(x / (1 - x))


class MLP(nn.Module):
    """``num_layers`` Linear layers with ReLU between them. ``(..., in_dim) -> (..., out_dim)``."""

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2):
        super().__init__()
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in pairwise(dims))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for k, layer in enumerate(self.layers):
            x = layer(x)
            if k < len(self.layers) - 1:
                x = F.relu(x)
        return x


class FeedForward(nn.Module):
    """Residual FFN with post-norm: ``norm(x + W2 dropout(relu(W1 x)))``. ``(B, N, C) -> (B, N, C)``."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.linear1 = nn.Linear(dim, ffn_dim)
        self.linear2 = nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.dropout(self.linear2(self.dropout(F.relu(self.linear1(x))))))


def _init_offset_bias(bias: torch.Tensor, num_heads: int, num_groups: int, num_points: int) -> None:
    """Deformable-DETR initialisation: head ``h`` looks along direction ``2 pi h / num_heads``, point ``k`` at
    distance ``k + 1`` (in cells/pixels)."""
    theta = torch.arange(num_heads, dtype=torch.float32) * (2.0 * math.pi / num_heads)
    grid = torch.stack([theta.cos(), theta.sin()], -1)
    grid = grid / grid.abs().max(-1, keepdim=True)[0]
    grid = grid.view(num_heads, 1, 1, 2).repeat(1, num_groups, num_points, 1)
    grid = grid * torch.arange(1, num_points + 1, dtype=torch.float32).view(1, 1, num_points, 1)
    with torch.no_grad():
        bias.copy_(grid.flatten())


class DeformableBevAttention(nn.Module):
    """Deformable attention over ``F`` same-sized BEV maps (F = 1, or 2 for [previous aligned, current]).

    ``forward(query (B, Nq, C), reference (B, Nq, 2) grid fractions (col, row) in [0, 1],
    values (B, F, C, H, W)) -> (B, Nq, C)`` (the attention output, *without* residual).

    Each query predicts, per head and map, ``num_points`` offsets (in cells) around its reference and one
    softmax weight per (map, point); samples are bilinear (``grid_sample``, zeros outside the grid).
    """

    def __init__(self, embed_dim: int, num_heads: int, num_maps: int = 1, num_points: int = 4, dropout: float = 0.0):
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim {embed_dim} not divisible by num_heads {num_heads}")
        self.embed_dim, self.num_heads, self.num_maps, self.num_points = embed_dim, num_heads, num_maps, num_points
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_maps * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_maps * num_points)
        self.value_proj = nn.Linear(embed_dim, embed_dim)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.sampling_offsets.weight)
        _init_offset_bias(self.sampling_offsets.bias, num_heads, num_maps, num_points)
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.value_proj.weight)
        nn.init.zeros_(self.value_proj.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, query: torch.Tensor, reference: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        b, nq, c = query.shape
        _, f, _, h, w = values.shape
        heads, pts, ch = self.num_heads, self.num_points, c // self.num_heads
        v = self.value_proj(values.flatten(3).transpose(2, 3))  # (B, F, HW, C)
        v = v.reshape(b, f, h, w, heads, ch).permute(0, 4, 1, 5, 2, 3).reshape(b * heads * f, ch, h, w)
        offsets = self.sampling_offsets(query).view(b, nq, heads, f, pts, 2)
        scale = torch.tensor([float(w), float(h)], dtype=query.dtype, device=query.device)
        loc = reference[:, :, None, None, None, :] + offsets / scale  # (B, Nq, heads, F, P, 2)
        grid = (loc * 2.0 - 1.0).permute(0, 2, 3, 1, 4, 5).reshape(b * heads * f, nq, pts, 2)
        sampled = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        sampled = sampled.view(b, heads, f, ch, nq, pts)
        weights = self.attention_weights(query).view(b, nq, heads, f * pts).softmax(-1)
        weights = weights.view(b, nq, heads, f, pts).permute(0, 2, 3, 1, 4).unsqueeze(3)  # (B, heads, F, 1, Nq, P)
        out = (sampled * weights).sum(dim=(2, 5))  # (B, heads, ch, Nq)
        out = out.permute(0, 3, 1, 2).reshape(b, nq, c)
        return self.dropout(self.output_proj(out))


class DeformableDecoderLayer(nn.Module):
    """Query self-attention -> deformable cross-attention to the BEV -> FFN (post-norm residuals).

    ``forward(x (B, Nq, C), pos (B or 1, Nq, C), reference (B, Nq, 2), bev (B, 1, C, H, W)) -> (B, Nq, C)``.
    """

    def __init__(self, embed_dim: int, num_heads: int, ffn_dim: int, num_points: int, dropout: float = 0.0):
        super().__init__()
        self.self_attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.norm1 = nn.LayerNorm(embed_dim)
        self.cross_attn = DeformableBevAttention(embed_dim, num_heads, 1, num_points, dropout)
        self.norm2 = nn.LayerNorm(embed_dim)
        self.ffn = FeedForward(embed_dim, ffn_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, reference: torch.Tensor, bev: torch.Tensor) -> torch.Tensor:
        q = x + pos
        x = self.norm1(x + self.dropout(self.self_attn(q, q, x, need_weights=False)[0]))
        x = self.norm2(x + self.cross_attn(x + pos, reference, bev))
        return self.ffn(x)


class CrossAttentionLayer(nn.Module):
    """``nn.MultiheadAttention`` cross-attention + FFN, post-norm.

    ``forward(x (B, Nq, C), memory (B, Nk, C), query_pos (.., Nq, C) | None, key_pos (.., Nk, C) | None)
    -> (B, Nq, C)``.
    """

    def __init__(self, embed_dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.attn = nn.MultiheadAttention(embed_dim, num_heads, dropout=dropout, batch_first=True)
        self.norm = nn.LayerNorm(embed_dim)
        self.ffn = FeedForward(embed_dim, ffn_dim, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        query_pos: torch.Tensor | None = None,
        key_pos: torch.Tensor | None = None,
    ) -> torch.Tensor:
        q = x if query_pos is None else x + query_pos
        k = memory if key_pos is None else memory + key_pos
        x = self.norm(x + self.dropout(self.attn(q, k, memory, need_weights=False)[0]))
        return self.ffn(x)
