"""``tools/gpu_bench.sh`` / ``dima bench gpu`` (benchmarks/gpu.py, benchmarks/gpu_runtimes.py) on a machine without
a GPU: the table writer, the ``not installed`` cells, the quick no-CUDA exit, and every cell that makes sense on a
CPU run through the benchmark's own code with a tiny iteration count (eager fp32 / bf16, onnxruntime,
``torch.compile``, the ROS node), so the GPU script is not dead code here. The CUDA-only parts (CUDA graphs, the
whole run on cuda) are ``gpu`` tests: skipped with the reason when torch sees no CUDA device."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks import gpu
from benchmarks.gpu import CellResult, GpuCell, RunInfo

REPO_ROOT = Path(__file__).resolve().parents[1]
PLANNER = "planner_drive"


def _info() -> RunInfo:
    return RunInfo(
        command="tools/gpu_bench.sh out.md",
        device="cuda",
        gpu="NVIDIA H200 (compute capability 9.0)",
        versions="driver 580.1 (CUDA 13.0)",
        software="Python 3.12, torch 2.11",
        machine="x86, 16 cores",
        started="2026-12-03 10:00 UTC",
        load_1min=0.5,
        settings="50 timed frames",
        wall_s=12.0,
    )


def _rows(text: str) -> list[list[str]]:
    """The table's data rows as cells (header and separator dropped)."""
    lines = [ln for ln in text.splitlines() if ln.startswith("| ")]
    assert lines[0].startswith("| model | runtime |")
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in lines[1:]]


def test_table_writer_formats_rows_header_and_pending_cells(tmp_path: Path) -> None:
    measured = CellResult(
        GpuCell("vad_tiny", gpu.EAGER, "torch", "bf16"),
        "cuda",
        p50=12.345,
        p99=20.0,
        frames=50,
        note="torch bf16 autocast on cuda",
        seconds=3.2,
    )
    absent = CellResult(GpuCell("vad_tiny", gpu.TRT, "tensorrt", "fp16"), "cuda", note="not installed: tensorrt")
    broken = CellResult(GpuCell(PLANNER, gpu.COMPILE, "torch", "bf16"), "cuda", note="failed: a | b\nc", failed=True)
    pending = [GpuCell(PLANNER, gpu.ROS, "torch", "bf16")]
    out = tmp_path / "nested" / "gpu_bench.md"
    gpu.write_table(out, gpu.render_table(_info(), [measured, absent, broken], pending, pending_note="budget spent"))

    text = out.read_text()
    assert text.startswith(gpu.TITLE)
    for line in (
        "- command: `tools/gpu_bench.sh out.md`",
        "GPU: NVIDIA H200 (compute capability 9.0)",
        "- versions: driver 580.1 (CUDA 13.0)",
        "1-min load average at start 0.5",
        "wall time 12 s",
    ):
        assert line in text
    rows = _rows(text)
    assert len(rows) == 4 and all(len(r) == 10 for r in rows)  # a '|' inside a note must not add a column
    assert rows[0] == [
        "vad_tiny (random weights)",
        "torch eager",
        "torch",
        "bf16",
        "cuda",
        "12.35",
        "20.00",
        "50",
        "3",
        "torch bf16 autocast on cuda",
    ]
    assert rows[1][5:8] == ["-", "-", "0"] and rows[1][9] == "not installed: tensorrt"
    assert rows[2][0] == "planner_drive (dima_cpu_fast, shipped weights)" and rows[2][9] == "failed: a \\| b c"
    assert rows[3][1] == "ROS node" and rows[3][9] == "not run: budget spent"
    assert [p.name for p in out.parent.iterdir()] == ["gpu_bench.md"]  # the atomic write left no temporary file


def test_plan_cells_puts_cheap_cells_first() -> None:
    cells = gpu.plan_cells(
        ["vad_tiny", PLANNER], ["fp32", "bf16", "fp16"], ["bf16"], ["fp16", "fp32"], ["torch", "tensorrt"], "bf16"
    )
    runtimes = [c.runtime for c in cells]
    assert runtimes.index(gpu.COMPILE) > max(i for i, r in enumerate(runtimes) if r in (gpu.EAGER, gpu.GRAPH))
    assert runtimes[-4:] == [gpu.ROS] * 4
    assert GpuCell(PLANNER, gpu.ROS, "tensorrt", "fp16") in cells
    assert len(cells) == 2 * (3 + 3 + 1 + 2 + 1 + 2)


