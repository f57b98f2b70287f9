"""Numeric precision of a planner backend: the one vocabulary shared by ``dima export``, the runtime backends, the
ROS node's ``model.precision`` and ``dima bench latency``.

=============  ==========================================================  ===========================================
backend        precisions                                                   what the precision is
=============  ==========================================================  ===========================================
torch          fp32; bf16 (cpu, cuda); fp16 (cuda)                          ``torch.autocast`` dtype of the forward
onnxruntime    fp32; int8                                                   the graph in the file (``dima export``
                                                                            ``--precision``), recorded in its sidecar
tensorrt       fp16; fp32                                                   the engine built from an fp32 graph
=============  ==========================================================  ===========================================

``auto`` (the default everywhere) is fp32 for torch, the file's own precision for onnxruntime (the sidecar says
what the graph is) and fp16 for tensorrt, i.e. what each backend did before precisions existed. An explicit
precision is a requirement: onnxruntime refuses a model file of another precision (an int8 file where fp32 was
configured, or the reverse) with :class:`PrecisionError`, and a backend that has no such precision is refused at
configuration time, never run at a different one.

Not offered, by measurement (docs/export.md): an fp16 or bf16 ONNX graph on onnxruntime's CPU provider (it has
almost no half-precision CPU kernels: the converted ``dima_cpu_fast`` graph runs ~1.5x slower than fp32), and fp16
autocast on a CPU (no fast fp16 CPU kernels in torch either).
"""

from __future__ import annotations

from typing import Literal

PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "bf16", "int8")
PrecisionName = Literal["auto", "fp32", "fp16", "bf16", "int8"]
AUTO = "auto"

# What each backend can run, on which devices (None: every device the backend supports).
_SUPPORT: dict[str, dict[str, tuple[str, ...] | None]] = {
    "torch": {"fp32": None, "bf16": None, "fp16": ("cuda",)},
    "onnxruntime": {"fp32": None, "int8": ("cpu",)},
    "tensorrt": {"fp16": None, "fp32": None},
}
# The precisions an ONNX graph (and so a sidecar) can have; fp16 graphs are read for TensorRT >= 11 only.
ONNX_PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")
# What `dima export --format onnx --precision` writes.
EXPORT_PRECISIONS: tuple[str, ...] = ("fp32", "int8")


class PrecisionError(ValueError):
    """A precision a backend cannot run, or a model file whose precision is not the one configured."""


def backend_precisions(backend: str, device: str | None = None) -> tuple[str, ...]:
    """The precisions ``backend`` runs on ``device`` (every device when None), in :data:`PRECISIONS` order."""
    if backend not in _SUPPORT:
        raise PrecisionError(f"unknown backend {backend!r}; choose one of {sorted(_SUPPORT)}")
    support = _SUPPORT[backend]
    return tuple(
        p for p in PRECISIONS if p in support and (device is None or support[p] is None or device in support[p])
    )  # type: ignore[operator]


def check_precision(backend: str, precision: str, device: str) -> None:
    """Raise :class:`PrecisionError` unless ``backend`` runs ``precision`` (or ``auto``) on ``device``."""
    if precision == AUTO:
        return
    if precision not in PRECISIONS:
        raise PrecisionError(f"unknown precision {precision!r}; choose one of {[AUTO, *PRECISIONS]}")
    allowed = backend_precisions(backend, device)
    if precision in allowed:
        return
    hint = {
        ("torch", "fp16"): "fp16 autocast needs cuda (CPUs have no fast fp16 kernels); use bf16 or fp32 on the cpu",
        ("torch", "int8"): "int8 runs on onnxruntime: dima export --format onnx --precision int8",
        ("onnxruntime", "bf16"): "onnxruntime's CPU provider has almost no bf16/fp16 kernels (an fp16 graph measured "
        "~1.5x slower than fp32); use torch with bf16, or onnxruntime int8",
        ("onnxruntime", "fp16"): "onnxruntime's CPU provider has almost no bf16/fp16 kernels (an fp16 graph measured "
        "~1.5x slower than fp32); fp16 belongs to the tensorrt backend",
        ("onnxruntime", "int8"): "the int8 (QDQ) graph is calibrated and checked for onnxruntime's CPU provider",
        ("tensorrt", "int8"): "int8 runs on onnxruntime (cpu); TensorRT engines are built fp16 or fp32 from an fp32 "
        "graph",
        ("tensorrt", "bf16"): "TensorRT engines are built fp16 or fp32",
    }.get((backend, precision), "")
    raise PrecisionError(
        f"the {backend} backend on {device} has no precision {precision!r} (it runs "
        f"{list(allowed)}){': ' + hint if hint else ''}"
    )


def resolve_precision(backend: str, precision: str, model_precision: str | None = None) -> str:
    """The precision that runs: ``precision`` itself, or for ``auto`` the backend's default (torch fp32, tensorrt
    fp16, onnxruntime ``model_precision``: the sidecar's; fp32 when not known yet)."""
    if precision != AUTO:
        return precision
    if backend == "onnxruntime":
        return model_precision or "fp32"
    return "fp16" if backend == "tensorrt" else "fp32"


def check_model_precision(configured: str, model_precision: str, model: str) -> None:
    """Raise :class:`PrecisionError` when a model file is not of the configured precision (``auto`` takes any)."""
    if configured == AUTO or configured == model_precision:
        return
    how = (
        ("re-export it with dima export --format onnx --precision " + configured)
        if configured in EXPORT_PRECISIONS
        else "export a model of that precision"
    )
    raise PrecisionError(
        f"{model} is a {model_precision} model (its sidecar records precision {model_precision!r}), but precision "
        f"{configured!r} was configured: set the precision to {model_precision} (ROS parameter model.precision, "
        f"BackendConfig.precision) or 'auto' to run this file, or {how}"
    )


__all__ = [
    "AUTO",
    "EXPORT_PRECISIONS",
    "ONNX_PRECISIONS",
    "PRECISIONS",
    "PrecisionError",
    "PrecisionName",
    "backend_precisions",
    "check_model_precision",
    "check_precision",
    "resolve_precision",
]
