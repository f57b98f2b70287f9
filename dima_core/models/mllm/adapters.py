"""BEAM adapters: one Q-former per token type (BEV, Ego, Agent, Map) into the LLM's embedding space.

Each adapter owns Q learned queries. The queries self-attend and cross-attend to the token set, then a linear layer
maps them to the LLM width: ``(B, N_i, C_scene) -> (B, Q_i, D_llm)``. The attention is a maintained implementation:
transformers' ``Blip2QFormerModel`` (BLIP-2's Q-former, cross-attention in every layer) or
``torch.nn.TransformerDecoder`` layers (self-attention over queries, cross-attention to the tokens).
"""

from __future__ import annotations

import torch
from torch import nn

from dima_core.models.mllm.config import TOKEN_TYPES, AdapterConfig


class QFormerAdapter(nn.Module):
    """Compress a token set into ``num_queries`` LLM-space embeddings.

    Args:
        scene_dim: C_scene, width of the input tokens.
        llm_dim: D_llm, width of the output embeddings.
        num_queries: Q, number of output embeddings.
        cfg: Q-former width, depth, heads and backend.
    """

    def __init__(self, scene_dim: int, llm_dim: int, num_queries: int, cfg: AdapterConfig):
        super().__init__()
        self.backend = cfg.backend
        self.num_queries = num_queries
        self.queries = nn.Parameter(torch.randn(1, num_queries, cfg.hidden_size) * 0.02)
        if cfg.backend == "blip2_qformer":
            from transformers import Blip2QFormerConfig, Blip2QFormerModel

            qcfg = Blip2QFormerConfig(
                hidden_size=cfg.hidden_size,
                num_hidden_layers=cfg.num_layers,
                num_attention_heads=cfg.num_heads,
                intermediate_size=cfg.intermediate_size,
                hidden_dropout_prob=cfg.dropout,
                attention_probs_dropout_prob=cfg.dropout,
                cross_attention_frequency=1,  # every layer reads the BEAM tokens
                encoder_hidden_size=scene_dim,
            )
            self.qformer: nn.Module = Blip2QFormerModel(qcfg)
            self.memory_proj: nn.Module = nn.Identity()  # the Q-former's cross-attention projects C_scene itself
        else:
            layer = nn.TransformerDecoderLayer(
                d_model=cfg.hidden_size,
                nhead=cfg.num_heads,
                dim_feedforward=cfg.intermediate_size,
                dropout=cfg.dropout,
                batch_first=True,
                norm_first=True,
            )
            self.qformer = nn.TransformerDecoder(layer, num_layers=cfg.num_layers, norm=nn.LayerNorm(cfg.hidden_size))
            self.memory_proj = nn.Linear(scene_dim, cfg.hidden_size)
        self.out_proj = nn.Linear(cfg.hidden_size, llm_dim)

    def forward(self, tokens: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
        """Args:
            tokens: (B, N, C_scene) one BEAM token set.
            valid: (B, N) bool, False for tokens to ignore (removed agents, padding); None = all valid.
        Returns:
            (B, Q, D_llm) query embeddings in the LLM's input space.
        """
        b = tokens.shape[0]
        queries = self.queries.expand(b, -1, -1)
        if valid is not None:
            # A row with no valid token would make every attention weight -inf (NaN); let it read its tokens.
            valid = valid | ~valid.any(dim=1, keepdim=True)
        if self.backend == "blip2_qformer":
            mask = None if valid is None else valid.long()
            hidden = self.qformer(
                query_embeds=queries, encoder_hidden_states=tokens, encoder_attention_mask=mask
            ).last_hidden_state
        else:
            padding = None if valid is None else ~valid
            hidden = self.qformer(queries, self.memory_proj(tokens), memory_key_padding_mask=padding)
        return self.out_proj(hidden.to(self.out_proj.weight.dtype))


class BeamAdapters(nn.Module):
    """The four adapters, keyed by token type (``bev``, ``ego``, ``agent``, ``map``)."""

    def __init__(self, scene_dim: int, llm_dim: int, cfg: AdapterConfig):
        super().__init__()
        self.adapters = nn.ModuleDict(
            {name: QFormerAdapter(scene_dim, llm_dim, cfg.queries[name], cfg) for name in TOKEN_TYPES}
        )

    def num_queries(self, name: str) -> int:
        return self.adapters[name].num_queries

    def forward(
        self, tokens: dict[str, torch.Tensor], valid: dict[str, torch.Tensor] | None = None
    ) -> dict[str, torch.Tensor]:
        """Args:
            tokens: ``{"bev": (B, H*W, C), "ego": (B, 1, C), "agent": (B, Na, C), "map": (B, Nm, C)}``.
            valid: optional ``{name: (B, N_i) bool}``.
        Returns:
            ``{name: (B, Q_name, D_llm)}``.
        """
        valid = valid or {}
        return {name: self.adapters[name](tokens[name], valid.get(name)) for name in TOKEN_TYPES}


__all__ = ["BeamAdapters", "QFormerAdapter"]
