"""int8 ONNX planner: onnxruntime static quantisation of an fp32 export, calibrated on frames of the synthetic world.

Pipeline of :func:`quantize_onnx`:

1. read the fp32 export and its sidecar (hash and interface checked as at any load);
2. the calibration feeds: ``calibration`` frames (:mod:`dima_core.export.dataset_frames`, by default evenly spaced
   over the training split) run through the fp32 graph as the runtime runs them (temporal models: previous keyframe,
   then the frame with its BEV state), every feed kept;
3. ``onnxruntime.quantization.quant_pre_process`` (shape inference, graph clean-up), then ``quantize_static``: QDQ
   format, uint8 activations and int8 weights, per-channel weights (per output channel), the activation ranges
   from the calibration feeds (min/max by default); by default only the convolutions are quantised
   (:data:`DEFAULT_OP_TYPES`, the backbone: most of the time, and the attention/head matmuls cost accuracy);
4. ``onnx.checker`` and the interface of the fp32 export (same inputs, outputs and shapes);
5. the accuracy gate: the int8 graph against the fp32 graph on ``held_out`` frames (by default the val split, never
   the calibration frames): the export fails when a waypoint of ``trajectory`` moves by more than the tolerance;
   the trajectory difference and the open-loop L2 change are stored, next to the fp32 graph's own parity with
   PyTorch;
6. the int8 file and its sidecar (``precision: int8`` and a ``quantization`` entry saying how it was made and on
   which data), written atomically, the sidecar last.

``reduce_range`` (7-bit weights) is onnxruntime's advice for x86 CPUs without VNNI, whose int8 dot product
(``vpmaddubsw``) can saturate; it is recorded in the sidecar. Speed and accuracy of the choices on the shipped
planner are in docs/export.md.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

import dima_core
from dima_core.config import ranged
from dima_core.export.accuracy import AccuracyCost, accuracy_cost, predict
from dima_core.export.dataset_frames import PlannerFrame, run_frame
from dima_core.export.io_spec import TRAJECTORY_OUTPUTS, example_inputs
from dima_core.export.onnx_export import ExportError, ExportResult, _graph_specs
from dima_core.export.sidecar import ModelSidecar, file_sha256, load_sidecar, sidecar_path
from dima_core.models.config import ModelConfig

log = logging.getLogger(__name__)

# Fail an int8 export when a waypoint of the planned trajectory moves by more than this on the held-out frames
# (metres). Measured on the shipped planner (dima_cpu_fast, docs/export.md): ~1 mm with the default Conv-only
# quantisation; quantising the attention and head matmuls as well moves waypoints by 2-14 m, far beyond it.
DEFAULT_INT8_TOLERANCE_M = 0.1
RANDOM_SEEDS: tuple[int, ...] = (0, 1)
# Quantised op types by default: the convolutions (the backbone, ~60 % of the fp32 time). The Gemm/MatMul of the
# attention layers and heads are left fp32: quantising them cost metres of trajectory on the shipped planner.
DEFAULT_OP_TYPES: tuple[str, ...] = ("Conv",)


@dataclass
class QuantizationConfig:
    """How the int8 graph is made (``dima export --precision int8`` options)."""

    calibration_frames: int = ranged(32, lo=1, hi=100000, help="frames of the calibration split the ranges come from")
    held_out_frames: int = ranged(8, lo=1, hi=100000, help="frames of the held-out split the accuracy gate runs on")
    calibration_method: Literal["minmax", "percentile", "entropy"] = "minmax"
    per_channel: bool = True
    reduce_range: bool = False
    # ONNX op types to quantise; empty: every type onnxruntime's QDQ quantiser supports (not accurate enough here).
    op_types: list[str] = field(default_factory=lambda: list(DEFAULT_OP_TYPES))
    tolerance_m: float = ranged(
        DEFAULT_INT8_TOLERANCE_M,
        lo=0.0,
        hi=100.0,
        help="max waypoint distance from the fp32 graph on the held-out frames, metres",
    )

    def validate(self) -> None:
        if len(set(self.op_types)) != len(self.op_types):
            raise ValueError(f"op_types lists a type twice: {self.op_types}")


class _FeedReader:
    """onnxruntime's CalibrationDataReader protocol over prepared feeds (``get_next`` until None, ``rewind``)."""

    def __init__(self, feeds: Sequence[dict[str, np.ndarray]]) -> None:
        self._feeds = list(feeds)
        self._position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= len(self._feeds):
            return None
        self._position += 1
        return self._feeds[self._position - 1]

    def rewind(self) -> None:
        self._position = 0