def test_absent_backends_are_not_installed_cells() -> None:
    import onnxruntime

    trt = gpu.missing_package(GpuCell("vad_tiny", gpu.TRT, "tensorrt", "fp16"), "cuda")
    if gpu._importable("tensorrt"):
        assert trt is None
    else:
        assert trt is not None and trt.startswith("not installed: the tensorrt Python package")
    ort = gpu.missing_package(GpuCell("vad_tiny", gpu.ORT, "onnxruntime", "fp32"), "cuda")
    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        assert ort is None
    else:
        assert ort is not None and ort.startswith("not installed: onnxruntime-gpu")
    assert gpu.missing_package(GpuCell("vad_tiny", gpu.ORT, "onnxruntime", "fp32"), "cpu") is None
    # A GPU-only runtime on the cpu, and a precision the backend lacks there, are 'not available' with the reason.
    assert "needs a CUDA device" in gpu.unavailable(GpuCell(PLANNER, gpu.GRAPH, "torch", "fp32"), "cpu")
    assert "no fp16 on cpu" in gpu.unavailable(GpuCell(PLANNER, gpu.EAGER, "torch", "fp16"), "cpu")
    assert gpu.unavailable(GpuCell(PLANNER, gpu.EAGER, "torch", "bf16"), "cpu") is None


_WITHOUT_ROS = """
import json, sys
class NoRos:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("rclpy", "dima"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None
sys.meta_path.insert(0, NoRos())
from benchmarks import gpu
print(json.dumps(gpu.missing_package(gpu.GpuCell("vad_tiny", gpu.ROS, "torch", "bf16"), "cuda")))
"""


