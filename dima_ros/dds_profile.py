"""The Fast DDS transport profile our ROS processes use unless the user chose one.

Six nuScenes-size JPEGs are ~1.2 MB per frame set, more than the 512 KiB shared-memory segment Fast DDS gives a
participant by default: frames are overwritten before the planner takes them (measured with
``dima bench latency --pipelines ros``: 7 of 60+ frame sets arrived; docs/planner_node.md, Transport).
``config/fastdds_large_data.xml`` enlarges the segment. Fast DDS reads the profile file when a participant is
created, so it must be in the environment before ``rclpy.init`` (or in the environment of each launched process).
A profile the user exported (either variable name) always wins; other RMW implementations are left alone.
"""

from __future__ import annotations

import logging
import os
from collections.abc import MutableMapping
from pathlib import Path

from dima_ros.launch_spec import repository_root

log = logging.getLogger(__name__)

PROFILE_FILE_NAME = "fastdds_large_data.xml"
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")  # current, deprecated


def profile_environment(
    config_dir: str | None = None, environ: MutableMapping[str, str] | None = None
) -> dict[str, str]:
    """``{FASTDDS_DEFAULT_PROFILES_FILE: <config_dir>/fastdds_large_data.xml}``, or ``{}`` when not ours to set.

    Empty when the user already points Fast DDS at a profile, when another RMW than rmw_fastrtps_cpp is selected,
    or when the file is not there (an install without our config directory).
    """
    env = os.environ if environ is None else environ
    if any(env.get(name) for name in PROFILE_VARIABLES):
        return {}
    if env.get("RMW_IMPLEMENTATION", "rmw_fastrtps_cpp") != "rmw_fastrtps_cpp":
        return {}
    path = Path(config_dir) / PROFILE_FILE_NAME if config_dir else repository_root() / "config" / PROFILE_FILE_NAME
    return {PROFILE_VARIABLES[0]: str(path.resolve())} if path.is_file() else {}


def use_large_data_profile(environ: MutableMapping[str, str] | None = None) -> str | None:
    """Put the shipped profile into this process's environment (call before ``rclpy.init``); the path or None."""
    env = os.environ if environ is None else environ
    chosen = profile_environment(environ=env)
    env.update(chosen)
    if chosen:
        log.info(
            "Fast DDS profile %s (large shared-memory segment for camera frames; export %s to choose another)",
            chosen[PROFILE_VARIABLES[0]],
            PROFILE_VARIABLES[0],
        )
    return chosen.get(PROFILE_VARIABLES[0])


__all__ = ["PROFILE_FILE_NAME", "PROFILE_VARIABLES", "profile_environment", "use_large_data_profile"]
