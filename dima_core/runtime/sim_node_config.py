"""``SimNodeConfig``: the typed parameters of the closed-loop simulator node (``dima_ros/sim_node.py``), and the
ROS-free pieces the node, ``dima ros bringup --sim`` and ``launch/sim_closed_loop.launch.py`` share.

``dima_ros.parameters`` declares one ROS parameter per field (description, range and read-only flag from
:func:`dima_core.runtime.config.param`); ``config/sim_node.yaml`` holds the defaults under ``/**: ros__parameters:``.

- :func:`load_sim_setup`: the world and simulator configs, scenarios and seeds the parameters name, with the same
  loading rules as ``dima sim run`` (``dima_core.commands.sim``), so a node and the command line run the same
  episodes for the same values; relative paths are tried against the working directory, then the package root
  and the installed ``share/dima`` (``ros2 launch`` starts nodes in an arbitrary directory).
- :func:`planner_calibration_overrides`: the simulator's camera extrinsics as planner-node parameters. The planner
  takes intrinsics from the simulator's CameraInfo and extrinsics from configuration (the pip-only stack has no
  tf2_msgs); these are the rig's exact values, so the planner over ROS gets the calibration the Python loop gives it.
"""

from __future__ import annotations

import os
import types
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from dima_core.runtime.config import param

if TYPE_CHECKING:
    from dima_core.data.synth.config import SynthConfig
    from dima_core.sim.config import SimConfig

TimingMode = Literal["lockstep", "realtime"]


@dataclass
class SimNodeConfig:
    """Parameters of the simulator node (ROS names are the field names)."""

    scenarios: list[str] = param(
        default_factory=lambda: ["all"],
        read_only=True,
        help="scenario names of the synthetic world, or 'all' (every scenario of dima_core.data.synth.config)",
    )
    episodes: int = param(1, lo=1, hi=100_000, read_only=True, help="episodes (seeds) per scenario")
    seed: int = param(0, lo=0, hi=2**31 - 1, read_only=True, help="first seed; episodes use seed, seed+1, ...")
    sim_config: str = param("config/sim.yaml", read_only=True, help="SimConfig YAML (dima_core.sim.config)")
    world_config: str = param(
        "", read_only=True, help="SynthConfig YAML of the world; empty: the sim config's world_config"
    )
    episode_seconds: float = param(
        0.0, lo=0.0, hi=3600.0, read_only=True, help="episode length; 0: the sim config's (or the world's)"
    )
    timing: TimingMode = param(
        "lockstep",
        read_only=True,
        help="lockstep: after each frame the simulation waits for the trajectory stamped with it (the planner is "
        "scored on its decisions); realtime: simulated time advances with the wall clock and a plan is applied "
        "when it arrives (its latency counts)",
    )
    plan_timeout_s: float = param(
        30.0,
        lo=0.01,
        hi=3600.0,
        help="lockstep: wall seconds to wait for a frame's trajectory before counting a missed plan (the ego keeps "
        "its last plan)",
    )
    realtime_rate: float = param(1.0, lo=0.01, hi=100.0, help="realtime: simulated seconds per wall-clock second")
    connect_timeout_s: float = param(
        120.0,
        lo=1.0,
        hi=3600.0,
        read_only=True,
        help="wall seconds to wait for the planner to subscribe and answer a probe frame before giving up",
    )
    baselines: list[str] = param(
        default_factory=lambda: ["expert", "cv"],
        read_only=True,
        help="policies run in-process on every episode beside the ROS planner (dima sim run's POLICY_KINDS); the "
        "expert always runs, its metrics are the reference the planner is scored against",
    )
    policy_name: str = param("planner (ROS)", read_only=True, help="the ROS-driven planner's name in the report")
    output_dir: str = param(
        "outputs/sim_node",
        read_only=True,
        help="report.json, table.md and episodes/*.npz (ego poses and plans of the ROS episodes); empty: none",
    )
    episode_gap_s: float = param(
        1.0,
        lo=0.0,
        hi=3600.0,
        read_only=True,
        help="simulated seconds between two episodes (the clock never goes back)",
    )
    publish_markers: bool = param(True, help="publish ~/output/markers (visualization_msgs/MarkerArray) every frame")
    shutdown_when_done: bool = param(
        True,
        read_only=True,
        help="as its own process (ros2 run / launch / python -m): exit after the last episode, which ends a launch; "
        "dima ros bringup --sim always ends after printing the table",
    )
    diagnostics_period_s: float = param(
        1.0, lo=0.05, hi=60.0, read_only=True, help="period of the /diagnostics summary"
    )

    def validate(self) -> None:
        if not self.scenarios:
            raise ValueError("scenarios is empty: name at least one scenario (or 'all')")
        if not any(b.partition(":")[0] == "expert" for b in self.baselines):
            # Kept explicit rather than added silently: the report's reference must be visible in the config.
            raise ValueError(
                "baselines must include 'expert': its metrics are the reference every policy is "
                "scored against (dima_core.sim.runner)"
            )


