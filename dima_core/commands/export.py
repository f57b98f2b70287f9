"""``dima export``: the vision-only planner to ONNX (with a parity-checked sidecar), and ONNX to a TensorRT engine.

    dima export --format onnx --checkpoint runs/tiny --out models/           # trained weights (run dir or file)
    dima export --format onnx --model-config config/model/dima_tiny.yaml --out models/   # random weights
    dima export --format tensorrt --onnx models/dima_tiny.onnx --precision fp16 --build-only   # prebuild engine

ONNX: fixed batch-1 shapes, opset 17 by default; ``--with-beam`` adds the BEAM tokens (and the ego feature and BEV
map) as outputs. The export fails when the trajectory differs from PyTorch by more than ``--parity-tolerance``
metres on seeded random inputs (and ``--real-inputs`` when given); every output's max abs error is printed and
stored in ``<model>.onnx.json``.

TensorRT: the engine goes to the cache (``--engine-dir``, default ``$DIMA_ENGINE_CACHE`` or ``~/.cache/dima/engines``)
under a name that encodes TensorRT version, GPU, precision, typing mode, shapes and the ONNX hash; an existing
matching engine is reused, anything else is rebuilt. Without ``--build-only`` the engine is also loaded, warmed up
and timed. See docs/export.md.
"""

from __future__ import annotations

import argparse
import logging
import sys

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
    onnx.add_argument("--parity-tolerance", type=float, default=None,
                      help="max trajectory abs error vs PyTorch in metres (default 1e-3)")
    onnx.add_argument("--seed", type=int, default=0, help="seed of the random weights with --model-config")
    trt = parser.add_argument_group("--format tensorrt")
    trt.add_argument("--onnx", help="exported ONNX model (its .onnx.json sidecar must be next to it)")
    trt.add_argument("--precision", choices=("fp16", "fp32"), default="fp16", help="engine precision (default fp16)")
    trt.add_argument("--engine-dir", help="engine cache directory (default $DIMA_ENGINE_CACHE or ~/.cache/dima/engines)")
    trt.add_argument("--build-only", action="store_true", help="build (or find) the engine and exit")
    trt.add_argument("--workspace-gib", type=float, default=4.0, help="TensorRT builder workspace limit (GiB)")
    parser.set_defaults(func=run)
    return parser


def _export_onnx(args: argparse.Namespace) -> int:
    from dima_core.export.onnx_export import export_onnx, load_real_inputs
    from dima_core.export.planner_loading import load_planner

    if not args.out:
        raise ValueError("--format onnx needs --out DIR")
    if not (args.checkpoint or args.model_config):
        raise ValueError("--format onnx needs --checkpoint (trained weights) or --model-config (random weights)")
    loaded = load_planner(args.checkpoint, args.model_config, seed=args.seed)
    real = load_real_inputs(args.real_inputs) if args.real_inputs else None
    result = export_onnx(loaded, args.out, opset=args.opset, with_beam=args.with_beam, real_inputs=real,
                         name=args.name, parity_tolerance=args.parity_tolerance)
    sidecar = result.sidecar
    print(f"ONNX model: {result.onnx_path} (opset {sidecar.opset}, sha256 {sidecar.onnx_sha256[:16]}...)")
    print(f"sidecar:    {result.sidecar_path}")
    print("inputs:     " + ", ".join(f"{s.name}{list(s.shape)}:{s.dtype}" for s in sidecar.inputs))
    print("outputs:    " + ", ".join(f"{s.name}{list(s.shape)}" for s in sidecar.outputs))
    sets = [k for k, v in sidecar.parity.items() if isinstance(v, dict) and k != "max_abs_error"]
    print(f"parity vs PyTorch (max abs error; input sets: {', '.join(sets)}):")
    for name, err in sidecar.parity["max_abs_error"].items():
        print(f"  {name:<20s} {err:.3e}")
    print(f"exported in {result.seconds:.1f} s")
    return 0


def _export_tensorrt(args: argparse.Namespace) -> int:
    from dima_core.export.tensorrt_engine import ensure_engine

    if not args.onnx:
        raise ValueError("--format tensorrt needs --onnx FILE (from dima export --format onnx)")
    if args.build_only:
        artifact = ensure_engine(args.onnx, args.precision, args.engine_dir, args.workspace_gib)
        print(f"TensorRT engine ({artifact.decision.action}: {artifact.decision.reason}): {artifact.path}")
        return 0
    from dima_core.export.backends import create_backend

    backend = create_backend(backend="tensorrt", onnx=args.onnx, precision=args.precision,
                             engine_dir=args.engine_dir, workspace_gib=args.workspace_gib, warmup_iters=5)
    artifact = backend.artifact  # type: ignore[attr-defined]
    print(f"TensorRT engine ({artifact.decision.action}: {artifact.decision.reason}): {artifact.path}")
    print(f"loaded and warmed up: {backend.describe()}")
    return 0


def run(args: argparse.Namespace) -> int:
    from dima_core.export.errors import BackendUnavailableError, EngineBuildError
    from dima_core.export.onnx_export import ExportError
    from dima_core.training.checkpoint import CheckpointError

    try:
        return _export_onnx(args) if args.format == "onnx" else _export_tensorrt(args)
    except (BackendUnavailableError, EngineBuildError, ExportError, CheckpointError) as exc:
        print(f"dima export: error: {exc}", file=sys.stderr)
        return 2
