"""Plain helpers (no fixtures) shared by the checkpoint evaluation and visualisation tests.

:func:`train_micro_checkpoint` trains the micro planner of ``training_fixtures.MICRO_MODEL_OVERRIDES`` for a couple
of steps with the real ``dima train --stage 1`` on the session's synthetic world; the tests only need a genuine
stage-1 checkpoint (model config stored in it), not a good planner.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dima_core.cli import main as dima_main
from training_fixtures import stage1_cli_args


def train_micro_checkpoint(world: Any, model_yaml: Path, index: Path, out: Path, steps: int = 2) -> Path:
    """Run directory of a ``steps``-step stage-1 run of the micro planner (one thread: 2 shared cores)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        args = stage1_cli_args(
            world,
            model_yaml,
            index,
            out,
            "--max-steps",
            str(steps),
            "--epochs",
            "1",
            "--val-split",
            "none",
            "--train-split",
            "train",
            "--no-tensorboard",
        )
        if dima_main(args) != 0:
            raise RuntimeError(f"dima {' '.join(args)} failed")
    finally:
        torch.set_num_threads(previous)
    return out
