"""BEV encoder: BEVFormer-style spatial cross-attention written with ``F.grid_sample`` (no custom CUDA ops).

A grid of ``H x W`` learned BEV queries covers the perception range (x forward, y left; see
:mod:`dima_core.models.bev_geometry`). Each encoder layer does

1. **BEV self-attention** (:class:`~dima_core.models.attention.DeformableBevAttention`): every cell samples a few
   learned offsets around itself, so the cost is linear in the number of cells (100 x 100 and 200 x 200 stay
   affordable). With ``use_temporal`` it samples two maps, [previous BEV warped into the current ego frame by the
   ego motion, current queries], which is BEVFormer's temporal self-attention; on the first frame (no previous BEV)
   the current queries stand in for the previous map, as in BEVFormer.
2. **Spatial cross-attention** (:class:`SpatialCrossAttention`): a pillar of ``Z`` 3D reference points per cell
   (heights ``z_range``) is projected into every camera; around each projection the query samples
   ``num_points_per_anchor`` learned offsets on every FPN level; samples are mixed with softmax weights over
   (level, anchor, point). Anchors behind a camera or outside its image are masked, and the result is averaged
   over the cameras that see at least one anchor of the cell.
3. **FFN**. Post-norm residuals around each.

Fixed shapes, no data-dependent Python branches, no boolean indexing: exports to ONNX (opset >= 16 for GridSample).

Shapes: ``forward(feats [ (B*N, C_fpn, h_l, w_l) ], intrinsics (B, N, 3, 3), cam_to_ego (B, N, 4, 4),
prev_bev (B, C, H, W) | None, ego_motion (B, 4, 4) | None) -> bev (B, C, H, W)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dima_core.models.attention import DeformableBevAttention, FeedForward
from dima_core.models.bev_geometry import (
    bev_cell_centres,
    bev_pillar_points,
    metric_to_fraction,
    project_to_cameras,
    warp_bev,
)
from dima_core.models.config import BevConfig


class SpatialCrossAttention(nn.Module):
    """Multi-camera, multi-level deformable cross-attention from BEV queries to image features.

    ``forward(query (B, M, C), values [ (B*N, C, h_l, w_l) ] already projected to C,
    ref_uv (B, N, M, Z, 2) image fractions, valid (B, N, M, Z)) -> (B, M, C)`` (without residual).
    """

    def __init__(
        self, embed_dim: int, num_heads: int, num_levels: int, num_anchors: int, num_points: int, dropout: float = 0.0
    ):
        super().__init__()
        self.embed_dim, self.num_heads, self.num_levels = embed_dim, num_heads, num_levels
        self.num_anchors, self.num_points = num_anchors, num_points
        self.sampling_offsets = nn.Linear(embed_dim, num_heads * num_levels * num_anchors * num_points * 2)
        self.attention_weights = nn.Linear(embed_dim, num_heads * num_levels * num_anchors * num_points)
        self.output_proj = nn.Linear(embed_dim, embed_dim)
        self.dropout = nn.Dropout(dropout)
        nn.init.zeros_(self.sampling_offsets.weight)
        theta = torch.arange(num_heads, dtype=torch.float32) * (2.0 * math.pi / num_heads)
        pattern = torch.stack([theta.cos(), theta.sin()], -1)  # pixels on the feature map, one direction per head
        pattern = pattern.view(num_heads, 1, 1, 1, 2) * torch.arange(num_points, dtype=torch.float32).view(
            1, 1, 1, num_points, 1
        )
        with torch.no_grad():
            self.sampling_offsets.bias.copy_(
                pattern.expand(num_heads, num_levels, num_anchors, num_points, 2).flatten()
            )
        nn.init.zeros_(self.attention_weights.weight)
        nn.init.zeros_(self.attention_weights.bias)
        nn.init.xavier_uniform_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(
        self, query: torch.Tensor, values: list[torch.Tensor], ref_uv: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        b, m, c = query.shape
        n = ref_uv.shape[1]
        heads, z, pts, ch = self.num_heads, self.num_anchors, self.num_points, c // self.num_heads
        offsets = self.sampling_offsets(query).view(b, m, heads, self.num_levels, z, pts, 2)
        weights = self.attention_weights(query).view(b, m, heads, self.num_levels * z * pts).softmax(-1)
        weights = weights.view(b, m, heads, self.num_levels, z, pts)
        # (B, N, 1, M, Z, 1): anchors a camera does not see contribute nothing
        anchor_mask = valid[:, :, None, :, :, None]
        ref = ref_uv[:, :, None, :, :, None, :]  # (B, N, 1, M, Z, 1, 2)
        acc = torch.zeros(b, n, heads, ch, m, dtype=query.dtype, device=query.device)
        for lvl, value in enumerate(values):
            h, w = value.shape[-2:]
            v = value.reshape(b * n * heads, ch, h, w)
            scale = torch.tensor([float(w), float(h)], dtype=query.dtype, device=query.device)
            off = (offsets[:, :, :, lvl] / scale).permute(0, 2, 1, 3, 4, 5).unsqueeze(1)  # (B, 1, heads, M, Z, P, 2)
            grid = (ref + off) * 2.0 - 1.0  # (B, N, heads, M, Z, P, 2)
            grid = grid.reshape(b * n * heads, m, z * pts, 2)
            sampled = F.grid_sample(v, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
            sampled = sampled.view(b, n, heads, ch, m, z, pts)
            wl = weights[:, :, :, lvl].permute(0, 2, 1, 3, 4).unsqueeze(1) * anchor_mask  # (B, N, heads, M, Z, P)
            acc = acc + (sampled * wl.unsqueeze(3)).sum(dim=(5, 6))
        seen = (valid.sum(dim=-1) > 0).to(query.dtype)  # (B, N, M)
        count = seen.sum(dim=1).clamp(min=1.0)  # (B, M)
        out = acc.sum(dim=1).permute(0, 3, 1, 2).reshape(b, m, c) / count.unsqueeze(-1)
        return self.dropout(self.output_proj(out))


class BevEncoderLayer(nn.Module):
    """(temporal) deformable BEV self-attention -> spatial cross-attention -> FFN, post-norm.

    ``forward(bev (B, M, C), pos (1, M, C), ref_2d (B, M, 2), prev (B, C, H, W) | None, values, ref_uv, valid)
    -> (B, M, C)``; ``prev`` is the aligned previous BEV (only with ``use_temporal``).
    """

    def __init__(self, config: BevConfig, num_levels: int):
        super().__init__()
        c = config.embed_dim
        self.grid_size = config.grid_size
        self.use_temporal = config.use_temporal
        self.self_attn = DeformableBevAttention(
            c, config.num_heads, 2 if config.use_temporal else 1, config.num_self_points, config.dropout
        )
        self.norm1 = nn.LayerNorm(c)
        self.cross_attn = SpatialCrossAttention(
            c, config.num_heads, num_levels, config.num_z_anchors, config.num_points_per_anchor, config.dropout
        )
        self.norm2 = nn.LayerNorm(c)
        self.ffn = FeedForward(c, config.ffn_dim, config.dropout)

    def forward(
        self,
        bev: torch.Tensor,
        pos: torch.Tensor,
        ref_2d: torch.Tensor,
        prev: torch.Tensor | None,
        values: list[torch.Tensor],
        ref_uv: torch.Tensor,
        valid: torch.Tensor,
    ) -> torch.Tensor:
        b, m, c = bev.shape
        h, w = self.grid_size
        current = bev.transpose(1, 2).reshape(b, 1, c, h, w)
        if self.use_temporal:
            previous = current if prev is None else prev.unsqueeze(1)
            maps = torch.cat([previous, current], dim=1)
        else:
            maps = current
        bev = self.norm1(bev + self.self_attn(bev + pos, ref_2d, maps))
        bev = self.norm2(bev + self.cross_attn(bev + pos, values, ref_uv, valid))
        return self.ffn(bev)


class BevEncoder(nn.Module):
    """Learned BEV queries lifted from multi-camera FPN features. See the module docstring for shapes."""

    def __init__(
        self, config: BevConfig, in_channels: int, num_levels: int, num_cameras: int, image_size: tuple[int, int]
    ):
        super().__init__()
        self.config = config
        self.image_size = image_size
        self.num_cameras = num_cameras
        h, w = config.grid_size
        c = config.embed_dim
        self.bev_queries = nn.Parameter(torch.randn(h * w, c) * 0.02)
        self.row_embed = nn.Parameter(torch.randn(h, c // 2) * 0.02)  # along x
        self.col_embed = nn.Parameter(torch.randn(w, c - c // 2) * 0.02)  # along y
        self.camera_embed = nn.Parameter(torch.randn(num_cameras, in_channels) * 0.02)
        self.level_embed = nn.Parameter(torch.randn(num_levels, in_channels) * 0.02)
        self.value_proj = nn.Linear(in_channels, c)
        self.layers = nn.ModuleList(BevEncoderLayer(config, num_levels) for _ in range(config.num_layers))
        self.register_buffer(
            "pillar_points",
            bev_pillar_points(config.grid_size, config.x_range, config.y_range, config.z_range, config.num_z_anchors),
            persistent=False,
        )
        centres = bev_cell_centres(config.grid_size, config.x_range, config.y_range)
        self.register_buffer(
            "ref_2d", metric_to_fraction(centres, config.x_range, config.y_range)[None], persistent=False
        )

    def positional_embedding(self) -> torch.Tensor:
        """``(1, H * W, C)`` learned positional embedding of the BEV cells (row embedding ++ column embedding)."""
        h, w = self.config.grid_size
        rows = self.row_embed[:, None, :].expand(h, w, self.row_embed.shape[-1])
        cols = self.col_embed[None, :, :].expand(h, w, self.col_embed.shape[-1])
        return torch.cat([rows, cols], dim=-1).reshape(1, h * w, -1)

    def forward(
        self,
        feats: list[torch.Tensor],
        intrinsics: torch.Tensor,
        cam_to_ego: torch.Tensor,
        prev_bev: torch.Tensor | None = None,
        ego_motion: torch.Tensor | None = None,
    ) -> torch.Tensor:
        b, n = intrinsics.shape[:2]
        h, w = self.config.grid_size
        c = self.config.embed_dim
        ref_uv, valid = project_to_cameras(self.pillar_points, intrinsics, cam_to_ego, self.image_size)
        values = []
        for lvl, feat in enumerate(feats):
            _, cin, fh, fw = feat.shape
            x = feat.reshape(b, n, cin, fh * fw).transpose(2, 3)  # (B, N, hw, Cin)
            x = x + self.camera_embed[None, :n, None, :] + self.level_embed[None, None, lvl : lvl + 1, :]
            x = self.value_proj(x)  # (B, N, hw, C)
            values.append(x.transpose(2, 3).reshape(b * n, c, fh, fw))
        prev = None
        if self.config.use_temporal and prev_bev is not None:
            prev = (
                prev_bev
                if ego_motion is None
                else warp_bev(prev_bev, ego_motion, self.config.x_range, self.config.y_range)
            )
        pos = self.positional_embedding()
        ref_2d = self.ref_2d.expand(b, h * w, 2)
        bev = self.bev_queries[None].expand(b, h * w, c)
        for layer in self.layers:
            bev = layer(bev, pos, ref_2d, prev, values, ref_uv, valid)
        return bev.transpose(1, 2).reshape(b, c, h, w)
