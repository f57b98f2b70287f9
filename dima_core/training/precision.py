"""Mixed precision: which autocast dtype and whether a GradScaler runs, given the request and the device.

- ``off``: fp32 everywhere.
- ``fp16`` on CUDA: autocast to float16 plus a dynamic loss scaler (fp16 gradients underflow without it).
- ``bf16`` on CUDA: autocast to bfloat16, no scaler (bf16 has fp32's exponent range). GPUs without bf16 support
  are an error rather than a silent fp16 switch, because fp16 needs the scaler and behaves differently.
- Any mixed precision on CPU: fp32 with a WARNING (policy and reason in :mod:`dima_core.training.config`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Optional

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precision:
    """The effective precision of a run."""

    name: str  # "off", "fp16" or "bf16": what actually runs
    autocast_dtype: Optional[torch.dtype]  # None: no autocast
    use_grad_scaler: bool

    @property
    def enabled(self) -> bool:
        return self.autocast_dtype is not None


def resolve_precision(requested: str, device: torch.device) -> Precision:
    """Map the configured precision onto what ``device`` supports (see the module docstring)."""
    if requested == "off":
        return Precision("off", None, False)
    if requested not in ("fp16", "bf16"):
        raise ValueError(f"unknown precision {requested!r}: use off, fp16 or bf16")
    if device.type != "cuda":
        log.warning(
            "precision %s requested but training runs on %s: mixed precision is GPU-only, falling back to fp32",
            requested,
            device.type,
        )
        return Precision("off", None, False)
    if requested == "bf16":
        if not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision bf16 requested but {torch.cuda.get_device_name(device)} lacks bf16; use fp16")
        return Precision("bf16", torch.bfloat16, False)
    return Precision("fp16", torch.float16, True)


__all__ = ["Precision", "resolve_precision"]
