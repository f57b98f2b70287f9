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
from typing import Any, Optional

from torch import nn

from dima_core.eval.planner_inference import LoadedPlanner
from dima_core.models.dima import MODES, LoadedDima, ModePlanner, load_dima


def loaded_planner_view(loaded: LoadedDima, model: Optional[nn.Module] = None) -> LoadedPlanner:
    """``loaded`` as a :class:`LoadedPlanner` (data config from the checkpoint's training config)."""
    from dima_core.config import config_from_dict
    from dima_core.training.config import TrainConfig
    from dima_core.training.stage1 import stage1_data_config

    if loaded.stage == 2:
        from dima_core.training.stage2 import Stage2TrainConfig

        config_cls: Any = Stage2TrainConfig
    else:
        config_cls = TrainConfig
    train_config = config_from_dict(dict(loaded.train_config), config_cls, source=f"{loaded.checkpoint}:config")
    return LoadedPlanner(
        model=model if model is not None else loaded.model.planner,  # type: ignore[arg-type]
        model_config=loaded.model_config,
        data_config=stage1_data_config(train_config, loaded.model_config),
        checkpoint=loaded.checkpoint,
        step=loaded.step,
    )


def load_planner_for_mode(checkpoint: str | os.PathLike, mode: str = "vision", llm: Optional[nn.Module] = None,
                          tokenizer: Any = None) -> LoadedPlanner:
    """A :class:`LoadedPlanner` whose ``model`` plans in ``mode`` (VisionPlanner's call signature in all modes).

    ``vision`` yields the bare :class:`~dima_core.models.VisionPlanner` (the deployed network); the teacher modes
    a :class:`~dima_core.models.dima.ModePlanner` around the joint model.
    """
    if mode not in MODES:
        raise ValueError(f"--mode must be one of {MODES}, got {mode!r}")
    loaded = load_dima(checkpoint, mode=mode, llm=llm, tokenizer=tokenizer)  # type: ignore[arg-type]
    model = loaded.model.planner if mode == "vision" else ModePlanner(loaded.model, mode)  # type: ignore[arg-type]
    return loaded_planner_view(loaded, model)


__all__ = ["load_planner_for_mode", "load_planner_for_mode_cli", "loaded_planner_view"]


def load_planner_for_mode_cli(checkpoint: str | os.PathLike, mode: str = "vision") -> LoadedPlanner:
    """``dima eval --checkpoint CKPT --mode M``: stage-1 checkpoints in vision mode take the stage-1 loader
    (:func:`~dima_core.eval.planner_inference.load_planner_for_cli`) unchanged; stage-2 checkpoints and the teacher
    modes come through :func:`load_planner_for_mode`. Checkpoint problems become one-line ``ValueError``s."""
    from dima_core.eval.planner_inference import load_planner_for_cli
    from dima_core.training.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint

    try:
        stored = load_checkpoint(resolve_checkpoint(checkpoint), map_location="cpu").get("model_config") or {}
        if mode == "vision" and "mllm" not in stored:
            return load_planner_for_cli(checkpoint)
        return load_planner_for_mode(checkpoint, mode)
    except CheckpointError as exc:
        raise ValueError(str(exc)) from exc
