"""``dima bench gpu``: the planner's GPU figures in one markdown table (``tools/gpu_bench.sh`` runs it on a GPU
machine).

    tools/gpu_bench.sh [OUT.md]                       # on a CUDA machine: under 8 minutes
    dima bench gpu --out docs/bench_results/gpu_bench.md --iters 50

Two models: ``vad_tiny`` (``config/model/vad_tiny.yaml``, seeded random weights: latency does not depend on them)
and the shipped CPU planner (``dima_core/weights/planner_drive.safetensors``, ``dima_cpu_fast``). Per model, in
this order (cheap cells first, so a run cut short still has them):

- torch eager at fp32, bf16 and fp16 autocast (the torch backend, as the node runs it);
- the same forward captured as a CUDA graph at each of those precisions (:mod:`benchmarks.gpu_runtimes`);
- onnxruntime's CUDA execution provider (``onnxruntime-gpu``) and TensorRT at fp16 and fp32, on the fp32 ONNX
  export, when those packages are installed;
- ``torch.compile`` (inductor) at ``--compile-precisions`` (default bf16: compiling is the slow part of the run);
- the ROS planner node on the GPU backend over real DDS (``dima bench latency``'s ``ros`` pipeline: six 1600x900
  JPEG cameras at 10 Hz, end-to-end latency), for the torch backend and each installed ONNX-based one.

Every cell is timed by ``dima bench latency``'s own code (:func:`benchmarks.latency._measure_cell` on a
:class:`~benchmarks.latency.Pipeline`; the ROS cells by :func:`benchmarks.latency._measure_ros_cell`): a frame is
``infer(inputs)`` at batch 1, i.e. input validation, host->device copies, the model and device->host copies. A cell
whose package is absent says ``not installed`` (with what to install), one that cannot run here says ``not
available`` with the reason, one that raised says ``failed`` with the error; none of them stops the run. The table
is rewritten after every cell, so a run stopped by its time limit leaves what it measured (cells it did not reach
say so). Exit status: 0, or 1 when a cell failed, 2 when no CUDA device is visible (nothing is measured or written),
124 when stopped by SIGINT (the time limit of tools/gpu_bench.sh).

``--device cpu`` runs the cells that make sense on a CPU (eager fp32 / bf16, ``torch.compile``, onnxruntime, the
ROS node) with the same code, for checking the benchmark on a machine without a GPU (test/test_gpu_bench.py); its
figures are not GPU figures.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import logging
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from benchmarks import latency
from benchmarks.gpu_runtimes import CompileOptions, compile_pipeline, cuda_graph_pipeline

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = Path("docs/bench_results/gpu_bench.md")
TITLE = "# GPU latency of the planner (`tools/gpu_bench.sh`, `dima bench gpu`)"
NO_CUDA_STATUS = 2
FAILED_STATUS = 1
INTERRUPTED_STATUS = 124


@dataclass(frozen=True)
class ModelSpec:
    """A measured model: seeded random weights of ``model_yaml``, or the trained ``checkpoint`` (its own config)."""

    key: str
    label: str
    model_yaml: Path
    checkpoint: Path | None = None


MODELS: dict[str, ModelSpec] = {
    "vad_tiny": ModelSpec("vad_tiny", "vad_tiny (random weights)", REPO_ROOT / "config" / "model" / "vad_tiny.yaml"),
    "planner_drive": ModelSpec(
        "planner_drive",
        "planner_drive (dima_cpu_fast, shipped weights)",
        REPO_ROOT / "config" / "model" / "dima_cpu_fast.yaml",
        REPO_ROOT / "dima_core" / "weights" / "planner_drive.safetensors",
    ),
}

# Runtimes, in table order within a model.
EAGER, GRAPH, ORT, TRT, COMPILE, ROS = (
    "torch eager",
    "torch CUDA graph",
    "onnxruntime",
    "TensorRT",
    "torch.compile",
    "ROS node",
)
CUDA_ONLY = (GRAPH, TRT)


@dataclass(frozen=True)
class GpuCell:
    """One row: ``runtime`` of ``model`` at ``precision``; ``backend`` is the planner backend it runs on (the ROS
    node's backend for ROS rows)."""

    model: str
    runtime: str
    backend: str
    precision: str


@dataclass
class CellResult:
    cell: GpuCell
    device: str
    p50: float | None = None
    p99: float | None = None
    frames: int = 0
    note: str = ""
    failed: bool = False
    seconds: float = 0.0  # wall time of the whole cell (load, export, compile, warm-up, timing)


@dataclass
class RunInfo:
    """The table's header: what ran where."""

    command: str
    device: str
    gpu: str
    versions: str  # driver, CUDA, cuDNN
    software: str
    machine: str
    started: str
    load_1min: float
    settings: str
    wall_s: float = 0.0


def plan_cells(
    models: Sequence[str],
    precisions: Sequence[str],
    compile_precisions: Sequence[str],
    trt_precisions: Sequence[str],
    ros_backends: Sequence[str],
    ros_precision: str,
) -> list[GpuCell]:
    """Every cell of a run, cheap ones first (all models' eager and CUDA-graph cells, then the ONNX-based ones, then
    compilation and the ROS node), so that a run cut short by its time limit has the basic figures."""
    phases: list[Callable[[str], list[GpuCell]]] = [
        lambda m: [GpuCell(m, EAGER, "torch", p) for p in precisions],
        lambda m: [GpuCell(m, GRAPH, "torch", p) for p in precisions],
        lambda m: [GpuCell(m, ORT, "onnxruntime", "fp32")],
        lambda m: [GpuCell(m, TRT, "tensorrt", p) for p in trt_precisions],
        lambda m: [GpuCell(m, COMPILE, "torch", p) for p in compile_precisions],
        lambda m: [
            GpuCell(m, ROS, b, ros_precision if b == "torch" else "fp16" if b == "tensorrt" else "fp32")
            for b in ros_backends
        ],
    ]
    return [cell for phase in phases for model in models for cell in phase(model)]


def _importable(module: str) -> bool:
    """Whether ``module`` can be found (without importing it; a finder that refuses it counts as absent)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_package(cell: GpuCell, device: str) -> str | None:
    """The ``not installed: ...`` note of a cell whose package is absent here (None: its packages import)."""
    if cell.backend == "tensorrt" and not _importable("tensorrt"):
        return (
            "not installed: the tensorrt Python package does not import (pip install '.[tensorrt]': TensorRT 10 "
            "for CUDA 12)"
        )
    if cell.backend == "onnxruntime":
        if not _importable("onnxruntime"):
            return "not installed: onnxruntime (pip install onnxruntime-gpu on a GPU machine)"
        if device == "cuda":
            import onnxruntime

            providers = onnxruntime.get_available_providers()
            if "CUDAExecutionProvider" not in providers:
                return (
                    f"not installed: onnxruntime-gpu (this onnxruntime {onnxruntime.__version__} has no "
                    f"CUDAExecutionProvider, only {', '.join(providers)}; pip install '.[onnxruntime-gpu]')"
                )
    if cell.runtime == ROS:
        for module, what in (("rclpy", "rclpy (ROS 2)"), ("dima", "the colcon-built dima interfaces")):
            if not _importable(module):
                return (
                    f"not installed: {what} does not import with {sys.executable}; run in the ROS environment "
                    "(source tools/env.sh)"
                )
    return None


def unavailable(cell: GpuCell, device: str) -> str | None:
    """The ``not available: ...`` note of a cell that cannot run on ``device`` (None: it can)."""
    from dima_core.export.precision import backend_precisions

    if device != "cuda" and cell.runtime in CUDA_ONLY:
        return f"not available: {cell.runtime} needs a CUDA device (this run is on the {device})"
    backend_device = "cuda" if cell.backend == "tensorrt" else device
    have = backend_precisions(cell.backend, backend_device)
    if cell.precision not in have:
        return f"not available: {cell.backend} has no {cell.precision} on {backend_device} (it has {', '.join(have)})"
    return None


@dataclass
class Runner:
    """Runs cells of one benchmark run: per-model ONNX exports on first use, the timing settings, the ROS
    settings in ``dima bench latency``'s argument form."""

    device: str
    iters: int
    warmup: int
    threads: int
    compile_options: CompileOptions
    ros_args: argparse.Namespace
    engine_dir: str | None
    work_dir: Path
    models: dict[str, ModelSpec] = field(default_factory=lambda: dict(MODELS))
    _onnx: dict[str, Path] = field(default_factory=dict)

    def case(self, cell: GpuCell) -> latency.BenchCase:
        spec = self.models[cell.model]
        return latency.BenchCase(
            spec.key,
            spec.model_yaml,
            cell.backend,
            self.device,
            self.threads,
            self.warmup,
            None,
            cell.precision,
            self.engine_dir,
            checkpoint=str(spec.checkpoint) if spec.checkpoint else None,
        )

    def onnx_path(self, model: str) -> Path:
        """The model's fp32 ONNX export (with its parity check), made once per run."""
        if model not in self._onnx:
            spec = self.models[model]
            args = argparse.Namespace(
                backends=["onnxruntime"], checkpoint=str(spec.checkpoint) if spec.checkpoint else None
            )
            paths, note = latency._export_for_onnx_backends(args, spec.model_yaml, self.work_dir)
            log.info("%s: %s", model, note)
            self._onnx[model] = paths["fp32"]
        return self._onnx[model]

    def run(self, cell: GpuCell) -> CellResult:
        """One cell; never raises (a failure is the cell's note), except KeyboardInterrupt."""
        result = CellResult(cell, "cuda" if cell.backend == "tensorrt" else self.device)
        t0 = time.perf_counter()
        reason = missing_package(cell, self.device) or unavailable(cell, self.device)
        if reason is not None:
            result.note = reason
            return result
        try:
            self._measure(cell, result)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one cell's failure is recorded, the run goes on
            traceback.print_exc()
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            result.failed, result.note = True, f"failed: {type(exc).__name__}: {first}"
        finally:
            result.seconds = time.perf_counter() - t0
            _release_memory()
        return result

    def _measure(self, cell: GpuCell, result: CellResult) -> None:
        case = self.case(cell)
        if cell.backend in ("onnxruntime", "tensorrt"):
            case.onnx_path = self.onnx_path(cell.model)
        if cell.runtime == ROS:
            ros_row = latency._measure_ros_cell(case, self.ros_args)
            if ros_row.result is None:
                result.note = ros_row.note
                return
            res, summary = ros_row.result, ros_row.result.summary()
            result.p50, result.p99 = summary["pipeline"]["p50"], summary["pipeline"]["p99"]
            result.frames = res.frames_planned
            result.note = (
                f"end to end over DDS ({ros_row.description}); model p50 {summary['model']['p50']:.1f} / "
                f"p99 {summary['model']['p99']:.1f}, ROS overhead p50 {summary['overhead']['p50']:.1f} ms; "
                f"{res.frames_planned} / {res.frames_sent} frames planned, six {res.image_size[0]}x"
                f"{res.image_size[1]} JPEGs ({res.jpeg_kib:.0f} KiB) at {res.rate_hz:g} Hz; {ros_row.note}"
            )
            return
        pipeline = {
            EAGER: latency.PIPELINES[0],
            ORT: latency.PIPELINES[0],
            TRT: latency.PIPELINES[0],
            GRAPH: latency.Pipeline("cuda-graph", "torch forward captured as a CUDA graph", cuda_graph_pipeline),
            COMPILE: latency.Pipeline(
                "compile", "torch forward under torch.compile", compile_pipeline(self.compile_options)
            ),
        }[cell.runtime]
        row = latency._measure_cell(pipeline, case, "", self.iters)
        if row.p50 is None:
            result.note = row.note
            return
        result.p50, result.p99, result.frames = row.p50, row.p99, row.iters
        result.note = row.description


def _release_memory() -> None:
    """Free the finished cell's model before the next one loads (GPU memory, compiled graphs)."""
    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    torch._dynamo.reset()


def _nvidia_smi() -> tuple[str, str]:
    """(driver version, CUDA version the driver supports) from nvidia-smi, or why they are unknown."""
    try:
        out = subprocess.run(["nvidia-smi"], capture_output=True, text=True, timeout=30, check=True).stdout
    except FileNotFoundError:
        return "unknown (no nvidia-smi)", "unknown (no nvidia-smi)"
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unknown (nvidia-smi: {exc})", "unknown"
    driver = re.search(r"Driver Version:\s*([\d.]+)", out)
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", out)
    return (driver.group(1) if driver else "unknown", cuda.group(1) if cuda else "unknown")


def collect_run_info(command: str, device: str, settings: str) -> RunInfo:
    import torch

    from benchmarks.synth import machine

    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        gpu = f"{props.name} (compute capability {props.major}.{props.minor}, {props.total_memory / 2**30:.1f} GiB)"
        driver, driver_cuda = _nvidia_smi()
        versions = (
            f"driver {driver} (CUDA {driver_cuda}); torch's CUDA runtime {torch.version.cuda}, cuDNN "
            f"{torch.backends.cudnn.version()}"
        )
    else:
        gpu, versions = "none visible to torch", f"torch {torch.__version__} (CUDA build: {torch.version.cuda})"
    software = [f"Python {platform.python_version()} ({sys.executable})", f"torch {torch.__version__}"]
    for name in ("onnxruntime", "tensorrt"):
        if _importable(name):
            software.append(f"{name} {getattr(__import__(name), '__version__', '?')}")
        else:
            software.append(f"{name} not installed")
    return RunInfo(
        command=command,
        device=device,
        gpu=gpu,
        versions=versions,
        software=", ".join(software),
        machine=machine(),
        started=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        load_1min=os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan"),
        settings=settings,
    )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def render_table(
    info: RunInfo,
    results: Sequence[CellResult],
    pending: Sequence[GpuCell] = (),
    models: dict[str, ModelSpec] | None = None,
    pending_note: str = "",
) -> str:
    """The markdown report: header lines, then one row per cell (``pending`` cells: not run, ``pending_note``)."""
    models = models or MODELS
    lines = [
        TITLE,
        "",
        f"- command: `{info.command}`",
        f"- device: {info.device}; GPU: {info.gpu}",
        f"- versions: {info.versions}",
        f"- software: {info.software}",
        f"- machine: {info.machine}; 1-min load average at start {info.load_1min:.1f}",
        f"- started {info.started}; wall time {info.wall_s:.0f} s",
        f"- {info.settings}",
        "- a frame = `infer(inputs)` at batch 1: input validation, host->device copies, the model, "
        "device->host copies (image decoding not included); ROS node rows: frame stamp -> trajectory received "
        "by a separate process over DDS, the node decoding six JPEG cameras",
        "",
        "| model | runtime | backend | precision | device | p50 ms | p99 ms | frames | cell s | note |",
        "|---|---|---|---|---|---:|---:|---:|---:|---|",
    ]

    def label(model: str) -> str:
        return models[model].label if model in models else model

    for r in results:
        note = r.note.replace("|", "\\|").replace("\n", " ")
        lines.append(
            f"| {label(r.cell.model)} | {r.cell.runtime} | {r.cell.backend} | {r.cell.precision} | "
            f"{r.device} | {_ms(r.p50)} | {_ms(r.p99)} | {r.frames} | {r.seconds:.0f} | {note} |"
        )
    for c in pending:
        lines.append(
            f"| {label(c.model)} | {c.runtime} | {c.backend} | {c.precision} | - | - | - | 0 | - | "
            f"not run: {pending_note or 'the run ended before this cell'} |"
        )
    return "\n".join(lines) + "\n"


def write_table(path: Path, text: str) -> None:
    """Write atomically (a reader never sees half a table)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def no_cuda_message() -> str | None:
    """Why this process cannot measure on CUDA (None: a CUDA device is visible to torch)."""
    import torch

    if torch.cuda.is_available():
        return None
    smi = "nvidia-smi found" if _which("nvidia-smi") else "no nvidia-smi on PATH"
    nodes = "/dev/nvidia0 present" if os.path.exists("/dev/nvidia0") else "no /dev/nvidia0"
    build = (
        f"torch {torch.__version__} is a CPU-only build"
        if torch.version.cuda is None
        else f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no device"
    )
    return (
        f"no CUDA device: {build} ({sys.executable}); {smi}; {nodes}. Nothing was measured and no table was "
        "written. Run this on a machine with an NVIDIA GPU and a CUDA build of torch (tools/gpu_bench.sh picks "
        "one), or pass --device cpu to check the benchmark's CPU cells"
    )


def _which(name: str) -> bool:
    return any(os.access(os.path.join(d, name), os.X_OK) for d in os.environ.get("PATH", "").split(os.pathsep) if d)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"markdown table to write (default {DEFAULT_OUT})")
    p.add_argument(
        "--models",
        nargs="+",
        default=list(MODELS),
        choices=list(MODELS),
        help="models to measure (default: vad_tiny planner_drive)",
    )
    p.add_argument(
        "--device",
        choices=("cuda", "cpu"),
        default="cuda",
        help="cuda (default); cpu runs the cells that make sense on a CPU, to check the benchmark",
    )
    p.add_argument("--iters", type=int, default=50, help="timed frames per cell (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed warm-up frames per cell (default 5)")
    p.add_argument(
        "--threads", type=int, default=0, help="CPU threads of torch / onnxruntime (default 0: the library default)"
    )
    p.add_argument(
        "--precisions",
        nargs="+",
        default=["fp32", "bf16", "fp16"],
        choices=("fp32", "bf16", "fp16"),
        help="torch eager and CUDA-graph precisions (autocast; default fp32 bf16 fp16)",
    )
    p.add_argument(
        "--compile-precisions",
        nargs="*",
        default=["bf16"],
        choices=("fp32", "bf16", "fp16"),
        help="torch.compile precisions (default bf16; none to skip compiling)",
    )
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (default inductor)")
    p.add_argument("--compile-mode", default=None, help="torch.compile mode (default: torch's default)")
    p.add_argument(
        "--trt-precisions",
        nargs="*",
        default=["fp16", "fp32"],
        choices=("fp16", "fp32"),
        help="TensorRT engine precisions (default fp16 fp32)",
    )
    p.add_argument("--engine-dir", default=None, help="TensorRT engine cache (default: a directory of this run)")
    p.add_argument(
        "--ros-backends",
        nargs="*",
        default=["torch", "onnxruntime", "tensorrt"],
        choices=("torch", "onnxruntime", "tensorrt"),
        help="backends of the ROS node rows (default all; none to skip the node)",
    )
    p.add_argument(
        "--ros-precision",
        default=None,
        choices=("fp32", "bf16", "fp16"),
        help="the ROS node's torch precision (default bf16 on cuda, fp32 on cpu)",
    )
    p.add_argument("--ros-frames", type=int, default=30, help="timed frames of each ROS row (default 30)")
    p.add_argument("--ros-rate", type=float, default=10.0, help="camera rate of the ROS rows, Hz (default 10)")
    p.add_argument(
        "--ros-image-size",
        type=latency._image_size,
        default=(1600, 900),
        metavar="WxH",
        help="published JPEG size of the ROS rows (default 1600x900)",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=None,
        help="start no cell after this many seconds (the rest are listed as not run)",
    )
    p.add_argument("--command", default=None, help="the command line shown in the table (tools/gpu_bench.sh sets it)")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "gpu",
        help="GPU latency of vad_tiny and the shipped planner per runtime; writes one markdown table",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from benchmarks.command_line import bench_command

    for name in ("iters", "warmup", "ros_frames"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1")
    if args.ros_rate <= 0:
        raise ValueError("--ros-rate must be > 0")
    if args.device == "cuda":
        message = no_cuda_message()
        if message is not None:
            print(f"dima bench gpu: {message}", file=sys.stderr)
            return NO_CUDA_STATUS
    ros_precision = args.ros_precision or ("bf16" if args.device == "cuda" else "fp32")
    cells = plan_cells(
        args.models, args.precisions, args.compile_precisions, args.trt_precisions, args.ros_backends, ros_precision
    )
    command = args.command or bench_command("gpu")
    settings = (
        f"{args.iters} timed frames after {args.warmup} warm-up frames per cell; threads "
        f"{args.threads or 'library default'}; torch.compile backend {args.compile_backend}"
        f"{', mode ' + args.compile_mode if args.compile_mode else ''}; ROS rows {args.ros_frames} frames at "
        f"{args.ros_rate:g} Hz, {args.ros_image_size[0]}x{args.ros_image_size[1]} JPEGs"
    )
    info = collect_run_info(command, args.device, settings)
    t_start = time.perf_counter()
    results: list[CellResult] = []
    status, pending_note = 0, ""
    with tempfile.TemporaryDirectory(prefix="dima-bench-gpu-") as tmp:
        ros_args = argparse.Namespace(
            iters=args.ros_frames,
            ros_rate=args.ros_rate,
            ros_image_size=args.ros_image_size,
            ros_jpeg_quality=90,
            ros_dds_profile=None,
        )
        runner = Runner(
            args.device,
            args.iters,
            args.warmup,
            args.threads,
            CompileOptions(args.compile_backend, args.compile_mode),
            ros_args,
            args.engine_dir or str(Path(tmp) / "engines"),
            Path(tmp),
        )

        def write(pending: Sequence[GpuCell], note: str = "") -> None:
            info.wall_s = time.perf_counter() - t_start
            write_table(args.out, render_table(info, results, pending, runner.models, note))

        try:
            for i, cell in enumerate(cells):
                if args.budget_s is not None and time.perf_counter() - t_start > args.budget_s:
                    pending_note = f"the {args.budget_s:.0f} s budget was spent before this cell"
                    write(cells[i:], pending_note)
                    break
                write(cells[i:])
                print(f"[gpu bench] {cell.model} {cell.runtime} {cell.backend} {cell.precision} ...", flush=True)
                result = runner.run(cell)
                results.append(result)
                print(
                    f"[gpu bench]   -> p50 {_ms(result.p50)} ms, p99 {_ms(result.p99)} ms ({result.frames} frames, "
                    f"{result.seconds:.0f} s) {result.note}",
                    flush=True,
                )
            else:
                write([])
        except KeyboardInterrupt:
            pending_note = "stopped by the time limit (SIGINT) during or before this cell"
            write(cells[len(results) :], pending_note)
            status = INTERRUPTED_STATUS
    if status == 0 and any(r.failed for r in results):
        status = FAILED_STATUS
    print(render_table(info, results, cells[len(results) :], runner.models, pending_note))
    print(f"wrote {args.out}")
    return status


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.gpu`` (what tools/gpu_bench.sh runs: no console script needed)."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.gpu", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.command is None:
        args.command = "python -m benchmarks.gpu " + " ".join(shlex.quote(a) for a in (argv or sys.argv[1:]))
    return run(args)


__all__ = [
    "CellResult",
    "GpuCell",
    "MODELS",
    "ModelSpec",
    "RunInfo",
    "Runner",
    "add_parser",
    "collect_run_info",
    "missing_package",
    "no_cuda_message",
    "plan_cells",
    "render_table",
    "run",
    "unavailable",
    "write_table",
]


if __name__ == "__main__":
    sys.exit(main())
