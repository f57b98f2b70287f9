"""Typed configuration of the vision planner (backbone, BEV encoder, BEAM heads, planner, losses).

One dataclass per part, validated by the project's config system (:mod:`dima_core.config`): every numeric field
carries its range, :func:`load_model_config` reads a YAML file such as ``config/model/dima_tiny.yaml`` and fails
with the file, the dotted key and the problem. The YAML mirrors the dataclass tree::

    name: dima_tiny
    image_size: [256, 144]      # network input (width, height); intrinsics must be scaled to it
    backbone: {depth: 18, ...}
    bev: {grid_size: [50, 50], ...}
    agent_head: {...}
    map_head: {...}
    ego: {use_ego_status: false, ...}
    planner: {...}
    loss: {...}                 # PlannerLoss weights, VAD's values by default

BEV grid convention (used by every module): ``grid_size = (H, W)``; row ``i`` covers
``x = x_min + (i + 0.5) * (x_max - x_min) / H`` (forward), column ``j`` covers ``y = y_min + (j + 0.5) * ...``
(left). BEV tokens are flattened row-major: token ``i * W + j``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Literal

from dima_core.config import ConfigError, load_config, ranged
from dima_core.constants import (
    DETECTION_CLASSES,
    FUTURE_STEPS,
    MAP_CLASSES,
    MAP_POINTS_PER_VECTOR,
    PERCEPTION_X_RANGE,
    PERCEPTION_Y_RANGE,
)


@dataclass
class BackboneConfig:
    """ResNet + FPN image backbone (:mod:`dima_core.models.backbone`)."""

    depth: Literal[18, 34, 50, 101] = 18
    out_stages: tuple[int, ...] = ranged((4,), lo=2, hi=4, help="ResNet stages fed to the FPN (2=C3 .. 4=C5)")
    num_extra_levels: int = ranged(0, lo=0, hi=2, help="extra stride-2 FPN levels on top of the last stage")
    fpn_channels: int = ranged(128, lo=8, hi=1024)
    pretrained_path: str | None = None  # local torchvision ResNet state_dict; never downloaded
    frozen_stages: int = ranged(-1, lo=-1, hi=4, help="-1: none; 0: stem; k: stem and layer1..layerk")
    norm_eval: bool = False  # keep BatchNorm in eval mode (frozen statistics) while training
    image_mean: tuple[float, float, float] = (0.485, 0.456, 0.406)  # inputs are RGB in [0, 1]
    image_std: tuple[float, float, float] = ranged((0.229, 0.224, 0.225), lo=1e-6)

    def validate(self) -> None:
        if list(self.out_stages) != sorted(set(self.out_stages)):
            raise ValueError("backbone.out_stages must be strictly increasing")

    @property
    def num_levels(self) -> int:
        return len(self.out_stages) + self.num_extra_levels


@dataclass
class BevConfig:
    """BEV encoder (:mod:`dima_core.models.bev_encoder`)."""

    grid_size: tuple[int, int] = ranged((50, 50), lo=2, hi=512, help="(H along x forward, W along y left)")
    x_range: tuple[float, float] = PERCEPTION_X_RANGE
    y_range: tuple[float, float] = PERCEPTION_Y_RANGE
    z_range: tuple[float, float] = (-1.0, 3.0)  # pillar heights in the ego frame, metres
    num_z_anchors: int = ranged(4, lo=1, hi=16)
    embed_dim: int = ranged(128, lo=8, hi=2048)
    num_heads: int = ranged(4, lo=1, hi=64)
    ffn_dim: int = ranged(256, lo=8, hi=8192)
    num_layers: int = ranged(1, lo=1, hi=12)
    num_points_per_anchor: int = ranged(2, lo=1, hi=16, help="deformable samples around each projected point")
    num_self_points: int = ranged(4, lo=1, hi=16, help="deformable samples of the BEV self-attention")
    dropout: float = ranged(0.1, lo=0.0, hi=0.9)
    use_temporal: bool = False  # temporal self-attention to the ego-motion-aligned previous BEV

    def validate(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError("bev.embed_dim must be divisible by bev.num_heads")
        for name in ("x_range", "y_range", "z_range"):
            lo, hi = getattr(self, name)
            if not lo < hi:
                raise ValueError(f"bev.{name} must be increasing, got {(lo, hi)}")


@dataclass
class AgentHeadConfig:
    """Agent decoder: detection queries + motion modes (:mod:`dima_core.models.heads.agent_decoder`)."""

    num_queries: int = ranged(50, lo=1, hi=2000)
    num_layers: int = ranged(1, lo=1, hi=12)
    num_heads: int = ranged(4, lo=1, hi=64)
    ffn_dim: int = ranged(256, lo=8, hi=8192)
    num_points: int = ranged(4, lo=1, hi=32, help="deformable BEV samples per query and head")
    num_modes: int = ranged(6, lo=1, hi=32, help="K future modes per agent")
    future_steps: int = ranged(FUTURE_STEPS, lo=1, hi=30)
    num_classes: int = ranged(len(DETECTION_CLASSES), lo=1, hi=100)
    dropout: float = ranged(0.1, lo=0.0, hi=0.9)


@dataclass
class MapHeadConfig:
    """Map decoder: MapTR-style instance x point queries (:mod:`dima_core.models.heads.map_decoder`)."""

    num_vectors: int = ranged(20, lo=1, hi=1000)
    num_points: int = ranged(MAP_POINTS_PER_VECTOR, lo=2, hi=100, help="P points per polyline")
    num_layers: int = ranged(1, lo=1, hi=12)
    num_heads: int = ranged(4, lo=1, hi=64)
    ffn_dim: int = ranged(256, lo=8, hi=8192)
    num_sample_points: int = ranged(4, lo=1, hi=32, help="deformable BEV samples per point query and head")
    num_classes: int = ranged(len(MAP_CLASSES), lo=1, hi=20)
    dropout: float = ranged(0.1, lo=0.0, hi=0.9)


@dataclass
class EgoConfig:
    """Ego token (:mod:`dima_core.models.heads.ego`)."""

    use_ego_status: bool = False  # VAD's default: the planner sees no ego status (speed, ax, ay, yaw rate)
    use_command: bool = True  # add a driving-command embedding to the ego token
    ego_status_scale: tuple[float, float, float, float] = ranged((10.0, 3.0, 3.0, 0.5), lo=1e-6)
    # Which of (speed, ax, ay, yaw rate) the planner reads; a channel that is off is zeroed before the MLP, so the
    # input keeps its 4 columns. Why: in closed loop the planner's own braking comes back through ax, and a planner
    # that trusts ax brakes itself to a stop (docs/planner_model_card.md, "Failure analysis").
    ego_status_channels: tuple[bool, bool, bool, bool] = (True, True, True, True)


@dataclass
class PlannerConfig:
    """Planning transformer (:mod:`dima_core.models.planner`)."""

    num_heads: int = ranged(4, lo=1, hi=64)
    ffn_dim: int = ranged(256, lo=8, hi=8192)
    feature_dim: int = ranged(128, lo=8, hi=4096, help="C_plan: width of the penultimate ego feature")
    num_commands: int = ranged(3, lo=1, hi=10)
    future_steps: int = ranged(FUTURE_STEPS, lo=1, hi=30)
    dropout: float = ranged(0.1, lo=0.0, hi=0.9)


@dataclass
class LossConfig:
    """Weights and thresholds of :class:`dima_core.models.losses.PlannerLoss` (VAD stage-2 values by default)."""

    # weights
    det_cls: float = ranged(0.8, lo=0.0)
    det_box: float = ranged(0.1, lo=0.0)
    motion_reg: float = ranged(0.2, lo=0.0)
    motion_cls: float = ranged(0.2, lo=0.0)
    map_cls: float = ranged(0.8, lo=0.0)
    map_pts: float = ranged(0.4, lo=0.0)
    map_dir: float = ranged(0.005, lo=0.0)
    plan_reg: float = ranged(1.0, lo=0.0)
    plan_bound: float = ranged(1.0, lo=0.0)
    plan_col: float = ranged(1.0, lo=0.0)
    plan_dir: float = ranged(0.5, lo=0.0)
    # focal loss
    focal_alpha: float = ranged(0.25, lo=0.0, hi=1.0)
    focal_gamma: float = ranged(2.0, lo=0.0, hi=10.0)
    # Hungarian matching costs (VAD: detection cls 2.0 / box 0.25; map cls 2.0 / pts 5.0)
    det_match_cls: float = ranged(2.0, lo=0.0)
    det_match_box: float = ranged(0.25, lo=0.0)
    map_match_cls: float = ranged(2.0, lo=0.0)
    map_match_pts: float = ranged(5.0, lo=0.0)
    closed_map_classes: tuple[int, ...] = (1,)  # ped_crossing: cyclic shifts allowed when the GT is closed
    # planning constraints (VAD); thresholds in our ego frame (x forward, y left)
    col_agent_score_thresh: float = ranged(0.5, lo=0.0, hi=1.0)
    col_lateral_thresh: float = ranged(1.5, lo=0.0, help="VAD x_dis_thresh (its x is lateral)")
    col_longitudinal_thresh: float = ranged(3.0, lo=0.0, help="VAD y_dis_thresh (its y is forward)")
    col_radius: float = ranged(3.0, lo=0.0, help="agents farther than this from a waypoint are ignored")
    col_vehicle_classes_only: bool = True  # VAD: only classes 0..4 (car .. construction_vehicle)
    bound_score_thresh: float = ranged(0.5, lo=0.0, hi=1.0)
    bound_dis_thresh: float = ranged(1.0, lo=0.0)
    bound_class: int = ranged(2, lo=0)
    dir_score_thresh: float = ranged(0.5, lo=0.0, hi=1.0)
    dir_dis_thresh: float = ranged(2.0, lo=0.0)
    dir_class: int = ranged(0, lo=0)
    dir_static_thresh: float = ranged(1.0, lo=0.0, help="plans moving less than this (m) get no direction loss")
    detach_perception_in_plan: bool = True  # constraint losses move the plan, not the perceived scene


@dataclass
class ModelConfig:
    """The whole :class:`dima_core.models.VisionPlanner`."""

    name: str = "dima_tiny"
    num_cameras: int = ranged(6, lo=1, hi=12)
    image_size: tuple[int, int] = ranged((256, 144), lo=32, hi=4096, help="network input (width, height)")
    embed_dim: int = ranged(128, lo=8, hi=2048, help="C of every BEAM token")
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    bev: BevConfig = field(default_factory=BevConfig)
    agent_head: AgentHeadConfig = field(default_factory=AgentHeadConfig)
    map_head: MapHeadConfig = field(default_factory=MapHeadConfig)
    ego: EgoConfig = field(default_factory=EgoConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def validate(self) -> None:
        if self.bev.embed_dim != self.embed_dim:
            raise ValueError(f"bev.embed_dim ({self.bev.embed_dim}) must equal embed_dim ({self.embed_dim})")
        for name in ("agent_head", "map_head", "planner"):
            heads = getattr(self, name).num_heads
            if self.embed_dim % heads:
                raise ValueError(f"embed_dim ({self.embed_dim}) must be divisible by {name}.num_heads ({heads})")
        if self.planner.future_steps != self.agent_head.future_steps:
            raise ValueError("planner.future_steps must equal agent_head.future_steps")


def load_model_config(path: str | os.PathLike, section: str | None = None) -> ModelConfig:
    """Load and validate a :class:`ModelConfig` from YAML (optionally from one top-level ``section``)."""
    return load_config(path, ModelConfig, section=section)


__all__ = [
    "AgentHeadConfig",
    "BackboneConfig",
    "BevConfig",
    "ConfigError",
    "EgoConfig",
    "LossConfig",
    "MapHeadConfig",
    "ModelConfig",
    "PlannerConfig",
    "load_model_config",
]
