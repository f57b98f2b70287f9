"""The exact module that is exported to ONNX and run by the torch backend, so both compute the same function.

:class:`DeploymentPlanner` is :class:`~dima_core.models.vision_planner.ExportablePlanner` restricted to the chosen
outputs (:func:`~dima_core.export.io_spec.planner_output_names`): when only trajectories are requested the exporter
drops the subgraphs nothing reads, and the torch backend returns the same names in the same order.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch
from torch import nn

from dima_core.models.vision_planner import EXPORT_OUTPUT_NAMES, ExportablePlanner, VisionPlanner

# ExportablePlanner.forward's positional parameters, in order.
FORWARD_ARGS: tuple[str, ...] = (
    "images",
    "intrinsics",
    "cam_to_ego",
    "ego_status",
    "command",
    "prev_bev",
    "ego_motion",
)


class DeploymentPlanner(nn.Module):
    """``forward(*FORWARD_ARGS[:k]) -> tuple`` of the outputs named ``output_names``."""

    def __init__(self, model: VisionPlanner, output_names: tuple[str, ...]):
        super().__init__()
        unknown = [n for n in output_names if n not in EXPORT_OUTPUT_NAMES]
        if unknown:
            raise ValueError(f"unknown planner outputs {unknown}; known: {list(EXPORT_OUTPUT_NAMES)}")
        self.planner = ExportablePlanner(model)
        self.output_names = tuple(output_names)
        self.indices = [EXPORT_OUTPUT_NAMES.index(n) for n in output_names]

    def forward(self, *args: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.planner(*args)
        return tuple(out[i] for i in self.indices)


def positional_args(
    feeds: Mapping[str, np.ndarray], device: torch.device | str = "cpu"
) -> tuple[tuple[str, ...], tuple[torch.Tensor, ...]]:
    """(names, tensors) of :class:`DeploymentPlanner`'s positional arguments from a validated frame.

    An input the graph prunes (``ego_status`` of a model without ego status) is absent from the frame; the module
    still takes it positionally, so it gets zeros, which the model never reads.
    """
    names = FORWARD_ARGS if "prev_bev" in feeds else FORWARD_ARGS[:5]
    tensors = tuple(
        torch.from_numpy(np.asarray(feeds[n])).to(device) if n in feeds else torch.zeros(1, 4, device=device)
        for n in names
    )
    return names, tensors


__all__ = ["DeploymentPlanner", "FORWARD_ARGS", "positional_args"]
