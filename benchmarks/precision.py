"""Precision cells of ``dima bench latency``: which precisions each backend is measured at, the int8 model those
cells run, and each cell's accuracy cost against fp32 next to its latency.

    dima bench latency --configs dima_cpu_fast --backends torch onnxruntime --precisions fp32 bf16 int8 \\
        --accuracy-data data/synth_drive --accuracy-index data/synth_drive_index_fast.pkl --checkpoint runs/x/latest

- ``--precisions`` (default ``auto``: torch fp32, onnxruntime fp32, tensorrt fp16, what the table always had): a
  backend is measured at each requested precision it has (:func:`dima_core.export.precision.backend_precisions`);
  a requested precision no requested backend has is an error, not an empty table.
- int8 cells run the fp32 export quantised by :func:`dima_core.export.quantize.quantize_onnx`, calibrated on
  ``--calibration-frames`` frames of the ``train`` split of ``--accuracy-data`` (so int8 needs that option).
- Accuracy: with ``--accuracy-data`` every vision cell also plans ``--accuracy-frames`` frames of the ``val``
  split, and the row gets :class:`~dima_core.export.accuracy.AccuracyCost` against torch fp32 on the CPU (the
  weights' own function): max trajectory difference and open-loop L2 change. fp32 ONNX rows show the export's
  parity (~1e-6 m); the other rows the cost of their precision. ``--checkpoint`` measures trained weights instead
  of seeded random ones (latency does not depend on the weights; the L2 only means something with trained ones).
"""

from __future__ import annotations

import argparse
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dima_core.export.precision import AUTO, PRECISIONS, backend_precisions, resolve_precision

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precisions",
        nargs="+",
        default=[AUTO],
        choices=(AUTO, *PRECISIONS),
        metavar="P",
        help="precisions per backend where it has them: torch fp32/bf16 (fp16 on cuda), onnxruntime "
        "fp32/int8, tensorrt fp16/fp32; auto (default) = torch fp32, onnxruntime fp32, tensorrt fp16",
    )
    p.add_argument(
        "--checkpoint",
        default=None,
        help="trained weights (checkpoint file or run directory) instead of --configs' random weights; "
        "its model config is the one measured",
    )
    p.add_argument(
        "--accuracy-data",
        default=None,
        metavar="DATAROOT",
        help="dataset (the synthetic world) for the accuracy columns (val split) and int8 calibration "
        "(train split); without it rows have no accuracy cost and int8 is not measured",
    )
    p.add_argument("--accuracy-index", default=None, metavar="PKL", help="a cached `dima data index` of that dataset")
    p.add_argument("--accuracy-frames", type=int, default=16, help="val frames of the accuracy columns (default 16)")
    p.add_argument("--calibration-frames", type=int, default=32, help="train frames calibrating int8 (default 32)")


def cell_precisions(backend: str, requested: Sequence[str], device: str) -> list[str]:
    """The precisions ``backend`` is measured at on ``device``: ``requested`` it has, ``auto`` as its default."""
    have = backend_precisions(backend, device)
    out: list[str] = []
    for precision in requested:
        resolved = resolve_precision(backend, precision)
        if resolved in have and resolved not in out:
            out.append(resolved)
    return out


def check_requested(backends: Sequence[str], requested: Sequence[str], device: str) -> None:
    """Raise ValueError for a requested precision none of ``backends`` has (it would silently measure nothing)."""
    for precision in requested:
        if precision != AUTO and not any(
            precision in backend_precisions(b, "cuda" if b == "tensorrt" else device) for b in backends
        ):
            raise ValueError(
                f"--precisions {precision}: none of the backends {list(backends)} has it on "
                f"{device} (torch: {list(backend_precisions('torch', device))}, onnxruntime: "
                f"{list(backend_precisions('onnxruntime', device))}, tensorrt: fp16, fp32)"
            )


@dataclass
class AccuracyData:
    """Frames of one model config: held-out ``frames`` (val) with the torch fp32 ``reference`` plans, and the
    ``calibration`` frames (train) of its int8 cells."""

    frames: list[Any]
    reference: list[dict[str, Any]]
    calibration: list[Any]
    description: str


def load_accuracy_data(args: argparse.Namespace, weights: Mapping[str, Any], model_config: Any) -> AccuracyData | None:
    """The config's frames and fp32 reference (None without ``--accuracy-data``). ``weights`` are the torch
    backend options of the cell's weights (``checkpoint``, or ``model_config`` + ``seed``)."""
    if not args.accuracy_data:
        return None
    from dima_core.export.accuracy import predict
    from dima_core.export.backends import create_backend
    from dima_core.export.dataset_frames import FrameSource, load_frames, training_data_config

    data_config = training_data_config(weights["checkpoint"]) if weights.get("checkpoint") else None
    held_out = load_frames(
        model_config,
        FrameSource(args.accuracy_data, "val", index_path=args.accuracy_index),
        args.accuracy_frames,
        data_config,
    )
    calibration = load_frames(
        model_config,
        FrameSource(args.accuracy_data, "train", index_path=args.accuracy_index),
        args.calibration_frames,
        data_config,
    )
    reference_backend = create_backend(backend="torch", device="cpu", threads=args.threads, warmup_iters=0, **weights)
    reference = predict(reference_backend.infer, reference_backend.input_specs, held_out)
    return AccuracyData(
        held_out,
        reference,
        calibration,
        f"{len(held_out)} val frames of {args.accuracy_data} against torch fp32 on the cpu",
    )


def int8_model(fp32_onnx: Path, out_dir: Path, data: AccuracyData | None) -> Path:
    """The int8 quantisation of ``fp32_onnx`` (calibrated on ``data``'s train frames, gated on its val frames)."""
    from dima_core.export.errors import BackendUnavailableError
    from dima_core.export.quantize import quantize_onnx

    if data is None:
        raise BackendUnavailableError(
            "int8 needs calibration frames: give --accuracy-data DATAROOT (the synthetic "
            "world) so the model can be quantised"
        )
    return quantize_onnx(fp32_onnx, out_dir, data.calibration, data.frames).onnx_path


def accuracy_of(backend: Any, data: AccuracyData | None) -> Any | None:
    """:class:`AccuracyCost` of ``backend``'s plans on ``data`` (None without data)."""
    if data is None:
        return None
    from dima_core.export.accuracy import accuracy_cost, predict

    return accuracy_cost(data.reference, predict(backend.infer, backend.input_specs, data.frames), data.frames)


def accuracy_cells(cost: Any | None) -> tuple[str, str]:
    """The table's two accuracy cells: max trajectory difference and open-loop L2 change, metres."""
    if cost is None:
        return "-", "-"
    change = "-" if cost.l2_change_m is None else f"{cost.l2_change_m:+.4f}"
    return f"{cost.max_trajectory_diff_m:.4f}", change


__all__ = [
    "AccuracyData",
    "accuracy_cells",
    "accuracy_of",
    "add_arguments",
    "cell_precisions",
    "check_requested",
    "int8_model",
    "load_accuracy_data",
]
