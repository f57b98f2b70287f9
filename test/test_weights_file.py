"""Planner weights files (safetensors): export from a checkpoint, load everywhere a checkpoint loads, and a clear
error for every way such a file can be wrong (missing, truncated, foreign, edited, another config)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch

from dima_core.cli import main as dima_main
from dima_core.config import config_to_dict
from dima_core.io.checkpoint import CheckpointError, save_checkpoint
from dima_core.models import VisionPlanner, load_model_config
from dima_core.models.dima import load_dima
from dima_core.models.dummy_inputs import dummy_inputs
from dima_core.models.weights_file import (
    SHIPPED_PLANNER,
    WeightsFileError,
    check_expected_config,
    read_planner_weights,
    save_planner_weights,
)

REPO = Path(__file__).resolve().parents[1]
MODEL_YAML = REPO / "config" / "model" / "dima_cpu_fast.yaml"


@pytest.fixture(scope="module")
def planner() -> VisionPlanner:
    torch.manual_seed(3)
    return VisionPlanner(load_model_config(MODEL_YAML)).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory, planner: VisionPlanner) -> Path:
    path = tmp_path_factory.mktemp("run") / "checkpoint_step00000007.pt"
    state = {
        "stage": 1,
        "epoch": 0,
        "epoch_step": 7,
        "step": 7,
        "model": planner.state_dict(),
        "optimizer": {},
        "scheduler": {},
        "scaler": {},
        "rng": [],
        "sampler": {},
        "config": {"epochs": 3},
        "model_config": config_to_dict(planner.config),
    }
    return save_checkpoint(state, path)


def plan(model: VisionPlanner) -> torch.Tensor:
    with torch.no_grad():
        return model(**dummy_inputs(model.config, batch=2, seed=5)).trajectory


def test_export_command_writes_a_file_that_plans_as_the_checkpoint(tmp_path, checkpoint, planner, capsys):
    out = tmp_path / "planner.safetensors"
    assert dima_main(["weights", "export", str(checkpoint), "--out", str(out), "--note", "data=unit-test"]) == 0
    assert "outputs equal the checkpoint's" in capsys.readouterr().out
    loaded = load_dima(out, mode="vision")
    assert loaded.step == 7 and loaded.stage == 1
    assert torch.equal(plan(loaded.model.planner), plan(planner))
    weights = read_planner_weights(out)
    assert weights.source["data"] == "unit-test" and weights.source["step"] == 7
    assert weights.model_config == config_to_dict(planner.config)
    # No optimiser state: the file is the planner's float32 tensors (4 bytes each) plus a small header.
    values = sum(v.numel() for v in planner.state_dict().values())
    assert values * 4 < out.stat().st_size < values * 4 + 200_000
    assert dima_main(["weights", "show", str(out)]) == 0
    assert "dima_cpu_fast" in capsys.readouterr().out


def test_a_weights_file_has_no_teacher(tmp_path, planner):
    path = save_planner_weights(tmp_path / "p.safetensors", planner.state_dict(), config_to_dict(planner.config))
    with pytest.raises(CheckpointError, match="planner weights file .* mode 'mllm' needs a stage-2"):
        load_dima(path, mode="mllm")


def test_missing_empty_and_truncated_files_are_clear_errors(tmp_path, planner):
    with pytest.raises(WeightsFileError, match="does not exist"):
        load_dima(tmp_path / "nothing.safetensors")
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    with pytest.raises(WeightsFileError, match="empty"):
        read_planner_weights(empty)
    good = save_planner_weights(tmp_path / "good.safetensors", planner.state_dict(), config_to_dict(planner.config))
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(WeightsFileError, match="corrupt or truncated"):
        load_dima(cut)


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    from safetensors.torch import save_file

    foreign = tmp_path / "model.safetensors"
    save_file({"weight": torch.zeros(2, 2)}, str(foreign), metadata={"format": "pt"})
    with pytest.raises(WeightsFileError, match="not DiMA planner weights"):
        load_dima(foreign)


def rewrite_header(path: Path, edit) -> None:
    """Apply ``edit`` to the JSON header of a safetensors file in place (the tensors' bytes are kept)."""
    data = path.read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + length])
    edit(header)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data[8 + length :])


def test_an_edited_config_in_the_header_is_caught(tmp_path, planner):
    path = save_planner_weights(tmp_path / "p.safetensors", planner.state_dict(), config_to_dict(planner.config))

    def widen(header):
        config = json.loads(header["__metadata__"]["model_config"])
        config["embed_dim"] = 2 * config["embed_dim"]
        header["__metadata__"]["model_config"] = json.dumps(config)

    rewrite_header(path, widen)
    with pytest.raises(WeightsFileError, match="does not match its hash"):
        load_dima(path)


def test_tensors_from_another_config_do_not_load_silently(tmp_path, planner):
    other = load_model_config(REPO / "config" / "model" / "dima_cpu.yaml")
    path = save_planner_weights(tmp_path / "mixed.safetensors", planner.state_dict(), config_to_dict(other))
    with pytest.raises(CheckpointError, match="does not match this model"):
        load_dima(path)
    with pytest.raises(WeightsFileError, match="another model config .*image_size"):
        check_expected_config(path, config_to_dict(planner.config), config_to_dict(other))


def test_the_shipped_planner_loads_and_plans():
    """The weights file committed with the package (docs/planner_model_card.md) is readable and plans finite."""
    loaded = load_dima(SHIPPED_PLANNER, mode="vision")
    assert loaded.model_config.name == "dima_cpu_fast"
    trajectory = plan(loaded.model.planner)
    assert trajectory.shape[-1] == 2 and torch.isfinite(trajectory).all()
    assert read_planner_weights(SHIPPED_PLANNER).source["step"] > 0


def test_init_state_comes_from_a_weights_file_or_a_checkpoint(tmp_path, checkpoint, planner):
    """`dima train --init` (stage 1 and 2) reads either kind through load_weights_or_checkpoint."""
    from dima_core.models.weights_file import load_weights_or_checkpoint

    weights = save_planner_weights(
        tmp_path / "p.safetensors", planner.state_dict(), config_to_dict(planner.config), {"step": 7}
    )
    for path in (weights, checkpoint):
        file, state = load_weights_or_checkpoint(path)
        assert file == Path(path) and state["stage"] == 1 and state["step"] == 7
        assert all(torch.equal(state["model"][k], v) for k, v in planner.state_dict().items())
