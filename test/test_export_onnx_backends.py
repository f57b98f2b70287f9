"""`dima export --format onnx` from a checkpoint (sidecar, parity), the torch/onnxruntime backends agreeing on the same
frame, input validation, sidecar mismatches, and clear errors for backends this machine cannot run.

One micro-planner checkpoint and one export per module keep this file to a few seconds of model work.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from dima_core.cli import main as dima_main
from dima_core.config import config_to_dict
from dima_core.export import (
    BackendUnavailableError,
    InputValidationError,
    SidecarError,
    create_backend,
    load_sidecar,
    unavailable_reason,
)
from dima_core.export.io_spec import example_inputs
from dima_core.export.planner_loading import load_planner
from dima_core.export.sidecar import file_sha256
from dima_core.io.checkpoint import save_checkpoint

pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A micro-planner training checkpoint (real format) and its `dima export --format onnx`."""
    from training_fixtures import write_micro_model_config

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("export")
    loaded = load_planner(model_config=write_micro_model_config(root), seed=3)
    ckpt = save_checkpoint(
        {
            "stage": 1,
            "epoch": 0,
            "epoch_step": 0,
            "step": 5,
            "model": loaded.model.state_dict(),
            "optimizer": {},
            "scheduler": {},
            "scaler": {},
            "rng": [],
            "sampler": {},
            "config": {},
            "model_config": config_to_dict(loaded.config),
        },
        root / "run" / "checkpoint_step00000005.pt",
    )
    out = root / "models"
    assert dima_main(["export", "--format", "onnx", "--checkpoint", str(ckpt), "--out", str(out)]) == 0
    return {"checkpoint": ckpt, "onnx": out / "micro_test.onnx", "root": root}


def test_export_writes_checked_model_and_sidecar_with_parity(exported):
    onnx = pytest.importorskip("onnx")
    path = exported["onnx"]
    onnx.checker.check_model(str(path))
    sidecar = load_sidecar(path)  # verifies format version and sha256
    raw = json.loads((path.parent / "micro_test.onnx.json").read_text())
    assert raw["onnx_sha256"] == file_sha256(path) and raw["opset"] == 17 and raw["dima_version"]
    assert raw["model_config"]["name"] == "micro_test" and raw["source"]["step"] == 5
    assert sidecar.input_names == ("images", "intrinsics", "cam_to_ego", "command")  # ego_status pruned
    assert sidecar.inputs[0].shape == (1, 6, 3, 32, 64) and sidecar.inputs[-1].dtype == "int64"
    assert sidecar.output_names == ("trajectory", "trajectories")
    assert [s.shape for s in sidecar.outputs] == [(1, 6, 2), (1, 3, 6, 2)]
    parity = sidecar.parity
    assert parity["passed"] and {"random_seed0", "random_seed1"} <= set(parity)
    assert max(parity["max_abs_error"].values()) < 1e-4


def test_onnxruntime_backend_matches_torch_backend(exported):
    ort_backend = create_backend(backend="onnxruntime", onnx=str(exported["onnx"]), threads=1, warmup_iters=1)
    torch_backend = create_backend(backend="torch", checkpoint=str(exported["checkpoint"]), threads=1, warmup_iters=1)
    assert ort_backend.input_specs == torch_backend.input_specs
    assert ort_backend.output_names == torch_backend.output_names
    assert (ort_backend.name, ort_backend.device) == ("onnxruntime", "cpu")
    frame = example_inputs(torch_backend.model_config, torch_backend.input_specs, seed=7)
    got, want = ort_backend.infer(frame), torch_backend.infer(frame)
    for name in want:
        assert got[name].shape == want[name].shape
        assert np.abs(got[name] - want[name]).max() < 1e-4, name
    # the command input is live: a different command selects that command's mode
    frame["command"] = np.array([0], dtype=np.int64)
    assert np.allclose(ort_backend.infer(frame)["trajectory"], got["trajectories"][:, 0], atol=1e-5)

    bad_shape = dict(frame, images=frame["images"][:, :5])
    with pytest.raises(InputValidationError, match="'images' has shape"):
        ort_backend.infer(bad_shape)
    nan = dict(frame, cam_to_ego=frame["cam_to_ego"].copy())
    nan["cam_to_ego"][0, 2, 0, 3] = np.nan
    with pytest.raises(InputValidationError, match="'cam_to_ego' contains 1 NaN"):
        torch_backend.infer(nan)
    with pytest.raises(InputValidationError, match="missing \\['command'\\]"):
        ort_backend.infer({k: v for k, v in frame.items() if k != "command"})
    with pytest.raises(InputValidationError, match="dtype float32"):
        ort_backend.infer(dict(frame, command=np.array([0.0], dtype=np.float32)))


