"""Typed configuration of the closed-loop simulator (YAML-loadable: ``config/sim.yaml``).

The world itself is a :class:`~dima_core.data.synth.config.SynthConfig` (the same file the dataset was generated
from, so the simulator renders what the planner was trained on); this config says how the loop runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dima_core.config import ranged
from dima_core.sim.controller import ControllerConfig
from dima_core.sim.vehicle import VehicleConfig


@dataclass
class SimConfig:
    """How an episode runs: rates, duration, when it ends early, the vehicle and its tracking controller."""

    world_config: str | None = field(
        default="config/synth.yaml",
        metadata={"help": "SynthConfig YAML of the world (null: SynthConfig defaults); camera size etc. come from it"},
    )
    camera_width: int | None = field(default=None, metadata={"help": "override the world's camera width"})
    camera_height: int | None = field(default=None, metadata={"help": "override the world's camera height"})
    planning_hz: float = ranged(2.0, lo=0.1, hi=20.0, help="planner calls per second (the dataset's keyframe rate)")
    sim_hz: float = ranged(10.0, lo=5.0, hi=100.0, help="simulation steps per second (vehicle, controller, traffic)")
    episode_seconds: float | None = field(
        default=None, metadata={"help": "episode length; null: the world's scene_seconds"}
    )
    stop_on_collision: bool = field(
        default=False, metadata={"help": "end the episode at the first ego collision (the metrics see it either way)"}
    )
    max_route_deviation_m: float = ranged(
        15.0, lo=1.0, hi=1000.0, help="end the episode when the ego is this far from its route (it is lost)"
    )
    vehicle: VehicleConfig = field(default_factory=VehicleConfig)
    controller: ControllerConfig = field(default_factory=ControllerConfig)

    def validate(self) -> None:
        ratio = self.sim_hz / self.planning_hz
        if abs(ratio - round(ratio)) > 1e-6:
            raise ValueError(f"sim_hz ({self.sim_hz}) must be an integer multiple of planning_hz ({self.planning_hz})")
        if (self.camera_width is None) != (self.camera_height is None):
            raise ValueError("camera_width and camera_height go together (both set or both null)")

    @property
    def dt(self) -> float:
        return 1.0 / self.sim_hz

    @property
    def steps_per_plan(self) -> int:
        return int(round(self.sim_hz / self.planning_hz))


__all__ = ["SimConfig"]
