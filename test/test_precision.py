"""Precisions of the planner backends, with real onnxruntime and torch on the micro planner and the session's small
synthetic world (data_fixtures): `dima export --precision int8` (static QDQ quantisation calibrated on the world's
train frames, gated on its val frames), the int8 sidecar, the runtime refusing a file of another precision, torch
bf16 autocast, and clear errors for precisions a format or backend does not have.

Tolerances (metres, the micro planner with seeded random weights; measured: int8 moves waypoints by ~1e-3 m, bf16
by ~1e-2 m): int8 within 0.05 m of the fp32 graph, bf16 within 0.1 m of torch fp32.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dima_core.cli import main as dima_main
from dima_core.config import ConfigError, config_from_dict
from dima_core.export import SidecarError, create_backend, load_sidecar
from dima_core.export.accuracy import accuracy_cost, predict
from dima_core.export.dataset_frames import FrameSource, load_frames, run_frame
from dima_core.export.precision import PrecisionError, backend_precisions
from dima_core.runtime.config import ModelParams

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

INT8_TOLERANCE_M = 0.05
BF16_TOLERANCE_M = 0.1
CALIBRATION_FRAMES = 4
HELD_OUT_FRAMES = 3


@pytest.fixture(scope="module")
def exported(synth_world, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """`dima export` of the micro planner (random weights, seed 3): the fp32 file, then its int8 quantisation."""
    from training_fixtures import write_micro_model_config

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("precision")
    model_yaml = write_micro_model_config(root)
    out = root / "models"
    assert (
        dima_main(["export", "--format", "onnx", "--model-config", str(model_yaml), "--seed", "3", "--out", str(out)])
        == 0
    )
    fp32 = out / "micro_test.onnx"
    assert (
        dima_main(
            [
                "export",
                "--format",
                "onnx",
                "--precision",
                "int8",
                "--onnx",
                str(fp32),
                "--out",
                str(out),
                "--calibration-data",
                str(synth_world.dataroot),
                "--calibration-frames",
                str(CALIBRATION_FRAMES),
                "--held-out-frames",
                str(HELD_OUT_FRAMES),
            ]
        )
        == 0
    )
    return {
        "root": root,
        "model_yaml": model_yaml,
        "fp32": fp32,
        "int8": out / "micro_test_int8.onnx",
        "world": synth_world.dataroot,
    }


def test_int8_export_records_its_precision_and_calibration(exported):
    onnx = pytest.importorskip("onnx")
    path = exported["int8"]
    onnx.checker.check_model(str(path))
    ops = {node.op_type for node in onnx.load(str(path)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops  # a real QDQ graph, not a copy of the fp32 one
    sidecar, fp32 = load_sidecar(path), load_sidecar(exported["fp32"])
    assert (sidecar.precision, fp32.precision) == ("int8", "fp32")
    assert sidecar.inputs == fp32.inputs and sidecar.outputs == fp32.outputs
    q = sidecar.quantization
    assert q["format"] == "QDQ" and q["per_channel"] is True and q["weight_type"] == "int8"
    assert q["op_types"] == ["Conv"] and q["calibration_method"] == "minmax"
    assert q["calibration_frames"] == CALIBRATION_FRAMES and len(q["calibration_tokens"]) == CALIBRATION_FRAMES
    assert len(q["held_out_tokens"]) == HELD_OUT_FRAMES
    assert not set(q["calibration_tokens"]) & set(q["held_out_tokens"])
    assert q["data"]["calibration_split"] == "train" and q["data"]["held_out_split"] == "val"
    assert q["fp32_source"]["onnx_sha256"] == fp32.onnx_sha256
    held_out = sidecar.parity["held_out"]
    assert sidecar.parity["passed"] and held_out["frames"] == HELD_OUT_FRAMES
    assert 0.0 < held_out["max_trajectory_diff_m"] <= sidecar.parity["trajectory_tolerance"]


def test_int8_backend_plans_within_tolerance_of_fp32(exported):
    fp32 = create_backend(backend="onnxruntime", onnx=str(exported["fp32"]), threads=1, warmup_iters=1)
    int8 = create_backend(
        backend="onnxruntime", onnx=str(exported["int8"]), precision="int8", threads=1, warmup_iters=1
    )
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    assert int8.describe() == "onnxruntime int8 on cpu" and fp32.describe() == "onnxruntime on cpu"
    frames = load_frames(fp32.model_config, FrameSource(str(exported["world"]), "val"), 3)
    reference = predict(fp32.infer, fp32.input_specs, frames)
    cost = accuracy_cost(reference, predict(int8.infer, int8.input_specs, frames), frames)
    assert cost.frames == 3 and 0.0 < cost.max_trajectory_diff_m < INT8_TOLERANCE_M
    assert cost.max_candidates_diff_m >= cost.max_trajectory_diff_m
    assert cost.l2_reference_m is not None and abs(cost.l2_change_m) <= cost.max_trajectory_diff_m
    same = accuracy_cost(reference, reference, frames)
    assert same.max_trajectory_diff_m == 0.0 and same.l2_change_m == 0.0


def test_runtime_refuses_a_model_file_of_another_precision(exported):
    with pytest.raises(PrecisionError, match="is a int8 model .* precision 'fp32' was configured"):
        create_backend(backend="onnxruntime", onnx=str(exported["int8"]), precision="fp32", warmup_iters=0)
    with pytest.raises(PrecisionError, match="is a fp32 model .*--precision int8"):
        create_backend(backend="onnxruntime", onnx=str(exported["fp32"]), precision="int8", warmup_iters=0)
    # auto runs the file as it is (its sidecar says what it is)
    assert create_backend(backend="onnxruntime", onnx=str(exported["int8"]), warmup_iters=0).precision == "int8"

    # The ROS node's parameters go through the same check.
    params = ModelParams(backend="onnxruntime", onnx_path=str(exported["int8"]), precision="fp32", warmup_iters=0)
    with pytest.raises(PrecisionError, match="model.precision"):
        create_backend(params.backend_config())


def test_int8_sidecar_must_carry_its_quantisation_record(exported, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    shutil.copy(exported["int8"], onnx_path)
    record = json.loads(exported["int8"].with_name("micro_test_int8.onnx.json").read_text())
    record.pop("quantization")
    (tmp_path / "m.onnx.json").write_text(json.dumps(record))
    with pytest.raises(SidecarError, match="without its quantization entry"):
        load_sidecar(onnx_path)
    (tmp_path / "m.onnx.json").write_text(json.dumps(dict(record, precision="int4")))
    with pytest.raises(SidecarError, match="precision 'int4'"):
        load_sidecar(onnx_path)


def test_torch_bf16_autocast_plans_close_to_fp32(exported):
    fp32 = create_backend(backend="torch", model_config=str(exported["model_yaml"]), seed=3, threads=1, warmup_iters=0)
    bf16 = create_backend(
        backend="torch", model_config=str(exported["model_yaml"]), seed=3, threads=1, warmup_iters=1, precision="bf16"
    )
    assert bf16.precision == "bf16" and bf16.describe() == "torch bf16 autocast on cpu"
    frames = load_frames(fp32.model_config, FrameSource(str(exported["world"]), "val"), 2)
    feeds, out = run_frame(frames[0], bf16.input_specs, bf16.infer)
    assert len(feeds) == 1 and all(v.dtype == np.float32 for v in out.values())
    cost = accuracy_cost(
        predict(fp32.infer, fp32.input_specs, frames), predict(bf16.infer, bf16.input_specs, frames), frames
    )
    # bf16 has an 8-bit mantissa: the plan moves, but by centimetres, not metres.
    assert 0.0 < cost.max_trajectory_diff_m < BF16_TOLERANCE_M


def test_temporal_model_calibrates_with_its_bev_state(exported, tmp_path):
    """A temporal planner: every frame is its previous keyframe (zero state), then itself with that BEV."""
    data = yaml.safe_load(exported["model_yaml"].read_text())
    data["name"] = "micro_temporal"
    data["bev"]["use_temporal"] = True
    model_yaml = tmp_path / "temporal.yaml"
    model_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    out = tmp_path / "models"
    assert (
        dima_main(
            [
                "export",
                "--format",
                "onnx",
                "--precision",
                "int8",
                "--model-config",
                str(model_yaml),
                "--out",
                str(out),
                "--calibration-data",
                str(exported["world"]),
                "--calibration-frames",
                "3",
                "--held-out-frames",
                "2",
            ]
        )
        == 0
    )
    sidecar = load_sidecar(out / "micro_temporal_int8.onnx")
    assert "prev_bev" in sidecar.input_names and sidecar.parity["passed"]
    # Three frames evenly spaced over a scene: the first has no previous keyframe, the others two feeds each.
    assert sidecar.quantization["calibration_feeds"] == 5
    backend = create_backend(
        backend="onnxruntime", onnx=str(out / "micro_temporal_int8.onnx"), threads=1, warmup_iters=0
    )
    frames = load_frames(backend.model_config, FrameSource(str(exported["world"]), "val"), 2)
    assert frames[0].previous_images is None and frames[1].previous_images is not None
    feeds, outputs = run_frame(frames[1], backend.input_specs, backend.infer)
    assert len(feeds) == 2 and np.abs(feeds[1]["prev_bev"]).sum() > 0.0 and np.isfinite(outputs["trajectory"]).all()


def test_bad_precisions_are_clear_errors(exported, capsys):
    with pytest.raises(SystemExit) as info:  # argparse: not a precision at all
        dima_main(
            [
                "export",
                "--format",
                "onnx",
                "--precision",
                "int4",
                "--model-config",
                str(exported["model_yaml"]),
                "--out",
                str(exported["root"] / "x"),
            ]
        )
    assert info.value.code == 2 and "invalid choice: 'int4'" in capsys.readouterr().err
    assert (
        dima_main(
            [
                "export",
                "--format",
                "onnx",
                "--precision",
                "bf16",
                "--model-config",
                str(exported["model_yaml"]),
                "--out",
                str(exported["root"] / "x"),
            ]
        )
        == 2
    )
    assert "bf16 needs no export: the torch backend runs it" in capsys.readouterr().err
    assert dima_main(["export", "--format", "tensorrt", "--precision", "int8", "--onnx", str(exported["fp32"])]) == 2
    assert "int8 runs on onnxruntime" in capsys.readouterr().err
    assert (
        dima_main(
            [
                "export",
                "--format",
                "onnx",
                "--precision",
                "int8",
                "--model-config",
                str(exported["model_yaml"]),
                "--out",
                str(exported["root"] / "x"),
            ]
        )
        == 2
    )
    assert "needs --calibration-data" in capsys.readouterr().err
    assert not (exported["root"] / "x").exists() or not any((exported["root"] / "x").iterdir())

    # Refused while the configuration is validated (ConfigError, a ValueError naming the field), before loading.
    with pytest.raises(ConfigError, match="has no precision 'bf16'"):
        create_backend(backend="onnxruntime", onnx=str(exported["fp32"]), precision="bf16")
    with pytest.raises(ConfigError, match="fp16 autocast needs cuda"):
        create_backend(backend="torch", model_config=str(exported["model_yaml"]), precision="fp16")
    with pytest.raises(ConfigError, match="int8 runs on onnxruntime"):
        create_backend(backend="tensorrt", onnx=str(exported["int8"]), precision="int8")
    with pytest.raises(ConfigError, match="precision"):
        config_from_dict({"precision": "int4"}, ModelParams, source="test")
    assert backend_precisions("torch", "cpu") == ("fp32", "bf16")
    assert backend_precisions("onnxruntime", "cpu") == ("fp32", "int8")
    assert backend_precisions("tensorrt") == ("fp32", "fp16")


def test_bench_latency_reports_each_precision_with_its_accuracy_cost(exported, tmp_path):
    """`dima bench latency --precisions ... --accuracy-data`: one row per (backend, precision) it has, each with its
    latency and its cost against torch fp32 on the world's val frames."""
    from benchmarks.precision import cell_precisions, check_requested

    assert cell_precisions("torch", ["auto", "bf16", "int8"], "cpu") == ["fp32", "bf16"]
    assert cell_precisions("onnxruntime", ["fp32", "int8", "fp32"], "cpu") == ["fp32", "int8"]
    assert cell_precisions("tensorrt", ["auto"], "cuda") == ["fp16"]
    with pytest.raises(ValueError, match="--precisions int8: none of the backends"):
        check_requested(["torch"], ["int8"], "cpu")

    doc = tmp_path / "bench.md"
    assert (
        dima_main(
            [
                "bench",
                "latency",
                "--configs",
                str(exported["model_yaml"]),
                "--backends",
                "torch",
                "onnxruntime",
                "--pipelines",
                "vision",
                "--precisions",
                "fp32",
                "int8",
                "--iters",
                "2",
                "--warmup",
                "1",
                "--accuracy-data",
                str(exported["world"]),
                "--accuracy-frames",
                "2",
                "--calibration-frames",
                "3",
                "--doc",
                str(doc),
            ]
        )
        == 0
    )
    rows = [line.split(" | ") for line in doc.read_text().splitlines() if line.startswith("| micro_model |")]
    cells = {(r[2], r[3]): r for r in rows}
    assert set(cells) == {("torch on cpu", "fp32"), ("onnxruntime on cpu", "fp32"), ("onnxruntime int8 on cpu", "int8")}
    for (backend, precision), r in cells.items():
        p50, cpu, diff = float(r[4]), float(r[7]), float(r[9])
        assert p50 > 0.0 and cpu > 0.0
        # torch fp32 is the reference itself; the fp32 export matches it to float rounding; int8 moves the plan a bit
        if backend == "torch on cpu":
            assert diff == 0.0
        elif precision == "fp32":
            assert diff < 1e-3
        else:
            assert 0.0 < diff < INT8_TOLERANCE_M
