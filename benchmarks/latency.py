"""``dima bench latency``: per-frame planner latency (p50/p99, batch 1) per model config, pipeline and backend,
recorded in ``docs/benchmarks.md``.

    dima bench latency --configs dima_tiny vad_tiny --backends torch onnxruntime tensorrt --iters 50 --threads 1

For each config (a name under ``config/model/`` or a YAML path) the planner is built with seeded random weights
(latency does not depend on the weights), exported to ONNX in a temporary directory for the ONNX-based backends,
loaded and warmed up through :func:`~dima_core.export.backends.create_backend` exactly as the ROS node does, and
timed frame by frame. A frame is ``backend.infer(inputs)``: input validation, host->device copies, the model,
device->host copies; i.e. what the node pays per camera set, not counting image decoding.

What is measured is a list of *pipelines* (:data:`PIPELINES`): ``vision`` (the deployed vision-only planner),
``mllm`` (MLLM-only planning) and ``dual`` (DiMA-Dual), all in one table from one run; the teacher modes run on the
torch backend with the embedded SmolLM2 teacher (``config/mllm/smollm2_135m.yaml``), for model configs it fits.
Unavailable backends (no tensorrt package, no GPU) are listed with the reason, not silently skipped.

The ``ros`` pipeline measures the deployed node instead of the bare backend: the real planner node
(``dima_ros.planner_node``, its own process, the shipped ``config/planner_node.yaml`` with only the model changed) fed
over real DDS by a separate publisher node at ``--ros-rate`` Hz with six JPEG ``CompressedImage`` cameras (plus
CameraInfo, odometry, acceleration, command). Per frame: pipeline latency (frame stamp -> trajectory received), the
node's processing time and model time, and ROS overhead = pipeline latency - model latency; see
:mod:`benchmarks.pipeline`. Both ROS processes use ``config/fastdds_large_data.xml`` (``--ros-dds-profile``):
Fast DDS's default shared-memory segment cannot hold six full-size JPEGs. It needs the ROS environment
(``source tools/env.sh``); without it the row says so.

    dima bench latency --configs dima_tiny --backends torch onnxruntime --pipelines vision ros --iters 20

Precisions (:mod:`benchmarks.precision`): ``--precisions fp32 bf16 int8`` measures every backend at each of them it
has (torch bf16 autocast, onnxruntime int8 quantised and calibrated on the synthetic world's train split), and with
``--accuracy-data`` every vision row reports its accuracy cost next to its latency: max trajectory difference and
open-loop L2 change against torch fp32 on val frames (``--checkpoint`` for trained weights).

    dima bench latency --configs dima_cpu_fast --backends torch onnxruntime --pipelines vision \
        --precisions fp32 bf16 int8 --accuracy-data data/synth_drive --checkpoint runs/planner_drive/latest
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import platform
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import precision as precision_bench
from benchmarks.precision import AccuracyData, accuracy_of

log = logging.getLogger(__name__)

SECTION = "## Planner latency (`dima bench latency`)"
REPO_ROOT = Path(__file__).resolve().parents[1]


@dataclass
class BenchCase:
    """One (config, backend) cell: what a pipeline needs to build its per-frame callable."""

    config_name: str
    model_yaml: Path
    backend_name: str
    device: str
    threads: int
    warmup: int
    onnx_path: Path | None
    precision: str
    engine_dir: str | None
    seed: int = 0
    notes: list[str] = field(default_factory=list)
    checkpoint: str | None = None  # trained weights instead of model_yaml's random ones
    accuracy: AccuracyData | None = None  # frames + fp32 reference: the vision pipeline measures its cost
    accuracy_cost: Any | None = None  # set by the vision pipeline (dima_core.export.accuracy.AccuracyCost)

    def torch_weights(self) -> dict[str, Any]:
        """The torch backend options of this cell's weights."""
        if self.checkpoint:
            return {"checkpoint": self.checkpoint}
        return {"model_config": str(self.model_yaml), "seed": self.seed}


@dataclass
class Pipeline:
    """A measured pipeline: ``build(case)`` returns ``(frame callable, description)``; raising
    :class:`~dima_core.export.errors.BackendUnavailableError` marks the cell unavailable with its reason."""

    name: str
    description: str
    build: Callable[[BenchCase], tuple[Callable[[], Any], str]]


