"""Export the vision-only planner to ONNX (fixed batch-1 shapes), check it, measure parity, write the sidecar.

Pipeline of :func:`export_onnx`:

1. trace :class:`~dima_core.models.vision_planner.ExportablePlanner` with ``torch.onnx.export`` (TorchScript
   exporter, ``dynamo=False``: the model is written to export cleanly with it and the test suite pins that path),
   keeping only the requested outputs so unused BEAM heads cost nothing at runtime;
2. ``onnx.checker`` and a comparison of the graph's inputs/outputs with :mod:`dima_core.export.io_spec`;
3. run the file with onnxruntime (CPU) on seeded random inputs and on real inputs when given, and record the
   maximum absolute error of every output against PyTorch (fp32, CPU) in the sidecar;
4. write the ONNX file and its sidecar atomically (the sidecar last, so a model is only "exported" when both exist).

The graph is always fp32: TensorRT 10 lowers it to fp16 at build time (``--precision fp16``). No fp16 ONNX is
produced: onnxconverter-common's float16 pass yields a graph that onnxruntime rejects for this model (a ``Cast``
left at float32 in the BEV encoder), so it could not be parity-checked; see docs/export.md.
"""

from __future__ import annotations

import logging
import os
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import dima_core
from dima_core.export.io_spec import (
    TRAJECTORY_OUTPUTS,
    TensorSpec,
    example_inputs,
    planner_input_specs,
    planner_output_names,
    validate_inputs,
)
from dima_core.export.planner_loading import LoadedPlanner, model_config_dict
from dima_core.export.planner_module import DeploymentPlanner, positional_args
from dima_core.export.sidecar import ModelSidecar, file_sha256, sidecar_path

log = logging.getLogger(__name__)

DEFAULT_OPSET = 17  # GridSample needs >= 16; 17 is what TensorRT 10/11 and onnxruntime all parse well
PARITY_SEEDS: tuple[int, ...] = (0, 1)
# Fail the export when the trajectory differs from PyTorch by more than this (metres); fp32 graphs agree to ~1e-6 m.
DEFAULT_PARITY_TOLERANCE = 1e-3


class ExportError(RuntimeError):
    """The exported graph is invalid, has an unexpected interface, or disagrees with PyTorch beyond tolerance."""


@dataclass
class ExportResult:
    onnx_path: Path
    sidecar_path: Path
    sidecar: ModelSidecar
    seconds: float


def _graph_specs(values: Any) -> tuple[TensorSpec, ...]:
    """TensorSpecs of ONNX graph inputs/outputs (value_info protos with fixed dims)."""
    import onnx

    specs = []
    for v in values:
        t = v.type.tensor_type
        dims = tuple(int(d.dim_value) if d.HasField("dim_value") else -1 for d in t.shape.dim)
        specs.append(TensorSpec(v.name, dims, np.dtype(onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)).name))
    return tuple(specs)


def _ort_session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # parity, not speed: do not fight other jobs for the cores
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def measure_parity(
    model: nn.Module,
    input_specs: tuple[TensorSpec, ...],
    output_names: tuple[str, ...],
    onnx_path: Path,
    input_sets: Mapping[str, Mapping[str, np.ndarray]],
) -> dict[str, Any]:
    """Max abs error per output between PyTorch (``model`` on CPU, fp32) and onnxruntime, per named input set."""
    session = _ort_session(onnx_path)
    report: dict[str, Any] = {"reference": f"torch {torch.__version__} fp32 CPU vs onnxruntime CPU"}
    for set_name, inputs in input_sets.items():
        feeds = validate_inputs(inputs, input_specs, f"parity inputs '{set_name}'")
        with torch.no_grad():
            expected = [t.numpy() for t in model(*positional_args(feeds)[1])]
        got = session.run(list(output_names), feeds)
        report[set_name] = {
            name: float(np.abs(g.astype(np.float64) - e.astype(np.float64)).max())
            for name, g, e in zip(output_names, got, expected, strict=True)
        }
    return report


