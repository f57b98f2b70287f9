"""Mixed precision: which autocast dtype and whether a GradScaler runs, given the request and the device.

- ``off``: fp32 everywhere.
- ``fp16`` on CUDA: autocast to float16 plus a dynamic loss scaler (fp16 gradients underflow without it).
- ``bf16`` on CUDA: autocast to bfloat16, no scaler (bf16 has fp32's exponent range). GPUs without bf16 support
  are an error rather than a silent fp16 switch, because fp16 needs the scaler and behaves differently.
- ``bf16`` on a CPU with ``cpu_bf16`` (TrainConfig): autocast to bfloat16 on the CPU (convolutions and matrix
  products in bf16, the rest in fp32 per torch's CPU autocast lists), no scaler. Worth it only where oneDNN computes
  bf16 natively (AVX512-BF16 or AMX, :func:`cpu_has_native_bf16`); on an AVX2-only CPU it is emulated by
  conversions around fp32 kernels and logged as such: measured on the project's 2-core AVX2 EPYC, a ``dima_cpu``
  training step ran about 6x *slower* than in fp32 (``dima bench train``, docs/benchmarks.md).
- Any other mixed precision on a CPU (``fp16``, or ``bf16`` without ``cpu_bf16``): fp32 with a WARNING (policy and
  reason in :mod:`dima_core.training.config`).

Stage 1 computes its losses and Hungarian matching in fp32 whatever the autocast (training/stage1.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Precision:
    """The effective precision of a run."""

    name: str  # "off", "fp16" or "bf16": what actually runs
    autocast_dtype: torch.dtype | None  # None: no autocast
    use_grad_scaler: bool

    @property
    def enabled(self) -> bool:
        return self.autocast_dtype is not None


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 kernels natively on this CPU (AVX512-BF16 / AMX), not by fp32 emulation."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN
        return False


def resolve_precision(requested: str, device: torch.device, cpu_bf16: bool = False) -> Precision:
    """Map the configured precision onto what ``device`` supports (see the module docstring)."""
    if requested == "off":
        return Precision("off", None, False)
    if requested not in ("fp16", "bf16"):
        raise ValueError(f"unknown precision {requested!r}: use off, fp16 or bf16")
    if device.type != "cuda":
        if requested == "bf16" and device.type == "cpu" and cpu_bf16:
            if not cpu_has_native_bf16():
                log.warning(
                    "precision bf16 with cpu_bf16 on a CPU without native bf16 (no AVX512-BF16/AMX): oneDNN "
                    "emulates it, expect a step several times slower than in fp32"
                )
            return Precision("bf16", torch.bfloat16, False)
        hint = " (set cpu_bf16: true for bf16 autocast on a CPU)" if requested == "bf16" else ""
        log.warning(
            "precision %s requested but training runs on %s: mixed precision is GPU-only%s, falling back to fp32",
            requested,
            device.type,
            hint,
        )
        return Precision("off", None, False)
    if requested == "bf16":
        if not torch.cuda.is_bf16_supported():
            raise ValueError(f"precision bf16 requested but {torch.cuda.get_device_name(device)} lacks bf16; use fp16")
        return Precision("bf16", torch.bfloat16, False)
    return Precision("fp16", torch.float16, True)


__all__ = ["Precision", "cpu_has_native_bf16", "resolve_precision"]