def _vision_pipeline(case: BenchCase) -> tuple[Callable[[], Any], str]:
    from dima_core.export.backends import create_backend
    from dima_core.export.io_spec import example_inputs

    options: dict[str, Any] = {
        "backend": case.backend_name,
        "threads": case.threads,
        "warmup_iters": case.warmup,
        "precision": case.precision,
    }
    if case.backend_name == "torch":
        options.update(device=case.device, **case.torch_weights())
    elif case.backend_name == "onnxruntime":
        options.update(onnx=str(case.onnx_path), device=case.device)
    else:
        options.update(onnx=str(case.onnx_path), engine_dir=case.engine_dir)
    backend = create_backend(**options)
    assert backend.model_config is not None
    case.accuracy_cost = accuracy_of(backend, case.accuracy)
    inputs = example_inputs(backend.model_config, backend.input_specs, seed=1)
    return (lambda: backend.infer(inputs)), backend.describe()


MLLM_CONFIG = REPO_ROOT / "config" / "mllm" / "smollm2_135m.yaml"


@functools.lru_cache(maxsize=1)
def _base_llm() -> tuple[Any, Any]:
    """SmolLM2 (the embedded default teacher LLM), loaded offline once per run for every teacher cell."""
    from dima_core.models.mllm.config import load_mllm_config
    from dima_core.models.mllm.llm import load_llm

    return load_llm(load_mllm_config(str(MLLM_CONFIG)).llm)


def _teacher_mode_pipeline(mode: str) -> Callable[[BenchCase], tuple[Callable[[], Any], str]]:
    """DiMA's teacher modes (``mllm``: the MLLM planning head; ``dual``: max-pool of both ego features through the
    planner head) on the torch backend: the planner, then the LLM forward on its BEAM tokens, as ``dima eval --mode``
    runs them. Random planner weights and an untrained teacher: latency does not depend on the weights."""

    def build(case: BenchCase) -> tuple[Callable[[], Any], str]:
        import torch

        from dima_core.export.errors import BackendUnavailableError
        from dima_core.models import VisionPlanner, load_model_config
        from dima_core.models.dima import DimaJointModel, build_teacher
        from dima_core.models.dummy_inputs import dummy_inputs
        from dima_core.models.mllm.config import load_mllm_config

        if case.backend_name != "torch":
            raise BackendUnavailableError(f"the {mode} mode runs the LLM with the torch backend only")
        config = load_model_config(case.model_yaml)
        mllm_config = load_mllm_config(str(MLLM_CONFIG))
        try:
            mllm_config.check_model(config.embed_dim, tuple(config.bev.grid_size), config.planner.feature_dim)
        except ValueError as exc:
            raise BackendUnavailableError(f"{MLLM_CONFIG.name} does not fit {case.config_name}: {exc}") from None
        torch.manual_seed(case.seed)
        llm, tokenizer = _base_llm()
        model = DimaJointModel(VisionPlanner(config), build_teacher(mllm_config, llm, tokenizer)).eval()
        device = torch.device(case.device)
        model.to(device)
        inputs = {k: v.to(device) for k, v in dummy_inputs(config, seed=1).items()}

        def frame() -> Any:
            with torch.inference_mode():
                return model.plan(mode, **inputs)

        for _ in range(case.warmup):
            frame()
        return frame, f"torch {case.device} planner + {MLLM_CONFIG.stem} teacher ({mode})"

    return build


# The pipelines measured in one run, in table order: the deployed vision-only planner, and DiMA's two teacher modes
# (the reason DiMA exists: the LLM is optional at inference). The node-level measurement is ROS_PIPELINE, below.
PIPELINES: list[Pipeline] = [
    Pipeline("vision", "vision-only planner: cameras + calibration + command -> trajectory", _vision_pipeline),
    Pipeline(
        "mllm", "MLLM-only: planner encoder + LLM planning head on the BEAM tokens", _teacher_mode_pipeline("mllm")
    ),
    Pipeline(
        "dual", "DiMA-Dual: planner + LLM, max-pooled ego features -> planner head", _teacher_mode_pipeline("dual")
    ),
]