@dataclass
class SimSetup:
    """What the node runs: the loaded world and simulator configs, the scenario names and the seeds, and the files
    they came from."""

    world_cfg: SynthConfig  # the synthetic world the episodes are generated in (camera size overridden by sim)
    sim_cfg: SimConfig  # rates, duration, early-end rules, the vehicle and its tracking controller
    scenarios: list[str]
    seeds: list[int]
    sim_config_path: str
    world_config_path: str | None = None
    files: dict[str, str] = field(default_factory=dict)


def package_root() -> Path:
    """The source tree (or install share/dima) that holds ``config/``."""
    return Path(__file__).resolve().parents[2]


def search_roots() -> list[Path]:
    """Where relative config paths are looked up after the working directory: the source tree, then
    ``share/dima`` of every ``$AMENT_PREFIX_PATH`` entry (a colcon install puts ``config/`` there)."""
    roots = [package_root()]
    for prefix in filter(None, os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)):
        roots.append(Path(prefix) / "share" / "dima")
    return roots


def resolve_path(path: str, what: str) -> str:
    """``path`` as given when it exists (absolute or relative to the working directory), else the first of
    :func:`search_roots` that has it; FileNotFoundError naming every place looked in otherwise."""
    if os.path.exists(path):
        return path
    if not os.path.isabs(path):
        for root in search_roots():
            if (root / path).exists():
                return str(root / path)
    places = [os.getcwd()] + ([] if os.path.isabs(path) else [str(r) for r in search_roots()])
    raise FileNotFoundError(f"{what} {path!r} not found (looked in {', '.join(places)})")


def load_sim_setup(cfg: SimNodeConfig) -> SimSetup:
    """Load what ``cfg`` names, as ``dima sim run`` loads it. Raises FileNotFoundError, ConfigError or
    UnknownScenarioError (all ValueError/OSError) with a message naming the parameter's value."""
    from dima_core.commands.sim import load_configs, resolve_scenarios
    from dima_core.config import load_config
    from dima_core.sim.config import SimConfig

    sim_path = resolve_path(cfg.sim_config, "sim_config")
    world_path = cfg.world_config or load_config(sim_path, SimConfig).world_config
    world_path = resolve_path(world_path, "world_config") if world_path else None
    args = types.SimpleNamespace(
        sim_config=sim_path, world_config=world_path, seconds=cfg.episode_seconds if cfg.episode_seconds > 0 else None
    )
    world_cfg, sim_cfg = load_configs(args)
    scenarios = resolve_scenarios(list(cfg.scenarios))
    seeds = list(range(cfg.seed, cfg.seed + cfg.episodes))
    return SimSetup(
        world_cfg,
        sim_cfg,
        scenarios,
        seeds,
        sim_path,
        world_path,
        {"sim_config": sim_path, "world_config": world_path or "(SynthConfig defaults)"},
    )


def planner_calibration_overrides() -> dict[str, list[float]]:
    """Flat planner-node parameters ``calibration.<CAM>.cam_to_ego`` of the simulator's camera rig (row-major 4x4).

    The rig's extrinsics do not depend on the image size, so they hold for any camera size a sim config chooses.
    """
    from dima_core.data.synth.cameras import FULL_HEIGHT, FULL_WIDTH, camera_rig

    return {
        f"calibration.{cam.name}.cam_to_ego": [float(v) for v in cam.cam_to_ego.reshape(-1)]
        for cam in camera_rig(FULL_WIDTH, FULL_HEIGHT)
    }


__all__ = [
    "SimNodeConfig",
    "SimSetup",
    "TimingMode",
    "load_sim_setup",
    "package_root",
    "planner_calibration_overrides",
    "resolve_path",
    "search_roots",
]
