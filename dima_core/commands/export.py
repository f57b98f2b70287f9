"""``dima export``: the vision-only planner to ONNX (with a parity-checked sidecar), and ONNX to a TensorRT engine.

    dima export --format onnx --checkpoint runs/tiny --out models/           # trained weights (run dir or file)
    dima export --format onnx --model-config config/model/dima_tiny.yaml --out models/   # random weights
    dima export --format onnx --precision int8 --checkpoint runs/planner_drive --out models/   # quantised, CPU
    dima export --format onnx --precision int8 --onnx models/dima_cpu_fast.onnx --calibration-data data/synth_drive \
        --out models/                                                     # quantise an existing fp32 export
    dima export --format tensorrt --onnx models/dima_tiny.onnx --precision fp16 --build-only   # prebuild engine

ONNX: fixed batch-1 shapes, opset 17 by default; ``--with-beam`` adds the BEAM tokens (and the ego feature and BEV
map) as outputs. The export fails when the trajectory differs from PyTorch by more than ``--parity-tolerance``
metres on seeded random inputs (and ``--real-inputs`` when given); every output's max abs error is printed and
stored in ``<model>.onnx.json``.

``--precision int8`` (onnx): the fp32 export (parity-checked as above, or ``--onnx`` FILE) quantised by onnxruntime
(static, QDQ, per-channel int8 weights), its activation ranges calibrated on ``--calibration-frames`` frames of the
``--calibration-split`` of ``--calibration-data`` (default: the checkpoint's training data). It fails when a
waypoint moves by more than ``--parity-tolerance`` (default 0.1 m) from the fp32 graph on ``--held-out-frames``
frames of ``--held-out-split``; the sidecar records ``precision: int8``, how it was calibrated, the trajectory
difference and the open-loop L2 change, and runtimes configured for another precision refuse the file. Written as
``<name>_int8.onnx`` unless ``--name`` is given. bf16 needs no export: the torch backend runs it (autocast).

TensorRT: the engine goes to the cache (``--engine-dir``, default ``$DIMA_ENGINE_CACHE`` or ``~/.cache/dima/engines``)
under a name that encodes TensorRT version, GPU, precision, typing mode, shapes and the ONNX hash; an existing
matching engine is reused, anything else is rebuilt. Without ``--build-only`` the engine is also loaded, warmed up
and timed. See docs/export.md.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from dima_core.export.precision import EXPORT_PRECISIONS, PRECISIONS

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export the planner to ONNX (+ parity sidecar) or build a cached TensorRT engine",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--format", required=True, choices=("onnx", "tensorrt"), help="what to produce")
    onnx = parser.add_argument_group("--format onnx")
    source = onnx.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="training checkpoint file or run directory (its model config is used)")
    source.add_argument("--model-config", help="model YAML: random weights (benchmarks, tests; never for driving)")
    onnx.add_argument("--out", help="output directory of <name>.onnx and <name>.onnx.json")
    onnx.add_argument("--name", help="file stem (default: the model config's name)")
    onnx.add_argument("--with-beam", action="store_true", help="also output the BEAM tokens, ego feature, BEV map")
    onnx.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17; GridSample needs >= 16)")
    onnx.add_argument("--real-inputs", metavar="NPZ", help="real batch-1 inputs (one array per input name) for parity")
    onnx.add_argument(
        "--parity-tolerance",
        type=float,
        default=None,
        help="max trajectory abs error vs PyTorch in metres (default 1e-3)",
    )
    onnx.add_argument("--seed", type=int, default=0, help="seed of the random weights with --model-config")
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default=None,
        help="onnx: fp32 (default) or int8 (quantised for onnxruntime's CPU provider); tensorrt: "
        "engine precision fp16 (default) or fp32",
    )
    int8 = parser.add_argument_group("--format onnx --precision int8")
    int8.add_argument(
        "--calibration-data",
        metavar="DATAROOT",
        help="dataset of the calibration and held-out frames (default: the checkpoint's training data)",
    )
    int8.add_argument("--calibration-version", help="its table version (default: the dataset's only v1.0-* folder)")
    int8.add_argument(
        "--calibration-index",
        metavar="PKL",
        help="a cached `dima data index` of that dataset (faster than reading its tables)",
    )
    int8.add_argument("--calibration-split", default="train", help="split the calibration frames come from (train)")
    int8.add_argument("--calibration-frames", type=int, default=32, help="calibration frames (default 32)")
    int8.add_argument("--held-out-split", default="val", help="split of the accuracy gate's frames (default val)")
    int8.add_argument("--held-out-frames", type=int, default=8, help="frames of the accuracy gate (default 8)")
    int8.add_argument(
        "--calibration-method",
        choices=("minmax", "percentile", "entropy"),
        default="minmax",
        help="how activation ranges are taken from the calibration frames (default minmax)",
    )
    int8.add_argument(
        "--int8-reduce-range",
        action="store_true",
        help="7-bit weights (onnxruntime's advice for x86 CPUs without VNNI, where int8 products can saturate)",
    )
    int8.add_argument(
        "--int8-op-types",
        nargs="+",
        default=None,
        metavar="OP",
        help="ONNX op types to quantise (default Conv: the backbone; 'all' = every type onnxruntime "
        "quantises, which costs metres of trajectory on the shipped planner)",
    )
    trt = parser.add_argument_group("--format tensorrt")
    trt.add_argument(
        "--onnx",
        help="exported ONNX model (its .onnx.json sidecar must be next to it); with --format "
        "onnx --precision int8: the fp32 export to quantise",
    )
    trt.add_argument(
        "--engine-dir", help="engine cache directory (default $DIMA_ENGINE_CACHE or ~/.cache/dima/engines)"
    )
    trt.add_argument("--build-only", action="store_true", help="build (or find) the engine and exit")
    trt.add_argument("--workspace-gib", type=float, default=4.0, help="TensorRT builder workspace limit (GiB)")
    parser.set_defaults(func=run)
    return parser


def _check_precision(args: argparse.Namespace) -> str:
    """The precision to export; a value the format cannot produce is an error saying what to use instead."""
    if args.format == "tensorrt":
        precision = args.precision or "fp16"
        if precision not in ("fp16", "fp32"):
            raise ValueError(
                f"--format tensorrt builds fp16 or fp32 engines, not {precision}"
                + (" (int8 runs on onnxruntime: --format onnx --precision int8)" if precision == "int8" else "")
            )
        return precision
    precision = args.precision or "fp32"
    if precision not in EXPORT_PRECISIONS:
        raise ValueError(
            f"--format onnx --precision {precision}: ONNX models are exported {' or '.join(EXPORT_PRECISIONS)}"
            + {
                "bf16": "; bf16 needs no export: the torch backend runs it (precision bf16, autocast). "
                "onnxruntime's CPU provider has almost no bf16 kernels",
                "fp16": "; fp16 engines come from the fp32 export (--format tensorrt --precision fp16). "
                "onnxruntime's CPU provider runs an fp16 graph ~1.5x slower than fp32",
            }[precision]
        )
    if precision == "fp32" and args.onnx:
        raise ValueError(
            "--onnx is the fp32 export to quantise (--precision int8) or to build an engine from "
            "(--format tensorrt); an fp32 ONNX export starts from --checkpoint or --model-config"
        )
    return precision


def _print_export(result: Any) -> None:
    sidecar = result.sidecar
    print(f"ONNX model: {result.onnx_path} (opset {sidecar.opset}, sha256 {sidecar.onnx_sha256[:16]}...)")
    print(f"sidecar:    {result.sidecar_path}")
    print("inputs:     " + ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in sidecar.inputs))
    print("outputs:    " + ", ".join(f"{s.name}{list(s.shape)}" for s in sidecar.outputs))
    if sidecar.precision == "int8":
        print("int8 vs the fp32 graph (max abs error on the held-out frames):")
    else:
        sets = [k for k, v in sidecar.parity.items() if isinstance(v, dict) and k != "max_abs_error"]
        print(f"parity vs PyTorch (max abs error; input sets: {', '.join(sets)}):")
    for name, err in sidecar.parity["max_abs_error"].items():
        print(f"  {name:<20s} {err:.3e}")
    print(f"exported in {result.seconds:.1f} s")


def _export_onnx(args: argparse.Namespace) -> int:
    from dima_core.export.onnx_export import export_onnx, load_real_inputs
    from dima_core.export.planner_loading import load_planner

    precision = _check_precision(args)
    if not args.out:
        raise ValueError("--format onnx needs --out DIR")
    if precision == "int8":
        return _export_int8(args)
    if not (args.checkpoint or args.model_config):
        raise ValueError("--format onnx needs --checkpoint (trained weights) or --model-config (random weights)")
    loaded = load_planner(args.checkpoint, args.model_config, seed=args.seed)
    real = load_real_inputs(args.real_inputs) if args.real_inputs else None
    result = export_onnx(
        loaded,
        args.out,
        opset=args.opset,
        with_beam=args.with_beam,
        real_inputs=real,
        name=args.name,
        parity_tolerance=args.parity_tolerance,
    )
    _print_export(result)
    return 0


def _export_int8(args: argparse.Namespace) -> int:
    """fp32 export (or ``--onnx``), calibration and held-out frames, :func:`quantize_onnx`."""
    import tempfile
    from pathlib import Path

    from dima_core.config import config_from_dict
    from dima_core.data.config import DataConfig
    from dima_core.export.dataset_frames import FrameSource, load_frames, training_data_config
    from dima_core.export.onnx_export import export_onnx, load_real_inputs
    from dima_core.export.planner_loading import load_planner
    from dima_core.export.quantize import QuantizationConfig, quantize_onnx
    from dima_core.export.sidecar import load_sidecar
    from dima_core.models.config import ModelConfig

    sources = [
        flag
        for flag, value in (
            ("--onnx", args.onnx),
            ("--checkpoint", args.checkpoint),
            ("--model-config", args.model_config),
        )
        if value
    ]
    if len(sources) != 1:
        raise ValueError(
            "--precision int8 needs exactly one of --onnx (an fp32 export to quantise), --checkpoint or "
            f"--model-config (exported to fp32 first); got {sources or 'none'}"
        )
    qconfig = config_from_dict(
        {
            "calibration_frames": args.calibration_frames,
            "held_out_frames": args.held_out_frames,
            "calibration_method": args.calibration_method,
            "reduce_range": args.int8_reduce_range,
            **(
                {}
                if args.int8_op_types is None
                else {"op_types": [] if args.int8_op_types == ["all"] else list(args.int8_op_types)}
            ),
            **({"tolerance_m": args.parity_tolerance} if args.parity_tolerance is not None else {}),
        },
        QuantizationConfig,
        source="dima export --precision int8",
    )
    data_config: DataConfig | None = None
    dataroot = args.calibration_data
    if args.checkpoint:
        from dima_core.training.stage1 import resolve_repo_path

        data_config = training_data_config(args.checkpoint)
        dataroot = dataroot or str(resolve_repo_path(data_config.dataroot))
    if not dataroot:
        raise ValueError(
            "--precision int8 needs --calibration-data DATAROOT (the synthetic world, e.g. "
            "data/synth_drive) unless --checkpoint gives its training data"
        )
    version = args.calibration_version or (
        data_config.version if data_config is not None and not args.calibration_data else None
    )
    calibration_source = FrameSource(dataroot, args.calibration_split, version, args.calibration_index)
    held_out_source = FrameSource(dataroot, args.held_out_split, version, args.calibration_index)
    with tempfile.TemporaryDirectory(prefix="dima-export-int8-") as tmp:
        if args.onnx:
            fp32_path = Path(args.onnx)
            sidecar = load_sidecar(fp32_path)
            model_config = config_from_dict(sidecar.model_config, ModelConfig, source=f"{fp32_path}.json")
            stem = fp32_path.stem
        else:
            loaded = load_planner(args.checkpoint, args.model_config, seed=args.seed)
            real = load_real_inputs(args.real_inputs) if args.real_inputs else None
            fp32 = export_onnx(loaded, tmp, opset=args.opset, with_beam=args.with_beam, real_inputs=real)
            print(
                f"fp32 export (parity vs PyTorch {max(fp32.sidecar.parity['max_abs_error'].values()):.1e}) in "
                f"{fp32.seconds:.1f} s"
            )
            fp32_path, model_config, stem = fp32.onnx_path, loaded.config, loaded.config.name
        calibration = load_frames(model_config, calibration_source, qconfig.calibration_frames, data_config)
        held_out = load_frames(model_config, held_out_source, qconfig.held_out_frames, data_config)
        data = {
            "dataroot": str(Path(dataroot).resolve()),
            "version": calibration_source.resolved_version(),
            "calibration_split": args.calibration_split,
            "held_out_split": args.held_out_split,
            "index": args.calibration_index,
        }
        result = quantize_onnx(
            fp32_path, args.out, calibration, held_out, qconfig, name=args.name or f"{stem}_int8", data=data
        )
    cost = result.sidecar.parity["held_out"]
    _print_export(result)
    print(
        f"int8 vs fp32 on {cost['frames']} held-out frames ({args.held_out_split}): max trajectory diff "
        f"{cost['max_trajectory_diff_m']:.4f} m (tolerance {qconfig.tolerance_m} m), open-loop L2 change "
        + ("-" if cost["l2_change_m"] is None else f"{cost['l2_change_m']:+.4f} m")
        + f"; calibrated on "
        f"{len(calibration)} {args.calibration_split} frames of {dataroot}"
    )
    return 0


def _export_tensorrt(args: argparse.Namespace) -> int:
    from dima_core.export.tensorrt_engine import ensure_engine

    if not args.onnx:
        raise ValueError("--format tensorrt needs --onnx FILE (from dima export --format onnx)")
    precision = _check_precision(args)
    if args.build_only:
        artifact = ensure_engine(args.onnx, precision, args.engine_dir, args.workspace_gib)
        print(f"TensorRT engine ({artifact.decision.action}: {artifact.decision.reason}): {artifact.path}")
        return 0
    from dima_core.export.backends import create_backend

    backend = create_backend(
        backend="tensorrt",
        onnx=args.onnx,
        precision=precision,
        engine_dir=args.engine_dir,
        workspace_gib=args.workspace_gib,
        warmup_iters=5,
    )
    artifact = backend.artifact  # type: ignore[attr-defined]
    print(f"TensorRT engine ({artifact.decision.action}: {artifact.decision.reason}): {artifact.path}")
    print(f"loaded and warmed up: {backend.describe()}")
    return 0


def run(args: argparse.Namespace) -> int:
    from dima_core.export.errors import BackendUnavailableError, EngineBuildError
    from dima_core.export.onnx_export import ExportError
    from dima_core.export.sidecar import SidecarError
    from dima_core.io.checkpoint import CheckpointError

    try:
        return _export_onnx(args) if args.format == "onnx" else _export_tensorrt(args)
    except (BackendUnavailableError, EngineBuildError, ExportError, CheckpointError, SidecarError) as exc:
        print(f"dima export: error: {exc}", file=sys.stderr)
        return 2