# The planner node over real DDS (benchmarks.pipeline): not a per-frame callable like PIPELINES (the node runs
# in its own process and reports several timings per frame), so it has its own rows and table.
ROS_PIPELINE = "ros"


@dataclass
class RosRow:
    config: str
    backend: str
    description: str = ""
    result: Any = None  # benchmarks.pipeline.RosBenchResult when measured
    note: str = ""


def _image_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (e.g. 1600x900), got {text!r}") from None
    if not (16 <= w <= 8192 and 16 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"image size {w}x{h} out of range (16..8192)")
    return w, h


def _run_ros(case: BenchCase, args: argparse.Namespace) -> RosRow:
    """One ``ros`` cell. rclpy is imported here only (dima_core never imports it at module level), as ``dima ros``
    does: every other pipeline runs without a ROS environment."""
    from dima_core.export.backends import unavailable_reason

    row = RosRow(case.config_name, case.backend_name)
    device = "auto" if case.backend_name == "tensorrt" else case.device
    reason = unavailable_reason(case.backend_name, "cuda" if case.backend_name == "tensorrt" else case.device)
    if reason is not None:
        row.note = f"not available: {reason}"
        return row
    try:
        from benchmarks.pipeline import DEFAULT_DDS_PROFILE, RosBenchSettings, run_ros_bench
    except ImportError as exc:
        row.note = (
            f"not available: rclpy or the dima interfaces do not import ({exc}); run in the ROS environment "
            "(source tools/env.sh)"
        )
        return row
    torch_backend = case.backend_name == "torch"
    settings = RosBenchSettings(
        backend=case.backend_name,
        model_config=case.model_yaml if torch_backend and not case.checkpoint else None,
        checkpoint=Path(case.checkpoint) if torch_backend and case.checkpoint else None,
        onnx_path=case.onnx_path if case.backend_name != "torch" else None,
        device=device,
        threads=case.threads,
        precision=case.precision,
        engine_dir=case.engine_dir,
        frames=args.iters,
        warmup=case.warmup,
        rate_hz=args.ros_rate,
        image_size=args.ros_image_size,
        jpeg_quality=args.ros_jpeg_quality,
        dds_profile=DEFAULT_DDS_PROFILE
        if args.ros_dds_profile is None
        else (Path(args.ros_dds_profile) if args.ros_dds_profile else None),
    )
    row.result = run_ros_bench(settings)
    row.description = f"node: {row.result.node_backend or case.backend_name}"
    counters = row.result.node_counters
    notes = [f"{row.result.frames_sent - row.result.frames_planned} timed frames without trajectory"]
    if counters:
        notes.append(
            "node totals incl. warm-up: "
            + ", ".join(
                f"{key} {counters.get(key, '?')}"
                for key in ("frames_in", "trajectories", "dropped_busy", "incomplete", "late_completed")
            )
        )
    notes.append(row.result.middleware)
    row.note = "; ".join(notes)
    return row


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "latency",
        help="per-frame planner latency (p50/p99, batch 1) per config and backend; updates docs/benchmarks.md",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--configs",
        nargs="+",
        default=["dima_tiny", "vad_tiny"],
        help="model configs: names under config/model/ or YAML paths (default dima_tiny vad_tiny)",
    )
    p.add_argument(
        "--backends",
        nargs="+",
        default=["torch", "onnxruntime", "tensorrt"],
        choices=("torch", "onnxruntime", "tensorrt"),
        help="backends to measure (default all)",
    )
    p.add_argument(
        "--pipelines",
        nargs="+",
        default=[pl.name for pl in PIPELINES] + [ROS_PIPELINE],
        choices=[pl.name for pl in PIPELINES] + [ROS_PIPELINE],
        help="pipelines to measure (default all registered; 'ros' = the planner node over DDS)",
    )
    p.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default="cpu",
        help="device of the torch and onnxruntime backends (tensorrt is always cuda)",
    )
    precision_bench.add_arguments(p)
    p.add_argument("--engine-dir", default=None, help="tensorrt engine cache (default: the usual cache)")
    p.add_argument("--iters", type=int, default=30, help="timed frames per cell (default 30)")
    p.add_argument("--warmup", type=int, default=3, help="untimed warm-up frames per cell (default 3)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="CPU threads for torch/onnxruntime (default 1: comparable on a shared machine; 0 = library default)",
    )
    p.add_argument(
        "--ros-rate",
        type=float,
        default=2.0,
        help="ros pipeline: frames per second published to the node (default 2.0, the nuScenes keyframe "
        "rate); frames arriving while the node is busy are dropped by it and counted",
    )
    p.add_argument(
        "--ros-image-size",
        type=_image_size,
        default=(1600, 900),
        metavar="WxH",
        help="ros pipeline: size of the published JPEGs (default 1600x900, a nuScenes camera)",
    )
    p.add_argument(
        "--ros-jpeg-quality",
        type=int,
        default=90,
        choices=range(10, 101),
        metavar="Q",
        help="ros pipeline: JPEG quality 10..100 (default 90)",
    )
    p.add_argument(
        "--ros-dds-profile",
        default=None,
        metavar="XML",
        help="ros pipeline: Fast DDS profile of the node and the publisher (default "
        "config/fastdds_large_data.xml, a shared-memory segment that holds six full-size JPEGs; "
        "'' = the middleware defaults)",
    )
    p.add_argument("--doc", default="docs/benchmarks.md", help="markdown file to update ('' to skip)")
    p.set_defaults(func=run)


