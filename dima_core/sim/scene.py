"""One simulator scene: the dataset's scene generator, called for a single (world config, scenario, seed).

``episode_scene`` builds the scene exactly as ``SynthWorld.generate(cfg, seed, 1, [scenario])`` does (same origin,
generators and lighting; a test checks the two records are identical), twice: once simulated with the expert as
the dataset records it (the *reference*: log replay, the expert's progress, the renderer), once fresh for the live
closed loop, where the traffic reacts to the planner-driven ego instead.
"""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np

from dima_core.data.synth.cameras import camera_rig
from dima_core.data.synth.config import SCENARIOS, SynthConfig
from dima_core.data.synth.render import Lighting
from dima_core.data.synth.scenarios import ScenePlan, build_scene
from dima_core.data.synth.world import SynthScene, scene_names, simulate


class UnknownScenarioError(ValueError):
    """A scenario name the world does not know; the message lists the known ones."""


def check_scenarios(names: list[str]) -> list[str]:
    bad = [n for n in names if n not in SCENARIOS]
    if bad:
        raise UnknownScenarioError(f"unknown scenario(s) {bad}; known: {list(SCENARIOS)}")
    return list(names)


def simulator_world_config(cfg: SynthConfig, episode_seconds: float | None, sim_hz: float | None = None) -> SynthConfig:
    """The world config the simulator runs: the expert's logged drive is never perturbed (recovery demonstrations
    are training data, not the reference), and the reference lasts as long as the episode, at the loop's rate."""
    out = replace(cfg, ego_perturbation=replace(cfg.ego_perturbation, scene_fraction=0.0))
    if sim_hz is not None:
        out = replace(out, sim_hz=float(sim_hz))
    if episode_seconds is not None:
        out = replace(out, scene_seconds=float(episode_seconds))
    return out


def episode_scene(
    cfg: SynthConfig, scenario: str, seed: int, reference_extra_s: float = 0.0
) -> tuple[SynthScene, ScenePlan]:
    """(reference scene, fresh plan) of ``scenario`` for ``seed``; deterministic in (cfg, scenario, seed).

    ``reference_extra_s``: simulate the reference this much longer than ``cfg.scene_seconds`` (the scene itself is
    built for ``cfg``), so that a plan made near the end of an episode still has a logged future to replay.
    """
    check_scenarios([scenario])
    location = cfg.locations[0]
    origin = np.array([0.5, 0.5]) * cfg.scene_region_m + 100.0  # SynthWorld.generate's first region
    plan = build_scene(scenario, cfg, np.random.default_rng([seed, 0, 1]), origin)
    live = copy.deepcopy(plan)  # before simulate() moves its drivers
    record = simulate(plan, replace(cfg, scene_seconds=cfg.scene_seconds + reference_extra_s))
    lighting = Lighting.random(np.random.default_rng([seed, 0, 2]))
    cams = camera_rig(cfg.camera.width, cfg.camera.height)
    scene = SynthScene(0, scene_names(1)[0], location, scenario, plan.tags, plan, record, lighting, cams, cfg, seed)
    return scene, live


__all__ = ["UnknownScenarioError", "check_scenarios", "episode_scene", "simulator_world_config"]
