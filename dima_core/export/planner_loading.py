"""Build the vision planner for export or inference: from a training checkpoint (stage 1 or 2), or a model YAML.

A checkpoint carries its resolved model config (``model_config``, see :mod:`dima_core.io.checkpoint`), so
deploying one needs no YAML and cannot pair weights with the wrong architecture. A model YAML alone gives random
weights (seeded): enough for latency benchmarks and interface tests, never for driving.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

import torch

from dima_core.config import config_to_dict
from dima_core.models import ModelConfig, VisionPlanner, load_model_config

log = logging.getLogger(__name__)


@dataclass
class LoadedPlanner:
    """The model in eval mode, its config, and where its weights came from (recorded in the export sidecar)."""

    model: VisionPlanner
    config: ModelConfig
    source: dict[str, Any]


def load_planner(
    checkpoint: str | os.PathLike[str] | None = None, model_config: str | os.PathLike[str] | None = None, seed: int = 0
) -> LoadedPlanner:
    """Exactly one of ``checkpoint`` (file or run directory) or ``model_config`` (YAML, random weights)."""
    if (checkpoint is None) == (model_config is None):
        raise ValueError("give exactly one of a checkpoint (trained weights) or a model config (random weights)")
    if checkpoint is not None:
        # One loader for every checkpoint kind: a stage-2 checkpoint deploys its (distilled) planner; the teacher
        # and the LLM are never constructed.
        from dima_core.models.dima import load_dima

        loaded = load_dima(checkpoint, mode="vision")
        model, config = loaded.model.planner, loaded.model_config
        source = {"checkpoint": str(os.path.abspath(loaded.checkpoint)), "step": loaded.step, "stage": loaded.stage}
    else:
        config = load_model_config(model_config)  # type: ignore[arg-type]
        torch.manual_seed(seed)  # random weights, but the same ones for every backend built from this YAML
        model = VisionPlanner(config)
        source = {"model_config": str(os.path.abspath(model_config)), "random_weights_seed": seed}  # type: ignore[arg-type]
        log.warning("planner %s has RANDOM weights (no checkpoint given): for benchmarks and tests only", config.name)
    model.eval()
    return LoadedPlanner(model, config, source)


def model_config_dict(config: ModelConfig) -> dict[str, Any]:
    """The JSON-serialisable form stored in sidecars (tuples as lists)."""
    return config_to_dict(config)


__all__ = ["LoadedPlanner", "load_planner", "model_config_dict"]
