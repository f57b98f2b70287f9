"""BEAM heads: agents (detection + motion), map polylines, ego token."""

from dima_core.models.heads.agent_decoder import AgentDecoder, AgentOutputs
from dima_core.models.heads.ego import EgoEncoder
from dima_core.models.heads.map_decoder import MapDecoder, MapOutputs

__all__ = ["AgentDecoder", "AgentOutputs", "EgoEncoder", "MapDecoder", "MapOutputs"]