def export_onnx(
    loaded: LoadedPlanner,
    out_dir: str | os.PathLike[str],
    opset: int = DEFAULT_OPSET,
    with_beam: bool = False,
    real_inputs: Mapping[str, np.ndarray] | None = None,
    name: str | None = None,
    parity_tolerance: float | None = None,
) -> ExportResult:
    """Export ``loaded`` to ``out_dir/<name>.onnx`` (+ ``.onnx.json``); see the module docstring."""
    import onnx

    t0 = time.perf_counter()
    config = loaded.config
    input_specs = planner_input_specs(config)
    output_names = planner_output_names(config, with_beam)
    wrapper = DeploymentPlanner(loaded.model.cpu().eval(), output_names).eval()

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = name or config.name
    final = out_dir / f"{stem}.onnx"
    # Written under a temporary name and renamed: a killed export never leaves a truncated model at `final`.
    tmp = out_dir / f".{final.name}.tmp-{os.getpid()}"
    trace_inputs = example_inputs(config, input_specs, seed=0)
    try:
        arg_names, args = positional_args(trace_inputs)
        with torch.no_grad(), warnings.catch_warnings():
            # The model builds small constant tensors from Python floats; the tracer warns about each one, harmlessly
            # (shapes are fixed by design). Keep the log readable.
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                wrapper,
                args,
                str(tmp),
                input_names=list(arg_names),
                output_names=list(output_names),
                opset_version=opset,
                dynamo=False,
            )
        onnx.checker.check_model(str(tmp))
        graph = onnx.load(str(tmp), load_external_data=False).graph
        graph_inputs, graph_outputs = _graph_specs(graph.input), _graph_specs(graph.output)
        if graph_inputs != input_specs:
            raise ExportError(
                f"exported graph inputs {[s.to_dict() for s in graph_inputs]} differ from the planner "
                f"interface {[s.to_dict() for s in input_specs]}"
            )
        if tuple(s.name for s in graph_outputs) != output_names or any(d < 0 for s in graph_outputs for d in s.shape):
            raise ExportError(
                f"exported graph outputs {[s.to_dict() for s in graph_outputs]} are not the fixed-shape "
                f"outputs {list(output_names)}"
            )

        input_sets: dict[str, Mapping[str, np.ndarray]] = {
            f"random_seed{seed}": example_inputs(config, input_specs, seed=seed) for seed in PARITY_SEEDS
        }
        if real_inputs is not None:
            # A recorded frame may carry inputs this model does not read (ego_status without use_ego_status).
            input_sets["real"] = {k: v for k, v in real_inputs.items() if k in {s.name for s in input_specs}}
        parity = measure_parity(wrapper, input_specs, output_names, tmp, input_sets)
        tolerance = DEFAULT_PARITY_TOLERANCE if parity_tolerance is None else parity_tolerance
        worst = {n: max(parity[k][n] for k in input_sets) for n in output_names}
        parity["max_abs_error"] = worst
        parity["trajectory_tolerance"] = tolerance
        bad = {n: e for n, e in worst.items() if n in TRAJECTORY_OUTPUTS and not e <= tolerance}  # NaN fails too
        parity["passed"] = not bad
        if bad:
            raise ExportError(f"ONNX output differs from PyTorch beyond {tolerance} m: {bad} (full report {parity})")
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())  # the bytes reach the disk before the rename makes them "the model"
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)

    import onnxruntime

    sidecar = ModelSidecar(
        onnx_file=final.name,
        onnx_sha256=file_sha256(final),
        opset=opset,
        precision="fp32",
        with_beam=with_beam,
        model_name=config.name,
        model_config=model_config_dict(config),
        inputs=input_specs,
        outputs=graph_outputs,
        dima_version=dima_core.__version__,
        parity=parity,
        source=loaded.source,
        extra={
            "torch_version": str(torch.__version__),
            "onnx_version": onnx.__version__,
            "onnxruntime_version": onnxruntime.__version__,
            "exported_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    sidecar.write(final)
    seconds = time.perf_counter() - t0
    log.info(
        "exported %s (opset %d) in %.1f s; max abs error vs torch: %s",
        final,
        opset,
        seconds,
        {k: f"{v:.2e}" for k, v in parity["max_abs_error"].items()},
    )
    return ExportResult(final, sidecar_path(final), sidecar, seconds)


def load_real_inputs(path: str | os.PathLike[str]) -> dict[str, np.ndarray]:
    """Real inputs for the parity check: an ``.npz`` with one batch-1 array per input name."""
    with np.load(path) as data:
        return {k: np.asarray(data[k]) for k in data.files}


__all__ = ["DEFAULT_OPSET", "ExportError", "ExportResult", "export_onnx", "load_real_inputs", "measure_parity"]
