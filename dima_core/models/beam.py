"""``BeamTokens``: the BEV / Ego / Agent / Map tokens and their decoded outputs.

This dataclass is THE interface shared by the MLLM teacher (which reads the tokens), the exporter (which names
ONNX outputs after :data:`BEAM_FIELDS`) and the ROS node (which publishes them as ``dima/msg/BeamTokens``).

Shapes (B batch, C = ``ModelConfig.embed_dim``, H x W BEV grid, Na agent queries, Nm map vectors, K motion modes,
T = 6 future steps, P points per polyline). All coordinates are in the current ego frame (x forward, y left,
metres); see docs/design.md, Frames and shapes.

==================== ======================= ======================================================================
field                shape                   meaning
==================== ======================= ======================================================================
bev                  (B, H*W, C)             BEV tokens, row-major (row = x, column = y)
ego                  (B, 1, C)               Ego token (learnable query [+ ego status] [+ command])
agents               (B, Na, C)              Agent tokens (detection query + motion context)
map                  (B, Nm, C)              Map tokens (polyline instance features, mean over points)
agent_boxes          (B, Na, 7)              x, y, z, w, l, h, yaw (devkit ``wlh`` order; yaw about +z from +x)
agent_logits         (B, Na, num_classes)    class logits (sigmoid), order ``constants.DETECTION_CLASSES``
agent_velocities     (B, Na, 2)              vx, vy in m/s
agent_trajectories   (B, Na, K, T, 2)        future centre *positions* in the ego frame (box centre + cumsum offsets)
agent_mode_logits    (B, Na, K)              mode logits (softmax over K)
map_polylines        (B, Nm, P, 2)           polyline points (x, y)
map_logits           (B, Nm, 3)              class logits (sigmoid), order ``constants.MAP_CLASSES``
==================== ======================= ======================================================================
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

import torch

BEAM_FIELDS: tuple[str, ...] = (
    "bev",
    "ego",
    "agents",
    "map",
    "agent_boxes",
    "agent_logits",
    "agent_velocities",
    "agent_trajectories",
    "agent_mode_logits",
    "map_polylines",
    "map_logits",
)

# Number of dimensions of every field (checked by ``validate``).
_NDIM = {
    "bev": 3,
    "ego": 3,
    "agents": 3,
    "map": 3,
    "agent_boxes": 3,
    "agent_logits": 3,
    "agent_velocities": 3,
    "agent_trajectories": 5,
    "agent_mode_logits": 3,
    "map_polylines": 4,
    "map_logits": 3,
}


@dataclass
class BeamTokens:
    """BEAM tokens plus decoded scene outputs. Field shapes in the module docstring."""

    bev: torch.Tensor
    ego: torch.Tensor
    agents: torch.Tensor
    map: torch.Tensor
    agent_boxes: torch.Tensor
    agent_logits: torch.Tensor
    agent_velocities: torch.Tensor
    agent_trajectories: torch.Tensor
    agent_mode_logits: torch.Tensor
    map_polylines: torch.Tensor
    map_logits: torch.Tensor

    @property
    def batch_size(self) -> int:
        return int(self.bev.shape[0])

    @property
    def num_agents(self) -> int:
        return int(self.agents.shape[1])

    @property
    def num_map(self) -> int:
        return int(self.map.shape[1])

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Field name -> tensor, in :data:`BEAM_FIELDS` order (ONNX output names, ROS message fields)."""
        return {name: getattr(self, name) for name in BEAM_FIELDS}

    @classmethod
    def from_dict(cls, data: Mapping[str, object], prefix: str = "") -> BeamTokens:
        """Inverse of :meth:`as_dict`; values may be tensors or numpy arrays; ``prefix`` is stripped from keys."""
        missing = [name for name in BEAM_FIELDS if prefix + name not in data]
        if missing:
            raise KeyError(f"BeamTokens.from_dict: missing fields {missing}")
        return cls(**{name: torch.as_tensor(data[prefix + name]) for name in BEAM_FIELDS})

    def map_tensors(self, fn) -> BeamTokens:
        """A new ``BeamTokens`` with ``fn`` applied to every tensor."""
        return dataclasses.replace(self, **{name: fn(getattr(self, name)) for name in BEAM_FIELDS})

    def to(self, *args, **kwargs) -> BeamTokens:
        return self.map_tensors(lambda t: t.to(*args, **kwargs))

    def detach(self) -> BeamTokens:
        return self.map_tensors(lambda t: t.detach())

    def cpu(self) -> BeamTokens:
        return self.map_tensors(lambda t: t.cpu())

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: tuple(getattr(self, name).shape) for name in BEAM_FIELDS}

    def validate(self) -> None:
        """Raise ``ValueError`` when ranks, batch sizes or the cross-field sizes disagree."""
        for name in BEAM_FIELDS:
            t = getattr(self, name)
            if t.dim() != _NDIM[name]:
                raise ValueError(f"BeamTokens.{name}: expected {_NDIM[name]} dims, got shape {tuple(t.shape)}")
            if t.shape[0] != self.batch_size:
                raise ValueError(f"BeamTokens.{name}: batch {t.shape[0]} != {self.batch_size}")
        c = self.bev.shape[-1]
        for name in ("ego", "agents", "map"):
            if getattr(self, name).shape[-1] != c:
                raise ValueError(f"BeamTokens.{name}: channel {getattr(self, name).shape[-1]} != bev channel {c}")
        if self.ego.shape[1] != 1:
            raise ValueError("BeamTokens.ego must hold exactly one token")
        na, nm = self.num_agents, self.num_map
        for name in ("agent_boxes", "agent_logits", "agent_velocities", "agent_trajectories", "agent_mode_logits"):
            if getattr(self, name).shape[1] != na:
                raise ValueError(f"BeamTokens.{name}: {getattr(self, name).shape[1]} agents != {na}")
        for name in ("map_polylines", "map_logits"):
            if getattr(self, name).shape[1] != nm:
                raise ValueError(f"BeamTokens.{name}: {getattr(self, name).shape[1]} vectors != {nm}")
        if self.agent_boxes.shape[-1] != 7 or self.agent_velocities.shape[-1] != 2:
            raise ValueError("BeamTokens: agent_boxes must end in 7 and agent_velocities in 2")
        if self.agent_trajectories.shape[2] != self.agent_mode_logits.shape[2]:
            raise ValueError("BeamTokens: agent_trajectories and agent_mode_logits disagree on K")