def _session(path: Path) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1  # calibration inputs and the accuracy check, not speed: leave the cores alone
    opts.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _infer(session: Any, output_names: tuple[str, ...]):
    def infer(feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(output_names, session.run(list(output_names), feeds), strict=True))

    return infer


def _calibration_method(name: str) -> Any:
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "percentile": CalibrationMethod.Percentile,
        "entropy": CalibrationMethod.Entropy,
    }[name]


def _max_abs_errors(
    reference: Sequence[dict[str, np.ndarray]], candidate: Sequence[dict[str, np.ndarray]]
) -> dict[str, float]:
    return {
        name: max(float(np.abs(c[name] - r[name]).max()) for r, c in zip(reference, candidate, strict=True))
        for name in TRAJECTORY_OUTPUTS
    }


def quantize_onnx(
    fp32_onnx: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    calibration: Sequence[PlannerFrame],
    held_out: Sequence[PlannerFrame],
    config: QuantizationConfig | None = None,
    name: str | None = None,
    data: dict[str, Any] | None = None,
) -> ExportResult:
    """Write ``out_dir/<name>.onnx`` (default name: the fp32 file's stem + ``_int8``) and its sidecar.

    ``data`` describes where ``calibration`` and ``held_out`` came from (recorded in the sidecar). Raises
    :class:`~dima_core.export.onnx_export.ExportError` when the int8 graph is invalid or beyond the tolerance.
    """
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from dima_core.config import config_from_dict

    config = config if config is not None else QuantizationConfig()
    config.validate()
    if not calibration or not held_out:
        raise ExportError(
            f"int8 quantisation needs calibration and held-out frames (got {len(calibration)} and {len(held_out)})"
        )
    overlap = sorted({f.token for f in calibration} & {f.token for f in held_out})
    if overlap:
        raise ExportError(
            f"{len(overlap)} held-out frames are also calibration frames (e.g. {overlap[0]}): the "
            "accuracy gate must run on frames the ranges were not taken from; use another split"
        )
    t0 = time.perf_counter()
    fp32_path = Path(fp32_onnx)
    fp32 = load_sidecar(fp32_path)
    if fp32.precision != "fp32":
        raise ExportError(f"{fp32_path} is a {fp32.precision} model; int8 quantisation starts from an fp32 export")
    model_config = config_from_dict(fp32.model_config, ModelConfig, source=f"{sidecar_path(fp32_path)} (model_config)")
    specs, outputs = fp32.inputs, fp32.output_names
    fp32_session = _session(fp32_path)
    fp32_infer = _infer(fp32_session, outputs)
    feeds = [feed for frame in calibration for feed in run_frame(frame, specs, fp32_infer)[0]]

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{name or fp32_path.stem + '_int8'}.onnx"
    if final.resolve() == fp32_path.resolve():
        raise ExportError(f"the int8 model would overwrite its fp32 source {fp32_path}: give another name")
    tmp = out_dir / f".{final.name}.tmp-{os.getpid()}"
    pre = out_dir / f".{final.name}.pre-{os.getpid()}.onnx"
    try:
        quant_pre_process(str(fp32_path), str(pre), skip_symbolic_shape=True)
        quantize_static(
            str(pre),
            str(tmp),
            _FeedReader(feeds),
            quant_format=QuantFormat.QDQ,  # type: ignore[arg-type]
            op_types_to_quantize=list(config.op_types) or None,
            per_channel=config.per_channel,
            reduce_range=config.reduce_range,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=_calibration_method(config.calibration_method),
        )
        onnx.checker.check_model(str(tmp))
        graph = onnx.load(str(tmp), load_external_data=False).graph
        graph_inputs, graph_outputs = _graph_specs(graph.input), _graph_specs(graph.output)
        if graph_inputs != fp32.inputs or graph_outputs != fp32.outputs:
            raise ExportError(
                f"the int8 graph's interface {[s.to_dict() for s in graph_inputs + graph_outputs]} "
                f"differs from its fp32 source's {[s.to_dict() for s in fp32.inputs + fp32.outputs]}"
            )
        quantized_ops = sorted({n.op_type for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")})
        if not quantized_ops:
            raise ExportError(
                f"onnxruntime quantised nothing in {fp32_path.name} (op types {config.op_types or 'all'})"
            )

        int8_infer = _infer(_session(tmp), outputs)
        reference, candidate = predict(fp32_infer, specs, held_out), predict(int8_infer, specs, held_out)
        cost: AccuracyCost = accuracy_cost(reference, candidate, held_out)
        random_sets = [example_inputs(model_config, specs, seed=s) for s in RANDOM_SEEDS]
        random_errors = _max_abs_errors([fp32_infer(f) for f in random_sets], [int8_infer(f) for f in random_sets])
        parity: dict[str, Any] = {
            "reference": f"the fp32 export {fp32_path.name} (sha256 {fp32.onnx_sha256[:16]}...) on onnxruntime "
            f"{onnxruntime.__version__} CPU",
            "fp32_vs_torch_max_abs_error": fp32.parity.get("max_abs_error", {}),
            "held_out": cost.to_dict(),
            "max_abs_error": _max_abs_errors(reference, candidate),
            # Random images are far outside the calibrated ranges: informative only, not gated.
            "random_inputs_max_abs_error": random_errors,
            "trajectory_tolerance": config.tolerance_m,
            "gate": "max waypoint distance of `trajectory` from the fp32 graph on the held-out frames",
        }
        parity["passed"] = cost.max_trajectory_diff_m <= config.tolerance_m
        if not parity["passed"]:
            raise ExportError(
                f"the int8 graph's trajectory differs from fp32 by up to {cost.max_trajectory_diff_m:.3f} m "
                f"on the held-out frames, beyond the tolerance {config.tolerance_m} m ({cost.summary()}); "
                "calibrate on more frames, try --calibration-method percentile or --int8-reduce-range, "
                "or restrict --int8-op-types"
            )
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)
        pre.unlink(missing_ok=True)

    sidecar = ModelSidecar(
        onnx_file=final.name,
        onnx_sha256=file_sha256(final),
        opset=fp32.opset,
        precision="int8",
        with_beam=fp32.with_beam,
        model_name=fp32.model_name,
        model_config=fp32.model_config,
        inputs=fp32.inputs,
        outputs=fp32.outputs,
        dima_version=dima_core.__version__,
        parity=parity,
        source=fp32.source,
        quantization={
            "tool": f"onnxruntime.quantization.quantize_static (onnxruntime {onnxruntime.__version__})",
            "format": "QDQ",
            "activation_type": "uint8",
            "weight_type": "int8",
            "per_channel": config.per_channel,
            "reduce_range": config.reduce_range,
            "op_types": list(config.op_types) or "all supported",
            "calibration_method": config.calibration_method,
            "calibration_frames": len(calibration),
            "calibration_feeds": len(feeds),
            "calibration_tokens": [f.token for f in calibration],
            "held_out_tokens": [f.token for f in held_out],
            "data": data or {},
            "fp32_source": {"onnx_file": fp32_path.name, "onnx_sha256": fp32.onnx_sha256},
        },
        extra={
            "onnx_version": onnx.__version__,
            "onnxruntime_version": onnxruntime.__version__,
            "exported_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },
    )
    sidecar.write(final)
    seconds = time.perf_counter() - t0
    log.info("quantised %s -> %s in %.1f s; %s", fp32_path.name, final, seconds, cost.summary())
    return ExportResult(final, sidecar_path(final), sidecar, seconds)


__all__ = ["DEFAULT_INT8_TOLERANCE_M", "DEFAULT_OP_TYPES", "QuantizationConfig", "quantize_onnx"]
