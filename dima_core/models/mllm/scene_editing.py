"""Surrogate (e), the neural side of scene editing: the edited scene as the teacher's tokens and loss targets.

The edits themselves (add a vehicle in the ego's lane or remove one, and the edited ego label and QA) are rules on
the ground truth, :mod:`dima_core.data.qa.scene_edits`. Here an added agent gets a new agent token from a linear
layer on its box and trajectory (:class:`AddedAgentEncoder`); a removed agent's tokens (those decoded within
``remove_match_radius_m`` of it, else the nearest) are masked out of the agent adapter's attention
(:func:`apply_edits_to_tokens`); :func:`edited_plan_targets` batches the edited labels for the scene-editing loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from dima_core.constants import FUTURE_STEPS
from dima_core.data.qa.scene_edits import SceneEdit


def added_agent_features(box: np.ndarray | torch.Tensor, future: np.ndarray | torch.Tensor) -> torch.Tensor:
    """(7 + 2T,) features of an added agent: x, y, w, l, h, sin yaw, cos yaw and the future positions, metres / 30
    (the perception range) so a linear layer sees O(1) inputs."""
    box = torch.as_tensor(box, dtype=torch.float32)
    future = torch.as_tensor(future, dtype=torch.float32)
    scale = 30.0
    head = torch.stack(
        [box[0] / scale, box[1] / scale, box[3] / 5, box[4] / 5, box[5] / 5, torch.sin(box[6]), torch.cos(box[6])]
    )
    return torch.cat([head, future.reshape(-1) / scale])


class AddedAgentEncoder(nn.Module):
    """A linear layer from :func:`added_agent_features` (7 + 2T) to an agent token (C_scene)."""

    def __init__(self, scene_dim: int, num_steps: int = FUTURE_STEPS):
        super().__init__()
        self.proj = nn.Linear(7 + 2 * num_steps, scene_dim)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, 7 + 2T) -> (B, C_scene)."""
        return self.proj(features)


def apply_edits_to_tokens(
    agents: torch.Tensor,
    edits: Sequence[SceneEdit | None],
    encoder: AddedAgentEncoder,
    agent_boxes: torch.Tensor | None = None,
    match_radius: float = 2.0,
    valid: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edit a batch of agent tokens.

    Args:
        agents: (B, Na, C) agent tokens.
        edits: B edits (None = unedited sample).
        encoder: makes the token of an added agent.
        agent_boxes: (B, Na, 7) decoded boxes of the tokens (BeamTokens.agent_boxes) used to find a removed
            agent's tokens; None means token i *is* GT agent i (tokens built from GT).
        match_radius: tokens decoded this close to a removed agent are dropped (the nearest one at least).
        valid: (B, Na) bool validity of the input tokens, None = all valid.
    Returns:
        tokens (B, Na + 1, C): one extra slot holding the added agent's token (zeros, invalid, when not adding);
        valid (B, Na + 1) bool: False for removed tokens and unused slots.
    """
    b, na, c = agents.shape
    valid = torch.ones(b, na, dtype=torch.bool, device=agents.device) if valid is None else valid.clone()
    extra = torch.zeros(b, 1, c, dtype=agents.dtype, device=agents.device)
    extra_valid = torch.zeros(b, 1, dtype=torch.bool, device=agents.device)
    adds = [i for i, e in enumerate(edits) if e is not None and e.kind == "add"]
    if adds:
        feats = torch.stack([added_agent_features(edits[i].agent_box, edits[i].agent_future) for i in adds])
        new = encoder(feats.to(agents.device, encoder.proj.weight.dtype)).to(agents.dtype)
        index = torch.tensor(adds, device=agents.device)
        extra = extra.index_put((index,), new.unsqueeze(1))
        extra_valid[index] = True
    for i, e in enumerate(edits):
        if e is None or e.kind != "remove":
            continue
        if agent_boxes is None:
            valid[i, e.removed_index] = False
            continue
        centre = torch.as_tensor(e.agent_box[:2], dtype=agent_boxes.dtype, device=agent_boxes.device)
        dist = torch.linalg.norm(agent_boxes[i, :, :2] - centre, dim=-1)
        drop = dist <= match_radius
        drop[dist.argmin()] = True
        valid[i] &= ~drop
    return torch.cat([agents, extra], dim=1), torch.cat([valid, extra_valid], dim=1)


def edited_plan_targets(
    edits: Sequence[SceneEdit | None], device: torch.device | str = "cpu"
) -> dict[str, torch.Tensor]:
    """Batch the edit labels for the scene-editing loss.

    Returns:
        ``ego_future`` (B, T, 2), ``ego_mask`` (B, T) bool (all False for unedited samples), ``agent_future``
        (B, T, 2) the added agent's positions, ``agent_size`` (B, 2) its (length, width), ``agent_valid`` (B,) bool
        (True for additions).
    """
    b = len(edits)
    out = {
        "ego_future": torch.zeros(b, FUTURE_STEPS, 2),
        "ego_mask": torch.zeros(b, FUTURE_STEPS, dtype=torch.bool),
        "agent_future": torch.zeros(b, FUTURE_STEPS, 2),
        "agent_size": torch.zeros(b, 2),
        "agent_valid": torch.zeros(b, dtype=torch.bool),
    }
    for i, e in enumerate(edits):
        if e is None:
            continue
        out["ego_future"][i] = torch.as_tensor(e.scene.ego_future, dtype=torch.float32)
        out["ego_mask"][i] = torch.as_tensor(e.scene.ego_future_mask)
        if e.kind == "add":
            out["agent_future"][i] = torch.as_tensor(e.agent_future, dtype=torch.float32)
            out["agent_size"][i] = torch.tensor([float(e.agent_box[4]), float(e.agent_box[3])])
            out["agent_valid"][i] = True
    return {k: v.to(device) for k, v in out.items()}


__all__ = [
    "AddedAgentEncoder",
    "added_agent_features",
    "apply_edits_to_tokens",
    "edited_plan_targets",
]