def _model_yaml(name: str) -> Path:
    path = Path(name)
    if path.suffix in (".yaml", ".yml"):
        return path
    candidate = REPO_ROOT / "config" / "model" / f"{name}.yaml"
    if not candidate.is_file():
        raise ValueError(f"unknown model config {name!r}: no {candidate}")
    return candidate


@dataclass
class Row:
    config: str
    pipeline: str
    backend: str
    description: str
    precision: str = "fp32"
    accuracy: Any | None = None  # AccuracyCost against torch fp32 (vision rows with --accuracy-data)
    p50: float | None = None
    p99: float | None = None
    mean: float | None = None
    cpu_p50: float | None = None  # this thread's CPU time per frame (the model's compute with 1 thread)
    iters: int = 0
    note: str = ""


def _measure(frame: Callable[[], Any], iters: int) -> tuple[list[float], list[float]]:
    """Wall and CPU milliseconds of ``iters`` frames. The CPU time is this thread's: with one backend thread the
    model computes in the calling thread, so it is the frame's compute even when other jobs hold the cores (wall
    time then includes the waits)."""
    wall, cpu = [], []
    for _ in range(iters):
        t0, c0 = time.perf_counter(), time.thread_time()
        frame()
        cpu.append((time.thread_time() - c0) * 1000.0)
        wall.append((time.perf_counter() - t0) * 1000.0)
    return wall, cpu


def run(args: argparse.Namespace) -> int:
    """Every requested (config, pipeline, backend) cell, then the ``ros`` cells, then the report and the doc."""
    import torch

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    if args.ros_rate <= 0:
        raise ValueError("--ros-rate must be > 0")
    precision_bench.check_requested(args.backends, args.precisions, args.device)
    pipelines = [pl for pl in PIPELINES if pl.name in args.pipelines]
    rows: list[Row] = []
    ros_rows: list[RosRow] = []
    with tempfile.TemporaryDirectory(prefix="dima-bench-latency-") as tmp:
        for yaml_path in _configs(args):
            onnx_paths, export_note = _export_for_onnx_backends(args, yaml_path, Path(tmp))
            accuracy = _accuracy_data(args, yaml_path)  # also the int8 cells' calibration frames (ros too)
            for pipeline in pipelines:
                for backend in args.backends:
                    for case in _cases(args, yaml_path, backend, onnx_paths, accuracy, Path(tmp)):
                        if pipeline.name != "vision" and case.precision != "fp32":
                            continue  # the teacher modes run the torch planner + LLM in fp32 only
                        rows.append(
                            _measure_cell(pipeline, case, export_note if backend != "torch" else "", args.iters)
                        )
            if ROS_PIPELINE in args.pipelines:
                for backend in args.backends:
                    for case in _cases(args, yaml_path, backend, onnx_paths, accuracy, Path(tmp)):
                        ros_rows.append(_measure_ros_cell(case, args))
    report = _report(args, rows, load_before, ros_rows)
    print()
    print(report)
    if args.doc:
        _update_doc(args.doc, report)
        print(f"updated {args.doc}")
    return 0


