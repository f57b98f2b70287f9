"""Typed configuration of the synthetic nuScenes-format world (YAML-loadable through :mod:`dima_core.config`).

``config/synth.yaml`` holds the defaults; ``dima data synth --config FILE`` overrides any subset of keys.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from dima_core.config import ranged

# Scenario names. The first five are "normal" driving; the last three are the long-tail manoeuvres the DiMA
# distillation benchmark holds out (docs/design.md, Evaluation protocol: long-tail splits).
SCENARIOS: tuple[str, ...] = (
    "cruise",
    "follow",
    "turn_left",
    "turn_right",
    "ped_crossing",
    "overtake",
    "three_point_turn",
    "resume_from_stop",
)
LONG_TAIL_SCENARIOS: tuple[str, ...] = ("overtake", "three_point_turn", "resume_from_stop")

LOCATIONS: tuple[str, ...] = (
    "boston-seaport",
    "singapore-onenorth",
    "singapore-hollandvillage",
    "singapore-queenstown",
)

Location = Literal["boston-seaport", "singapore-onenorth", "singapore-hollandvillage", "singapore-queenstown"]


def _default_mix() -> dict[str, float]:
    return {
        "cruise": 2.0,
        "follow": 1.5,
        "turn_left": 1.0,
        "turn_right": 1.0,
        "ped_crossing": 1.0,
        "overtake": 1.0,
        "three_point_turn": 1.0,
        "resume_from_stop": 1.0,
    }


@dataclass
class CameraConfig:
    """Image size of every camera. Intrinsics are nuScenes' (1600 x 900) scaled to this size."""

    width: int = ranged(400, lo=32, hi=3200, help="image width in pixels")
    height: int = ranged(225, lo=18, hi=1800, help="image height in pixels")
    jpeg_quality: int = ranged(90, lo=10, hi=100, help="fixed JPEG quality (fixed so output is byte-identical)")
    noise_std: float = ranged(4.0, lo=0.0, hi=40.0, help="sensor noise, std of additive Gaussian noise in DN")
    near_m: float = ranged(0.3, lo=0.05, hi=5.0, help="near clipping plane, metres")
    far_m: float = ranged(150.0, lo=20.0, hi=1000.0, help="geometry farther than this is culled, metres")


@dataclass
class TrafficConfig:
    """How busy the world is (counts are per scene, before scenario-specific actors)."""

    vehicles_same_direction: int = ranged(3, lo=0, hi=30, help="moving vehicles in the ego's direction")
    vehicles_oncoming: int = ranged(4, lo=0, hi=30, help="moving vehicles in the opposite direction")
    parked_vehicles: int = ranged(4, lo=0, hi=40, help="parked vehicles on the shoulders")
    pedestrians: int = ranged(6, lo=0, hi=60, help="pedestrians on walkways")
    cyclists: int = ranged(1, lo=0, hi=20, help="cyclists on the shoulder")
    buildings_per_100m: float = ranged(3.0, lo=0.0, hi=20.0, help="roadside buildings per 100 m of road side")
    annotation_radius_m: float = ranged(60.0, lo=10.0, hi=200.0, help="agents within this ego distance are annotated")


@dataclass
class EgoPerturbationConfig:
    """Recovery demonstrations: in a share of the scenes the logged ego drifts off its lane centre and steers back.

    Imitation learning from an expert who never errs teaches a planner nothing about getting back on track, so a
    closed-loop planner drifts off the road after its first small error (covariate shift; ChauffeurNet's remedy is
    perturbed training trajectories). Here each event offsets the expert's driven path sideways with a quick drift
    (``rise_s``) and a slower return (``return_s``) to the lane centre; headings follow the perturbed path, so the
    cameras, ego poses and CAN bus all show one consistent drive and every keyframe's future shows the recovery.
    Off by default (``scene_fraction: 0``): the default world stays the expert's exact drive.
    """

    scene_fraction: float = ranged(0.0, lo=0.0, hi=1.0, help="share of scenes whose ego drive carries drift events")
    events_per_minute: float = ranged(6.0, lo=0.0, hi=60.0, help="drift events per minute of forward driving")
    max_offset_m: float = ranged(1.2, lo=0.0, hi=3.0, help="largest sideways offset of an event, metres")
    min_offset_m: float = ranged(0.3, lo=0.0, hi=3.0, help="smallest sideways offset of an event, metres")
    rise_s: tuple[float, float] = field(default=(0.6, 1.5), metadata={"help": "drift duration range, seconds"})
    return_s: tuple[float, float] = field(default=(2.0, 3.5), metadata={"help": "return duration range, seconds"})
    min_speed_mps: float = ranged(2.0, lo=0.0, hi=30.0, help="events only while driving forward faster than this")

    def validate(self) -> None:
        if self.min_offset_m > self.max_offset_m:
            raise ValueError("ego_perturbation.min_offset_m must be <= max_offset_m")
        for name in ("rise_s", "return_s"):
            lo, hi = getattr(self, name)
            if not 0.1 <= lo <= hi <= 20.0:
                raise ValueError(f"ego_perturbation.{name} must be [lo, hi] with 0.1 <= lo <= hi <= 20 s")


