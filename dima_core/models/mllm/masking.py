"""Surrogate (c) input side: mask a fixed ratio of BEV tokens before the BEV adapter.

Every sample loses exactly ``round(ratio * N)`` tokens (a random subset per sample), so the masked positions form a
rectangular ``(B, K)`` index tensor the reconstruction head can query directly. Masked tokens are replaced by one
learned mask token (as in MAE / BERT), not zeros, so the adapter can tell "masked" from "empty road".
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass
class BevMask:
    """Result of masking.

    tokens: (B, N, C) the BEV tokens with masked positions replaced by the mask token.
    mask: (B, N) bool, True where masked.
    positions: (B, K) long, the masked positions (sorted), K = round(ratio * N).
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    positions: torch.Tensor


def num_masked(num_tokens: int, ratio: float) -> int:
    """K = round(ratio * N), the exact number of masked tokens per sample."""
    return int(round(ratio * num_tokens))


def random_mask_positions(
    batch: int, num_tokens: int, ratio: float, generator: torch.Generator | None = None, device=None
) -> torch.Tensor:
    """(B, K) sorted random positions, distinct within each row (drawn on the CPU so a CPU generator is enough)."""
    k = num_masked(num_tokens, ratio)
    scores = torch.rand(batch, num_tokens, generator=generator)
    return scores.argsort(dim=1)[:, :k].sort(dim=1).values.to(device)


class BevMasker(nn.Module):
    """Holds the learned mask token (C,) and applies a mask of the configured ratio."""

    def __init__(self, scene_dim: int, ratio: float):
        super().__init__()
        self.ratio = ratio
        self.mask_token = nn.Parameter(torch.zeros(scene_dim))
        nn.init.normal_(self.mask_token, std=0.02)

    def forward(
        self,
        bev: torch.Tensor,
        generator: torch.Generator | None = None,
        positions: torch.Tensor | None = None,
    ) -> BevMask:
        """Args:
            bev: (B, N, C) BEV tokens.
            generator: RNG for the positions (determinism); ignored when ``positions`` is given.
            positions: (B, K) explicit positions to mask, else ``round(ratio * N)`` random ones.
        Returns:
            :class:`BevMask`.
        """
        b, n, _ = bev.shape
        if positions is None:
            positions = random_mask_positions(b, n, self.ratio, generator, bev.device)
        mask = torch.zeros(b, n, dtype=torch.bool, device=bev.device)
        mask.scatter_(1, positions, True)
        tokens = torch.where(mask.unsqueeze(-1), self.mask_token.to(bev.dtype).expand_as(bev), bev)
        return BevMask(tokens, mask, positions)


def gather_tokens(tokens: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(B, N, C) tokens, (B, K) positions -> (B, K, C)."""
    return torch.gather(tokens, 1, positions.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))


__all__ = ["BevMask", "BevMasker", "gather_tokens", "num_masked", "random_mask_positions"]