def _configs(args: argparse.Namespace) -> list[Path]:
    """The model YAMLs measured: ``--configs``, or the one a ``--checkpoint`` carries (written under a temporary
    name: the checkpoint's resolved config, not a file of config/model/)."""
    if not args.checkpoint:
        return [_model_yaml(name) for name in args.configs]
    import yaml

    from dima_core.config import config_to_dict
    from dima_core.export.planner_loading import load_planner

    config = load_planner(args.checkpoint).config
    path = Path(tempfile.mkdtemp(prefix="dima-bench-ckpt-")) / f"{config.name}.yaml"
    path.write_text(yaml.safe_dump(config_to_dict(config), sort_keys=False))
    return [path]


def _accuracy_data(args: argparse.Namespace, yaml_path: Path) -> precision_bench.AccuracyData | None:
    from dima_core.models import load_model_config

    weights = {"checkpoint": args.checkpoint} if args.checkpoint else {"model_config": str(yaml_path), "seed": 0}
    return precision_bench.load_accuracy_data(args, weights, load_model_config(yaml_path))


def _cases(
    args: argparse.Namespace,
    yaml_path: Path,
    backend: str,
    onnx_paths: dict[str, Path],
    accuracy: precision_bench.AccuracyData | None,
    tmp: Path,
) -> list[BenchCase]:
    """One case per precision ``backend`` is measured at; int8 cells quantise the fp32 export on first use (a case
    whose model cannot be made is kept with ``onnx_path`` None and the reason in its notes)."""
    from dima_core.export.errors import BackendUnavailableError

    device = "cuda" if backend == "tensorrt" else args.device
    cases = []
    for precision in precision_bench.cell_precisions(backend, args.precisions, device):
        case = BenchCase(
            yaml_path.stem,
            yaml_path,
            backend,
            args.device,
            args.threads,
            args.warmup,
            onnx_paths.get("fp32"),
            precision,
            args.engine_dir,
            checkpoint=args.checkpoint,
            accuracy=accuracy,
        )
        if backend == "onnxruntime" and precision == "int8":
            if "int8" not in onnx_paths:
                try:
                    onnx_paths["int8"] = precision_bench.int8_model(onnx_paths["fp32"], tmp / yaml_path.stem, accuracy)
                except BackendUnavailableError as exc:
                    case.notes.append(f"not available: {exc}")
            case.onnx_path = onnx_paths.get("int8")
        cases.append(case)
    return cases


def _export_for_onnx_backends(args: argparse.Namespace, yaml_path: Path, tmp: Path) -> tuple[dict[str, Path], str]:
    """``{"fp32": the config's ONNX file}`` under ``tmp`` when an ONNX-based backend is requested (else empty), and
    a note. From ``--checkpoint`` when given, else the YAML's seeded random weights."""
    from dima_core.export.onnx_export import export_onnx
    from dima_core.export.planner_loading import load_planner

    if not any(b in ("onnxruntime", "tensorrt") for b in args.backends):
        return {}, ""
    t0 = time.perf_counter()
    loaded = load_planner(args.checkpoint) if args.checkpoint else load_planner(model_config=yaml_path)
    onnx_path = export_onnx(loaded, tmp / yaml_path.stem).onnx_path
    note = f"ONNX export + parity check {time.perf_counter() - t0:.0f} s"
    log.info("%s: %s", yaml_path.stem, note)
    return {"fp32": onnx_path}, note


