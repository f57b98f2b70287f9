"""``VisionPlanner``: backbone + BEV encoder + BEAM heads + planning transformer (DiMA's deployable planner).

``forward(images (B, N, 3, H, W) RGB in [0, 1] at ModelConfig.image_size, intrinsics (B, N, 3, 3) scaled to that
size, cam_to_ego (B, N, 4, 4), ego_status (B, 4), command (B,) int64, prev_bev (B, C, Hb, Wb) | None,
ego_motion (B, 4, 4) | None) -> PlannerOutput``.

Cameras in ``constants.CAMERA_NAMES`` order. ``ego_motion`` maps points from the previous ego frame into the
current one; ``prev_bev`` is the previous call's ``PlannerOutput.bev`` (only used when ``bev.use_temporal``).

:class:`ExportablePlanner` wraps the model for ONNX/TensorRT: positional tensor inputs, a flat tuple of outputs
named :data:`EXPORT_OUTPUT_NAMES` (the trajectory first, then the BEAM fields).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from dima_core.models.backbone import ImageBackbone
from dima_core.models.beam import BEAM_FIELDS, BeamTokens
from dima_core.models.bev_encoder import BevEncoder
from dima_core.models.config import ModelConfig
from dima_core.models.heads import AgentDecoder, EgoEncoder, MapDecoder
from dima_core.models.planner import PlanningTransformer


@dataclass
class PlannerOutput:
    trajectories: torch.Tensor  # (B, 3, T, 2) one trajectory per command, ego-frame positions
    trajectory: torch.Tensor  # (B, T, 2) the command's trajectory
    ego_feature: torch.Tensor  # (B, C_plan) penultimate planner feature (distillation target)
    beam: BeamTokens
    bev: torch.Tensor  # (B, C, Hb, Wb) BEV map, reusable as the next frame's prev_bev
    agent_centres: torch.Tensor  # (B, Na, 2) BEV grid fractions, used by the planner
    map_centres: torch.Tensor  # (B, Nm, 2) BEV grid fractions, used by the planner


class VisionPlanner(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        bev_cfg = config.bev
        self.backbone = ImageBackbone(config.backbone)
        self.bev_encoder = BevEncoder(
            bev_cfg, config.backbone.fpn_channels, config.backbone.num_levels, config.num_cameras, config.image_size
        )
        self.map_decoder = MapDecoder(config.map_head, config.embed_dim, bev_cfg.x_range, bev_cfg.y_range)
        self.agent_decoder = AgentDecoder(config.agent_head, config.embed_dim, bev_cfg.x_range, bev_cfg.y_range)
        self.ego_encoder = EgoEncoder(config.ego, config.embed_dim, config.planner.num_commands)
        self.planner = PlanningTransformer(config.planner, config.embed_dim, bev_cfg.x_range, bev_cfg.y_range)

    def forward(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_ego: torch.Tensor,
        ego_status: torch.Tensor,
        command: torch.Tensor,
        prev_bev: torch.Tensor | None = None,
        ego_motion: torch.Tensor | None = None,
    ) -> PlannerOutput:
        b, n = images.shape[:2]
        feats = self.backbone(images.flatten(0, 1))
        bev = self.bev_encoder(feats, intrinsics, cam_to_ego, prev_bev, ego_motion)
        maps = self.map_decoder(bev)
        agents = self.agent_decoder(bev, maps.tokens, maps.centres)
        ego = self.ego_encoder(ego_status, command)
        plan = self.planner(ego, agents.tokens, agents.centres, maps.tokens, maps.centres, command)
        beam = BeamTokens(
            bev=bev.flatten(2).transpose(1, 2),
            ego=ego,
            agents=agents.tokens,
            map=maps.tokens,
            agent_boxes=agents.boxes,
            agent_logits=agents.logits,
            agent_velocities=agents.velocities,
            agent_trajectories=agents.trajectories,
            agent_mode_logits=agents.mode_logits,
            map_polylines=maps.polylines,
            map_logits=maps.logits,
        )
        return PlannerOutput(
            plan.trajectories, plan.trajectory, plan.ego_feature, beam, bev, agents.centres, maps.centres
        )

    def num_parameters(self, trainable_only: bool = False) -> dict[str, int]:
        """Parameter counts per top-level part and ``total``."""
        counts = {}
        for name, module in self.named_children():
            counts[name] = sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)
        counts["total"] = sum(counts.values())
        return counts


EXPORT_INPUT_NAMES: tuple[str, ...] = ("images", "intrinsics", "cam_to_ego", "ego_status", "command")
EXPORT_TEMPORAL_INPUT_NAMES: tuple[str, ...] = ("prev_bev", "ego_motion")
EXPORT_OUTPUT_NAMES: tuple[str, ...] = ("trajectory", "trajectories", "ego_feature", "bev_map") + BEAM_FIELDS


class ExportablePlanner(nn.Module):
    """Tensor-in, tuple-out wrapper for ``torch.onnx.export``.

    Inputs :data:`EXPORT_INPUT_NAMES` (+ :data:`EXPORT_TEMPORAL_INPUT_NAMES` when the model is temporal);
    outputs :data:`EXPORT_OUTPUT_NAMES`. ``torch.onnx.export`` drops inputs the graph never reads: with
    ``ego.use_ego_status: false`` (the default) the ONNX model has no ``ego_status`` input, so runtimes should
    feed the names that ``session.get_inputs()`` lists.
    """

    def __init__(self, model: VisionPlanner):
        super().__init__()
        self.model = model

    @property
    def input_names(self) -> tuple[str, ...]:
        temporal = self.model.config.bev.use_temporal
        return EXPORT_INPUT_NAMES + (EXPORT_TEMPORAL_INPUT_NAMES if temporal else ())

    def forward(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_ego: torch.Tensor,
        ego_status: torch.Tensor,
        command: torch.Tensor,
        prev_bev: torch.Tensor | None = None,
        ego_motion: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, ...]:
        out = self.model(images, intrinsics, cam_to_ego, ego_status, command, prev_bev, ego_motion)
        beam = out.beam.as_dict()
        return (out.trajectory, out.trajectories, out.ego_feature, out.bev) + tuple(beam[k] for k in BEAM_FIELDS)