def test_ros_cells_without_rclpy_say_not_installed() -> None:
    env = dict(os.environ, PYTHONPATH=f"{REPO_ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    proc = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ROS], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    note = json.loads(proc.stdout.strip().splitlines()[-1])
    assert note.startswith("not installed: rclpy (ROS 2) does not import")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def test_script_exits_quickly_without_cuda(tmp_path: Path) -> None:
    if _has_cuda():
        pytest.skip("a CUDA device is visible: the no-CUDA exit cannot be observed here")
    out = tmp_path / "gpu_bench.md"
    t0 = time.monotonic()
    proc = subprocess.run(
        ["bash", str(REPO_ROOT / "tools" / "gpu_bench.sh"), str(out)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no CUDA device present" in proc.stderr and "Nothing was measured" in proc.stderr
    assert "tried " in proc.stderr  # it names what it tried (the .venv's CPU torch)
    assert not out.exists()
    assert time.monotonic() - t0 < 120  # interpreter probes only, no model work

    # The benchmark itself refuses cuda the same way (dima bench gpu without tools/gpu_bench.sh), writing nothing.
    assert gpu.main(["--out", str(out)]) == gpu.NO_CUDA_STATUS
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_every_cpu_cell_runs_through_the_benchmark(tmp_path: Path) -> None:
    """The shipped planner on the cpu, 2 frames a cell: eager fp32 / bf16, onnxruntime (its ONNX export), and
    torch.compile (dynamo's ``eager`` backend: the same capture without building kernels on this small machine)
    are measured; fp16, CUDA graphs and TensorRT say why they are not here. The ROS node has its own test."""
    out = tmp_path / "gpu_bench.md"
    status = gpu.main(
        [
            "--device",
            "cpu",
            "--models",
            PLANNER,
            "--iters",
            "2",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--compile-precisions",
            "fp32",
            "--compile-backend",
            "eager",
            "--ros-backends",
            "--out",
            str(out),
        ]
    )
    assert status == 0, out.read_text()
    rows = {(r[1], r[3]): r for r in _rows(out.read_text())}
    assert set(rows) == {
        (gpu.EAGER, "fp32"),
        (gpu.EAGER, "bf16"),
        (gpu.EAGER, "fp16"),
        (gpu.GRAPH, "fp32"),
        (gpu.GRAPH, "bf16"),
        (gpu.GRAPH, "fp16"),
        (gpu.ORT, "fp32"),
        (gpu.TRT, "fp16"),
        (gpu.TRT, "fp32"),
        (gpu.COMPILE, "fp32"),
    }
    for key, described in (
        ((gpu.EAGER, "fp32"), "torch on cpu"),
        ((gpu.EAGER, "bf16"), "torch bf16 autocast"),
        ((gpu.ORT, "fp32"), "onnxruntime on cpu"),
        ((gpu.COMPILE, "fp32"), "torch.compile (eager) fp32 on cpu"),
    ):
        row = rows[key]
        assert row[4] == "cpu" and row[7] == "2", row
        assert 0.0 < float(row[5]) <= float(row[6]), row
        assert row[9].startswith(described), row
    assert rows[(gpu.EAGER, "fp16")][9].startswith("not available: torch has no fp16 on cpu")
    for precision in ("fp32", "bf16", "fp16"):
        assert "needs a CUDA device" in rows[(gpu.GRAPH, precision)][9]
    if not gpu._importable("tensorrt"):
        assert rows[(gpu.TRT, "fp16")][9].startswith("not installed")
    assert "not run" not in out.read_text()


@pytest.mark.ros
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ros_node_cell_runs_on_cpu(tmp_path: Path) -> None:
    """The ROS node row's code: the shipped planner in the real node over DDS (torch on the cpu here; on a GPU
    machine the same cell runs the node on cuda)."""
    import argparse

    from ros_helpers.testing import require_ros

    require_ros()
    from benchmarks.gpu_runtimes import CompileOptions

    ros_args = argparse.Namespace(
        iters=3, ros_rate=2.0, ros_image_size=(320, 180), ros_jpeg_quality=90, ros_dds_profile=None
    )
    runner = gpu.Runner(
        "cpu",
        iters=2,
        warmup=1,
        threads=1,
        compile_options=CompileOptions(),
        ros_args=ros_args,
        engine_dir=None,
        work_dir=tmp_path,
    )
    result = runner.run(GpuCell(PLANNER, gpu.ROS, "torch", "fp32"))
    assert not result.failed and result.p50 is not None, result.note
    assert 2 <= result.frames <= 9
    assert 0.0 < result.p50 <= result.p99
    assert result.note.startswith("end to end over DDS (node: torch on cpu); model p50"), result.note
    assert "six 320x180 JPEGs" in result.note and "at 2 Hz" in result.note


def test_device_constants_serve_recorded_tensors_and_refuse_unseen_ones() -> None:
    """The mechanism that lets the CUDA-graph cell capture the eager planner: the forward's torch.tensor(<numbers>)
    constants are recorded in the warm-up and served (the same tensors, no new copies) while replaying; the outputs
    do not change. Checked on the cpu with the shipped planner's module."""
    import numpy as np
    import torch

    from benchmarks.gpu_runtimes import DeviceConstants
    from dima_core.export.backends import create_backend
    from dima_core.export.io_spec import example_inputs, validate_inputs
    from dima_core.export.planner_module import positional_args

    backend = create_backend(
        backend="torch", device="cpu", threads=1, warmup_iters=0, checkpoint=str(gpu.MODELS[PLANNER].checkpoint)
    )
    feeds = validate_inputs(
        example_inputs(backend.model_config, backend.input_specs, seed=1), backend.input_specs, "test"
    )
    args = positional_args(feeds, "cpu")[1]
    constants = DeviceConstants()
    with torch.inference_mode():
        reference = backend.module(*args)
        with constants.record():
            recorded = backend.module(*args)
        kept = dict(constants.tensors)
        with constants.replay():
            replayed = backend.module(*args)
    assert kept, "the planner builds no torch.tensor constants: the CUDA-graph workaround has nothing to do"
    assert constants.served >= len(kept)
    assert constants.tensors.keys() == kept.keys()  # nothing new was built while replaying
    assert all(constants.tensors[k] is v for k, v in kept.items())
    for a, b, c in zip(reference, recorded, replayed, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
        np.testing.assert_array_equal(a.numpy(), c.numpy())
    with pytest.raises(RuntimeError, match="was not seen during the warm-up"), DeviceConstants().replay():
        torch.tensor([1.0, 2.0])
    with DeviceConstants().replay():  # not plain numbers: passes through
        assert torch.tensor(np.float32(3.0)).item() == 3.0


@pytest.mark.gpu
def test_cuda_graph_matches_the_eager_backend_on_cuda() -> None:
    import numpy as np

    from benchmarks.gpu_runtimes import CudaGraphPlanner
    from dima_core.export.backends import create_backend
    from dima_core.export.io_spec import example_inputs

    for precision in ("fp32", "bf16"):
        backend = create_backend(
            backend="torch",
            device="cuda",
            warmup_iters=1,
            precision=precision,
            checkpoint=str(gpu.MODELS[PLANNER].checkpoint),
        )
        graph = CudaGraphPlanner(backend, example_inputs(backend.model_config, backend.input_specs, seed=0))
        for seed in (1, 2):  # new inputs into the same static tensors
            inputs = example_inputs(backend.model_config, backend.input_specs, seed=seed)
            eager, replayed = backend.infer(inputs), graph.infer(inputs)
            tol = 1e-4 if precision == "fp32" else 5e-2
            np.testing.assert_allclose(replayed["trajectory"], eager["trajectory"], atol=tol, rtol=0)


@pytest.mark.gpu
@pytest.mark.timeout(600)
def test_whole_run_on_cuda_writes_every_cell(tmp_path: Path) -> None:
    out = tmp_path / "gpu_bench.md"
    status = gpu.main(
        [
            "--models",
            PLANNER,
            "--iters",
            "3",
            "--warmup",
            "1",
            "--compile-precisions",
            "--ros-backends",
            "--out",
            str(out),
        ]
    )
    assert status == 0, out.read_text()
    rows = _rows(out.read_text())
    measured = [r for r in rows if r[5] != "-"]
    assert {(r[1], r[3]) for r in measured} >= {
        (gpu.EAGER, "fp32"),
        (gpu.EAGER, "bf16"),
        (gpu.EAGER, "fp16"),
        (gpu.GRAPH, "fp32"),
        (gpu.GRAPH, "bf16"),
        (gpu.GRAPH, "fp16"),
    }
    assert all(r[4] == "cuda" for r in measured)