def _measure_cell(pipeline: Pipeline, case: BenchCase, note: str, iters: int) -> Row:
    """Build one pipeline on one backend and time ``iters`` frames (a row saying why, when it is unavailable)."""
    import numpy as np

    from dima_core.export.errors import BackendUnavailableError

    row = Row(case.config_name, pipeline.name, case.backend_name, "", precision=case.precision, note=note)
    if case.notes:
        row.note = "; ".join(case.notes)
        print(f"{case.config_name} {pipeline.name} {case.backend_name} {case.precision}: {row.note}")
        return row
    try:
        frame, row.description = pipeline.build(case)
    except BackendUnavailableError as exc:
        row.note = f"not available: {exc}"
        print(f"{case.config_name} {pipeline.name} {case.backend_name}: {row.note}")
        return row
    row.accuracy = case.accuracy_cost
    wall, cpu = _measure(frame, iters)
    times = np.array(wall)
    row.p50, row.p99 = float(np.percentile(times, 50)), float(np.percentile(times, 99))
    row.mean, row.iters = float(times.mean()), len(times)
    row.cpu_p50 = float(np.percentile(cpu, 50))
    accuracy = "" if row.accuracy is None else f"; {row.accuracy.summary()}"
    print(
        f"{case.config_name} {pipeline.name} {row.description}: p50 {row.p50:.1f} ms, "
        f"p99 {row.p99:.1f} ms, CPU p50 {row.cpu_p50:.1f} ms ({row.iters} frames){accuracy}"
    )
    return row  # the frame (and its model) is released here, before the next cell loads its own


def _measure_ros_cell(case: BenchCase, args: argparse.Namespace) -> RosRow:
    """One ``ros`` cell (:func:`_run_ros`), with its one-line summary printed."""
    if case.notes:
        return RosRow(case.config_name, f"{case.backend_name} {case.precision}", note="; ".join(case.notes))
    ros_row = _run_ros(case, args)
    if ros_row.result is None:
        print(f"{case.config_name} ros {case.backend_name}: {ros_row.note}")
        return ros_row
    summary = ros_row.result.summary()
    print(
        f"{case.config_name} ros {ros_row.description}: pipeline p50 {summary['pipeline']['p50']:.1f} ms, "
        f"model p50 {summary['model']['p50']:.1f} ms, ROS overhead p50 "
        f"{summary['overhead']['p50']:.1f} ms / p99 {summary['overhead']['p99']:.1f} ms "
        f"({ros_row.result.frames_planned} frames)"
    )
    return ros_row


