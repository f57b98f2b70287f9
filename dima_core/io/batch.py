"""Nested batches (tensors in dicts, lists and tuples, as collate functions return them): device moves, size.

Shared by the trainer (:mod:`dima_core.training.trainer`), the stage step functions, evaluation
(:mod:`dima_core.eval.planner_inference`) and the training benchmark, none of which owns the other.
"""

from __future__ import annotations

from typing import Any

import torch


def move_to_device(batch: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """Tensors (nested in dicts/lists/tuples) onto ``device``; everything else unchanged."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=non_blocking)
    if isinstance(batch, dict):
        return {k: move_to_device(v, device, non_blocking) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        moved = [move_to_device(v, device, non_blocking) for v in batch]
        return type(batch)(moved) if isinstance(batch, tuple) else moved
    return batch


def batch_size_of(batch: Any) -> int:
    """Leading dimension of the first tensor found in the batch (1 for a 0-d tensor, 0 when there is none)."""
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else 1
    values = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else []
    for value in values:
        size = batch_size_of(value)
        if size:
            return size
    return 0


__all__ = ["batch_size_of", "move_to_device"]
