"""DiMA's vision planner: ResNet+FPN backbone, BEV encoder, BEAM heads (agents, map, ego), planning transformer.

Public entry points: :class:`VisionPlanner` (``forward -> PlannerOutput``), :class:`BeamTokens` (the interface
shared with the MLLM, the exporter and the ROS node), :func:`load_model_config`, and
:class:`~dima_core.models.losses.PlannerLoss`.
"""

from dima_core.models.beam import BEAM_FIELDS, BeamTokens
from dima_core.models.config import (
    AgentHeadConfig,
    BackboneConfig,
    BevConfig,
    EgoConfig,
    LossConfig,
    MapHeadConfig,
    ModelConfig,
    PlannerConfig,
    load_model_config,
)
from dima_core.models.planner import PlanningTransformer, select_by_command
from dima_core.models.vision_planner import (
    EXPORT_INPUT_NAMES,
    EXPORT_OUTPUT_NAMES,
    EXPORT_TEMPORAL_INPUT_NAMES,
    ExportablePlanner,
    PlannerOutput,
    VisionPlanner,
)

__all__ = [
    "AgentHeadConfig",
    "BEAM_FIELDS",
    "BackboneConfig",
    "BeamTokens",
    "BevConfig",
    "EXPORT_INPUT_NAMES",
    "EXPORT_OUTPUT_NAMES",
    "EXPORT_TEMPORAL_INPUT_NAMES",
    "EgoConfig",
    "ExportablePlanner",
    "LossConfig",
    "MapHeadConfig",
    "ModelConfig",
    "PlannerConfig",
    "PlannerOutput",
    "PlanningTransformer",
    "VisionPlanner",
    "load_model_config",
    "select_by_command",
]