def test_sidecar_mismatches_are_clear_errors(exported, tmp_path):
    onnx_path = tmp_path / "m.onnx"
    shutil.copy(exported["onnx"], onnx_path)
    sidecar_file = tmp_path / "m.onnx.json"
    original = json.loads((exported["onnx"].parent / "micro_test.onnx.json").read_text())

    with pytest.raises(SidecarError, match="missing"):
        create_backend(backend="onnxruntime", onnx=str(onnx_path))

    wrong_shape = json.loads(json.dumps(original))
    wrong_shape["inputs"][0]["shape"] = [1, 6, 3, 64, 128]
    sidecar_file.write_text(json.dumps(wrong_shape))
    with pytest.raises(SidecarError, match="different model interface"):
        create_backend(backend="onnxruntime", onnx=str(onnx_path), warmup_iters=0)

    wrong_hash = dict(original, onnx_sha256="0" * 64)
    sidecar_file.write_text(json.dumps(wrong_hash))
    with pytest.raises(SidecarError, match="sha256"):
        create_backend(backend="onnxruntime", onnx=str(onnx_path))

    sidecar_file.write_text(json.dumps(dict(original, format_version=99)))
    with pytest.raises(SidecarError, match="format version 99"):
        create_backend(backend="onnxruntime", onnx=str(onnx_path))


def test_unavailable_backends_are_clear_errors_never_fallbacks(exported):
    try:
        import tensorrt  # noqa: F401

        has_trt = True
    except ImportError:
        has_trt = False
    if has_trt and torch.cuda.is_available():
        pytest.skip("tensorrt and a GPU are present: the unavailable-backend path cannot be exercised here")
    with pytest.raises(BackendUnavailableError) as info:
        create_backend(backend="tensorrt", onnx=str(exported["onnx"]))
    message = str(info.value)
    assert "tensorrt" in message and ("pip install '.[tensorrt]'" in message or "CUDA GPU" in message)
    assert dima_main(["export", "--format", "tensorrt", "--onnx", str(exported["onnx"]), "--build-only"]) == 2

    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailableError, match="no CUDA GPU"):
            create_backend(backend="torch", checkpoint=str(exported["checkpoint"]), device="cuda")
    import onnxruntime

    if "CUDAExecutionProvider" not in onnxruntime.get_available_providers():
        assert "onnxruntime-gpu" in unavailable_reason("onnxruntime", "cuda")
    with pytest.raises(ValueError, match="unknown|must be one of"):
        create_backend(backend="openvino", onnx=str(exported["onnx"]))


def test_tensorrt_backend_matches_onnxruntime(exported, tmp_path):
    pytest.importorskip("tensorrt", reason="tensorrt is not installed (pip install '.[tensorrt]')")
    if not torch.cuda.is_available():
        pytest.skip("TensorRT needs a CUDA GPU; torch sees none")
    ort_backend = create_backend(backend="onnxruntime", onnx=str(exported["onnx"]), warmup_iters=0)
    trt_backend = create_backend(
        backend="tensorrt", onnx=str(exported["onnx"]), precision="fp32", engine_dir=str(tmp_path), warmup_iters=2
    )
    assert trt_backend.artifact.decision.action == "build"
    frame = example_inputs(ort_backend.model_config, ort_backend.input_specs, seed=7)
    got, want = trt_backend.infer(frame), ort_backend.infer(frame)
    for name in want:
        assert np.abs(got[name] - want[name]).max() < 1e-2, name
    again = create_backend(
        backend="tensorrt", onnx=str(exported["onnx"]), precision="fp32", engine_dir=str(tmp_path), warmup_iters=0
    )
    assert again.artifact.decision.action == "hit"
