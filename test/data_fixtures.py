"""Shared fixtures of the data-layer tests: one small synthetic world per test session, its reader and index.

test/conftest.py registers this file as a plugin (``pytest_plugins``); test modules never import its fixtures:
imported fixtures are cached per module, a plugin's session fixtures once per run, so the world is generated and
the devkit tables are loaded once however many modules use them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

# Small and short: 2 scenes of 8 s at 160 x 90 keep generation to seconds while still giving full 3 s futures,
# truncated futures at the scene ends, and every ego-status code path. The three-point turn swings the ego more
# than 2 m sideways within 3 s (a non-straight command) and reverses; the crossing scene has a crosswalk in range.
SYNTH_SCENARIOS = ["three_point_turn", "ped_crossing"]
SYNTH_SEED = 7
SYNTH_OVERRIDES = {
    "scene_seconds": 8.0,
    "val_fraction": 0.5,  # one train and one val scene
    "camera": {"width": 160, "height": 90},
    "traffic": {"vehicles_same_direction": 2, "vehicles_oncoming": 2, "parked_vehicles": 2, "pedestrians": 3},
    "lidar_ground_rings": 2,
    "lidar_points_per_ring": 32,
    "basemap_resolution_m": 1.0,
}


@dataclass
class SynthWorld:
    dataroot: Path
    version: str


@pytest.fixture(scope="session")
def synth_world(tmp_path_factory: pytest.TempPathFactory) -> SynthWorld:
    """A synthetic nuScenes-format world written by the generator's library API (what `dima data synth` runs)."""
    from dima_core.config import config_from_dict
    from dima_core.data.synth import SynthConfig, generate_dataset

    cfg = config_from_dict(SYNTH_OVERRIDES, SynthConfig, source="data_fixtures.SYNTH_OVERRIDES")
    dataroot = tmp_path_factory.mktemp("synth_world") / "data"
    generate_dataset(str(dataroot), cfg, num_scenes=len(SYNTH_SCENARIOS), seed=SYNTH_SEED, scenarios=SYNTH_SCENARIOS)
    return SynthWorld(dataroot=dataroot, version=cfg.version)


@pytest.fixture(scope="session")
def nusc(synth_world: SynthWorld):
    """The devkit database of the synthetic world."""
    from nuscenes import NuScenes

    return NuScenes(version=synth_world.version, dataroot=str(synth_world.dataroot), verbose=False)


@pytest.fixture(scope="session")
def reader(synth_world: SynthWorld, nusc):
    """NuScenesReader with default settings (CAN bus used when present)."""
    from dima_core.data.nuscenes_reader import NuScenesReader

    return NuScenesReader(synth_world.dataroot, synth_world.version, nusc=nusc)


@pytest.fixture(scope="session")
def pose_reader(synth_world: SynthWorld, nusc):
    """NuScenesReader that ignores the CAN bus (ego status from ego poses)."""
    from dima_core.data.nuscenes_reader import NuScenesReader

    return NuScenesReader(synth_world.dataroot, synth_world.version, nusc=nusc, use_can_bus=False)


@pytest.fixture(scope="session")
def samples(reader):
    """Every DrivingSample of the world, built once."""
    return [reader.build_sample(token) for token in reader.sample_tokens()]


@pytest.fixture(scope="session")
def sample_index(reader, samples):
    """A SampleIndex of the whole world (built from the already built samples)."""
    import time

    from dima_core.data.index import SampleIndex, dataset_fingerprint

    return SampleIndex(
        samples=list(samples),
        dataroot=reader.dataroot,
        version=reader.version,
        fingerprint=dataset_fingerprint(reader.dataroot, reader.version),
        created_unix=time.time(),
    )