def _ros_table(args: argparse.Namespace, ros_rows: list[RosRow]) -> list[str]:
    from dima_core.constants import CAMERA_NAMES

    def pair(values: dict[str, float | None]) -> str:
        return "-" if values["p50"] is None else f"{values['p50']:.1f} / {values['p99']:.1f}"

    w, h = args.ros_image_size
    lines = [
        "",
        "### ROS overhead (`ros` pipeline: the planner node over DDS)",
        "",
        f"The real planner node in its own process (shipped `config/planner_node.yaml`, only the model changed), fed "
        f"by a separate publisher node at {args.ros_rate:g} Hz: {len(CAMERA_NAMES)} `CompressedImage` JPEG cameras "
        f"({w}x{h}, quality {args.ros_jpeg_quality}) + CameraInfo, odometry, acceleration, command, all stamped "
        "with the wall time the frame's publishing starts. Per frame (p50 / p99 ms): **pipeline** = trajectory "
        "received by the publisher's node - frame stamp; **input** = the node's worker starts on the frame - stamp "
        "(publishing, DDS transport, callbacks, synchronisation); **node latency** = the node's "
        "`~/debug/pipeline_latency_ms` (after all its outputs are published); **processing** = its "
        "`~/debug/processing_time_ms` (decode + "
        "preprocess + model + publish); **model** = the backend call alone; **ROS overhead** = pipeline - model of "
        "the same frame (JPEG transport and decoding, preprocessing, synchronisation, output publishing and "
        "transport). Frames without a trajectory (dropped by the node because it was still busy, or incomplete) are "
        "counted, not timed; the note gives the node's own counters and the middleware.",
        "",
        "| config | backend | JPEG KiB | frames planned / sent | pipeline | input | node latency | processing | "
        "model | ROS overhead | note |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in ros_rows:
        if r.result is None:
            lines.append(f"| {r.config} | {r.backend} | - | - | - | - | - | - | - | - | {r.note} |")
            continue
        res, sm = r.result, r.result.summary()
        lines.append(
            f"| {r.config} | {r.description} | {res.jpeg_kib:.0f} | {res.frames_planned} / "
            f"{res.frames_sent} | {pair(sm['pipeline'])} | {pair(sm['input'])} | {pair(sm['node_latency'])} | "
            f"{pair(sm['processing'])} | {pair(sm['model'])} | **{pair(sm['overhead'])}** | {r.note} |"
        )
    return lines


def _report(args: argparse.Namespace, rows: list[Row], load_before: float, ros_rows: list[RosRow] | None = None) -> str:
    import onnxruntime
    import torch

    from benchmarks.synth import machine

    def ms(v: float | None) -> str:
        return "-" if v is None else f"{v:.1f}"

    weights = (
        f"the weights of `{args.checkpoint}`" if args.checkpoint else "random weights; latency does not depend on them"
    )
    intro = (
        f"Per-frame latency at batch 1 ({weights}). A frame = `backend.infer(inputs)`: input validation, copies, "
        "the model; image decoding not included. p99 over few frames is close to the maximum. **CPU ms** = the "
        "calling thread's CPU time per frame (p50): with one backend thread, the model's compute, which other "
        "jobs on a shared machine do not inflate (wall time includes waiting for a core)."
    )
    if args.accuracy_data:
        intro += (
            " **max traj diff** = the largest waypoint distance (m) of the planned trajectory from torch fp32's "
            "on the same frames, **L2 change** = open-loop L2 (VAD average, m) minus torch fp32's: "
            f"{args.accuracy_frames} val frames of `{args.accuracy_data}`, torch fp32 on the cpu as the "
            f"reference; int8 calibrated on {args.calibration_frames} train frames."
        )
    lines = [SECTION, "", intro, ""]
    if rows:
        lines += [
            "| config | pipeline | backend | precision | p50 ms | p99 ms | mean ms | CPU ms | frames | "
            "max traj diff m | L2 change m | note |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
    for r in rows:
        diff, change = precision_bench.accuracy_cells(r.accuracy)
        lines.append(
            f"| {r.config} | {r.pipeline} | {r.description or r.backend} | {r.precision} | {ms(r.p50)} | "
            f"{ms(r.p99)} | {ms(r.mean)} | {ms(r.cpu_p50)} | {r.iters} | {diff} | {change} | {r.note} |"
        )
    if ros_rows:
        lines += _ros_table(args, ros_rows)
    argv = sys.argv[1:]
    shown = (
        ("dima " + " ".join(shlex.quote(a) for a in argv))
        if argv[:2] == ["bench", "latency"]
        else ("dima bench latency")
    )
    has_gpu = torch.cuda.is_available()
    gpu = torch.cuda.get_device_name(0) if has_gpu else "none"
    lines += [
        "",
        f"- command: `{shown}`",
        f"- machine: {machine()}; GPU: {gpu}; threads per backend: {args.threads or 'library default'}; 1-min load "
        f"average at start {load_before:.1f} (a shared machine inflates wall-clock figures)",
        f"- software: Python {platform.python_version()}, torch {torch.__version__}, onnxruntime "
        f"{onnxruntime.__version__}",
        "- teacher modes (mllm, dual): the planner plus the LLM forward on its BEAM tokens; the teacher only fits "
        "configs whose sizes match config/mllm/smollm2_135m.yaml (dima_tiny)",
        "- not measured yet: torch.compile / CUDA graphs"
        + (
            ""
            if any(r.result is not None for r in ros_rows or [])
            else "; ROS overhead (run with `--pipelines ... ros` in the ROS environment)"
        )
        + ("" if has_gpu else "; no GPU on this machine, so no CUDA or TensorRT figures"),
        "",
    ]
    return "\n".join(lines)


def _update_doc(path: str, section: str) -> None:
    """Replace this benchmark's section of ``path`` (up to the next '## ' heading), or append it."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    start = text.find(SECTION)
    if start >= 0:
        end = text.find("\n## ", start + len(SECTION))
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")
    os.replace(tmp, path)


__all__ = ["PIPELINES", "Pipeline", "ROS_PIPELINE", "BenchCase", "RosRow", "add_parser", "run"]
