"""Task heads on the LLM's last hidden states: (b) planning, (c) masked BEV reconstruction, (d) future BEV.

Trajectory convention (as the planner, VAD): the head predicts per-step offsets (dx, dy); their cumulative sum gives
positions in the current ego frame, ``(B, modes, steps, 2)``; modes are command-conditioned (0 right, 1 left,
2 straight).
"""

from __future__ import annotations

import torch
from torch import nn


def mlp3(in_dim: int, hidden: int, out_dim: int) -> nn.Sequential:
    """The 3-layer Linear+ReLU MLP of DiMA's surrogate heads."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, out_dim)
    )


class PlanningHead(nn.Module):
    """(b) MLP on the LLM hidden state at ``<plan>`` -> command-conditioned trajectories.

    ``feature`` (its penultimate activation) is what the KL distillation and the dual inference mode use, so its
    width (``feature_dim``) should equal the planner's penultimate ego feature width.
    """

    def __init__(self, llm_dim: int, hidden: int, feature_dim: int, num_modes: int, num_steps: int):
        super().__init__()
        self.num_modes = num_modes
        self.num_steps = num_steps
        self.body = nn.Sequential(nn.Linear(llm_dim, hidden), nn.GELU(), nn.Linear(hidden, feature_dim), nn.GELU())
        self.out = nn.Linear(feature_dim, num_modes * num_steps * 2)

    def feature(self, hidden: torch.Tensor) -> torch.Tensor:
        """(B, D_llm) -> (B, feature_dim) penultimate feature."""
        return self.body(hidden)

    def decode(self, feature: torch.Tensor) -> torch.Tensor:
        """(B, feature_dim) -> (B, modes, steps, 2) positions (cumulative offsets)."""
        offsets = self.out(feature).view(-1, self.num_modes, self.num_steps, 2)
        return offsets.cumsum(dim=2)

    def forward(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Args:
            hidden: (B, D_llm) LLM last hidden state at ``<plan>``.
        Returns:
            trajectories (B, modes, steps, 2) and the penultimate feature (B, feature_dim).
        """
        feat = self.feature(hidden)
        return self.decode(feat), feat


class BevTokenDecoder(nn.Module):
    """Predict BEV tokens at chosen grid positions from LLM hidden states.

    Each requested position is a learned positional query that cross-attends (``nn.MultiheadAttention``) to the
    projected LLM hidden states; a 3-layer Linear+ReLU MLP maps the result to C_scene. There is no self-attention
    between queries, so the cost is linear in the number of positions (10,000 for a 100x100 grid).
    """

    def __init__(self, llm_dim: int, scene_dim: int, num_positions: int, dim: int, heads: int, mlp_hidden: int):
        super().__init__()
        self.pos = nn.Embedding(num_positions, dim)
        self.memory_proj = nn.Linear(llm_dim, dim)
        self.memory_norm = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm = nn.LayerNorm(dim)
        self.mlp = mlp3(dim, mlp_hidden, scene_dim)

    def forward(self, memory: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """Args:
            memory: (B, S, D_llm) LLM hidden states the prediction reads.
            positions: (B, K) long indices into the H*W grid.
        Returns:
            (B, K, C_scene) predicted tokens.
        """
        mem = self.memory_norm(self.memory_proj(memory.to(self.memory_proj.weight.dtype)))
        q = self.pos(positions)
        attended, _ = self.attn(q, mem, mem, need_weights=False)
        return self.mlp(self.norm(q + attended))


class FutureBevHeads(nn.Module):
    """(d) One :class:`BevTokenDecoder` per future offset (t+1, t+2, ...)."""

    def __init__(
        self,
        offsets: list[int],
        llm_dim: int,
        scene_dim: int,
        num_positions: int,
        dim: int,
        heads: int,
        mlp_hidden: int,
    ):
        super().__init__()
        self.offsets = list(offsets)
        self.decoders = nn.ModuleDict(
            {f"t{k}": BevTokenDecoder(llm_dim, scene_dim, num_positions, dim, heads, mlp_hidden) for k in offsets}
        )

    def forward(self, memory: torch.Tensor, positions: torch.Tensor | None = None) -> dict[int, torch.Tensor]:
        """Args:
            memory: (B, S, D_llm).
            positions: (B, K) grid indices to predict, or None for the whole grid.
        Returns:
            ``{offset: (B, K, C_scene)}``.
        """
        if positions is None:
            n = next(iter(self.decoders.values())).pos.num_embeddings
            positions = torch.arange(n, device=memory.device).unsqueeze(0).expand(memory.shape[0], -1)
        return {k: self.decoders[f"t{k}"](memory, positions) for k in self.offsets}


__all__ = ["BevTokenDecoder", "FutureBevHeads", "PlanningHead", "mlp3"]
