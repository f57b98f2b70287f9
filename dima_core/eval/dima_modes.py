"""DiMA's three inference modes behind the planner evaluation path (``dima eval --checkpoint CKPT --mode M``).

    from dima_core.eval.dima_modes import load_planner_for_mode
    loaded = load_planner_for_mode("runs/stage2", "dual")     # a LoadedPlanner whose model runs the chosen mode
    result = run_planner(loaded.model, inference_dataset(loaded, index, "val"))

- ``vision``: the planner alone (stage-1 or stage-2 checkpoint); the LLM is not constructed.
- ``mllm``: the teacher's planning head on the planner's BEAM tokens (stage-2 checkpoints).
- ``dual``: the planner's final head on the max-pool of both penultimate ego features (stage-2 checkpoints).

The returned :class:`~dima_core.eval.planner_inference.LoadedPlanner` is the one the stage-1 evaluation uses, so
datasets, metrics, detection/map scores and latency come from the same code for every mode; the latency of the
teacher modes includes the LLM forward.
"""

from __future__ import annotations

import os
from typing import Any

from torch import nn

from dima_core.eval.planner_inference import LoadedPlanner, loaded_planner_view
from dima_core.models.dima import MODES, ModePlanner, load_dima


def load_planner_for_mode(
    checkpoint: str | os.PathLike, mode: str = "vision", llm: nn.Module | None = None, tokenizer: Any = None
) -> LoadedPlanner:
    """A :class:`LoadedPlanner` whose ``model`` plans in ``mode`` (VisionPlanner's call signature in all modes).

    ``vision`` yields the bare :class:`~dima_core.models.VisionPlanner` (the deployed network); the teacher modes
    a :class:`~dima_core.models.dima.ModePlanner` around the joint model.
    """
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {MODES}, got {mode!r}")
    loaded = load_dima(checkpoint, mode=mode, llm=llm, tokenizer=tokenizer)  # type: ignore[arg-type]
    model = loaded.model.planner if mode == "vision" else ModePlanner(loaded.model, mode)  # type: ignore[arg-type]
    return loaded_planner_view(loaded, model)


__all__ = ["load_planner_for_mode", "load_planner_for_mode_cli"]


def load_planner_for_mode_cli(checkpoint: str | os.PathLike, mode: str = "vision") -> LoadedPlanner:
    """:func:`load_planner_for_mode` for ``dima eval --checkpoint CKPT --mode M``: checkpoint problems become
    one-line ``ValueError``s (exit status 2) instead of tracebacks."""
    from dima_core.io.checkpoint import CheckpointError

    try:
        return load_planner_for_mode(checkpoint, mode)
    except CheckpointError as exc:
        raise ValueError(str(exc)) from exc