@dataclass
class SynthConfig:
    """The whole synthetic world: dataset layout, scenes, traffic, cameras, lidar."""

    version: str = "v1.0-synth"
    scene_seconds: float = ranged(20.0, lo=1.0, hi=120.0, help="scene length in seconds (2 Hz keyframes)")
    sim_hz: float = ranged(10.0, lo=5.0, hi=50.0, help="simulation rate; keyframes are every 1/2 s of it")
    can_bus_hz: float = ranged(50.0, lo=2.0, hi=100.0, help="CAN bus pose message rate")
    scenario_mix: dict[str, float] = field(default_factory=_default_mix)
    locations: list[Location] = field(default_factory=lambda: list(LOCATIONS))
    val_fraction: float = ranged(0.2, lo=0.0, hi=1.0, help="fraction of scenes in the val split")
    holdout_scenarios: list[str] = field(
        default_factory=list, metadata={"help": "scenarios that go to val only (never to train)"}
    )
    camera: CameraConfig = field(default_factory=CameraConfig)
    traffic: TrafficConfig = field(default_factory=TrafficConfig)
    ego_perturbation: EgoPerturbationConfig = field(default_factory=EgoPerturbationConfig)
    lidar_ground_rings: int = ranged(16, lo=0, hi=128, help="rings of simulated lidar ground returns")
    lidar_points_per_ring: int = ranged(256, lo=16, hi=4096, help="azimuth samples per lidar ring")
    lidar_box_density: float = ranged(600.0, lo=0.0, hi=1e5, help="box surface points per m^2 at 1 m range")
    basemap_resolution_m: float = ranged(0.1, lo=0.1, hi=10.0, help="semantic prior PNG resolution (devkit: 0.1)")
    basemap_max_pixels: int = ranged(60_000_000, lo=10_000, help="coarsen the basemap PNG beyond this many pixels")
    scene_region_m: float = ranged(1000.0, lo=400.0, hi=5000.0, help="side of each scene's disjoint map region")

    def validate(self) -> None:
        unknown = [k for k in self.scenario_mix if k not in SCENARIOS]
        if unknown:
            raise ValueError(f"scenario_mix has unknown scenarios {unknown}; known: {list(SCENARIOS)}")
        if any(w < 0 for w in self.scenario_mix.values()) or sum(self.scenario_mix.values()) <= 0:
            raise ValueError("scenario_mix weights must be >= 0 with a positive sum")
        bad = [k for k in self.holdout_scenarios if k not in SCENARIOS]
        if bad:
            raise ValueError(f"holdout_scenarios has unknown scenarios {bad}; known: {list(SCENARIOS)}")
        if not self.locations:
            raise ValueError("locations must name at least one nuScenes map location")
        if not self.version or "/" in self.version:
            raise ValueError(f"version must be a plain directory name, got {self.version!r}")

    @property
    def num_keyframes(self) -> int:
        """Keyframes per scene at 2 Hz (t = 0, 0.5, ..)."""
        return int(round(self.scene_seconds * 2.0))

    @property
    def steps_per_keyframe(self) -> int:
        """Simulation steps between two keyframes."""
        return max(1, int(round(self.sim_hz * 0.5)))
