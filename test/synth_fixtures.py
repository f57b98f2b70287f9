"""Fixtures of the synthetic-world tests (``test_synth_*.py``). test/conftest.py registers this module in
``pytest_plugins``, so each world is generated once per test session.

- ``synth_written``: a small dataroot written by the library API (2 scenes x 5 s, 320 x 180 images) plus the
  in-memory world it came from (same seed), so tests can re-render frames and compare with what was written.
- ``synth_longtail``: the three long-tail scenarios simulated for 20 s (no rendering; cheap).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

SYNTH_TEST_SEED = 11
SYNTH_TEST_SCENARIOS = ["cruise", "turn_left"]


def small_config(**overrides):
    """A SynthConfig for fast tests: short scenes, small images, light lidar."""
    from dima_core.config import config_from_dict
    from dima_core.data.synth import SynthConfig

    data = {
        "scene_seconds": 5.0,
        "camera": {"width": 320, "height": 180},
        "lidar_ground_rings": 4,
        "lidar_points_per_ring": 64,
        "basemap_resolution_m": 1.0,
        "val_fraction": 0.5,
    }
    data.update(overrides)
    return config_from_dict(data, SynthConfig, source="test")


@dataclass
class WrittenWorld:
    dataroot: Path
    version: str
    world: object  # dima_core.data.synth.SynthWorld (same seed and config as the files)


@pytest.fixture(scope="session")
def synth_written(tmp_path_factory: pytest.TempPathFactory) -> WrittenWorld:
    from dima_core.data.synth import SynthWorld

    cfg = small_config()
    world = SynthWorld.generate(cfg, SYNTH_TEST_SEED, len(SYNTH_TEST_SCENARIOS), SYNTH_TEST_SCENARIOS)
    root = tmp_path_factory.mktemp("synth_written") / "data"
    world.write(str(root))
    return WrittenWorld(root, cfg.version, world)


@pytest.fixture(scope="session")
def synth_nusc(synth_written: WrittenWorld):
    from nuscenes.nuscenes import NuScenes

    return NuScenes(version=synth_written.version, dataroot=str(synth_written.dataroot), verbose=False)


@pytest.fixture(scope="session")
def synth_longtail():
    """{scenario: SynthScene} for overtake, three_point_turn and resume_from_stop, 20 s each, simulated only."""
    from dima_core.data.synth import SynthWorld

    names = ["overtake", "three_point_turn", "resume_from_stop"]
    world = SynthWorld.generate(small_config(scene_seconds=20.0), 3, len(names), names)
    return {s.scenario: s for s in world.scenes}
