"""``BringupConfig``: what ``dima ros bringup --config FILE`` starts (nodes of :mod:`dima_ros.launch_spec`).

# config/bringup.yaml
bringup:
  use_sim_time: false
  with_mllm: false
  with_evaluator: false
  with_sim: false                    # the closed-loop simulator (dima ros bringup --sim)
  config_dir: ""                     # node parameter files; "" = the repository's config/
  parameters:                        # per-node overrides, applied after the node's YAML file
    planner: {model.backend: onnxruntime, model.onnx_path: outputs/demo/planner.onnx}
    mllm: {checkpoint: outputs/demo/stage2}
    sim: {scenarios: [cruise, follow], episodes: 2}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dima_core.config import ranged


@dataclass
class BringupConfig:
    """Nodes and parameter overrides of one bringup (the launch files take the same values as arguments)."""

    use_sim_time: bool = ranged(False, help="all nodes use /clock (set automatically with --bag)")
    with_mllm: bool = ranged(False, help="start the MLLM node (AskScene service)")
    with_evaluator: bool = ranged(False, help="start the online evaluator (set automatically with --bag)")
    with_sim: bool = ranged(False, help="start the closed-loop simulator node (set by --sim; implies use_sim_time)")
    config_dir: str = ranged("", help="directory of the node parameter files; empty = the repository's config/")
    parameters: dict[str, dict[str, Any]] = field(default_factory=dict)
    executor_threads: int = ranged(0, lo=0, hi=256, help="MultiThreadedExecutor threads; 0 = enough for the nodes")
    replay_rate: float = ranged(1.0, lo=0.01, hi=100.0, help="--bag: playback rate")
    replay_settle_s: float = ranged(
        3.0, lo=0.0, hi=600.0, help="--bag: after the replay, wait this long with no new trajectory before the report"
    )


__all__ = ["BringupConfig"]
