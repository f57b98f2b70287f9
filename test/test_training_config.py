"""Training configs and options: the shipped YAMLs, command-line overrides, the precision policy, AMP on CUDA."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import pytest
import torch

from dima_core.config import ConfigError, load_config
from dima_core.training.config import TrainConfig
from dima_core.training.precision import resolve_precision
from training_fixtures import REPO_ROOT, build_tiny_trainer, tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.parametrize("name", ["stage1_dima_tiny", "stage1_vad_tiny"])
def test_shipped_configs_load_and_name_existing_model_configs(name: str) -> None:
    config = load_config(REPO_ROOT / "config" / "train" / f"{name}.yaml", TrainConfig)
    assert config.stage == 1
    assert (REPO_ROOT / config.model_config).is_file()
    assert config.optimizer.lr == pytest.approx(2e-4) and config.optimizer.weight_decay == pytest.approx(0.01)
    assert config.schedule.warmup_ratio == pytest.approx(1 / 3) and config.schedule.min_lr_ratio == 1e-3
    assert config.grad_clip_norm == 35.0


def test_vad_tiny_config_is_vads_recipe() -> None:
    config = load_config(REPO_ROOT / "config" / "train" / "stage1_vad_tiny.yaml", TrainConfig)
    assert (config.epochs, config.schedule.warmup_iters, config.data.batch_size) == (60, 500, 1)
    assert config.data.dataset.num_prev_frames == 2  # VAD-Tiny's queue of 3 frames


def test_command_line_overrides_are_validated(tmp_path: Path) -> None:
    from dima_core.commands.train import add_parser, resolve_config

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    base = ["train", "--stage", "1", "--config", "config/train/stage1_dima_tiny.yaml"]
    config = resolve_config(
        parser.parse_args(
            base
            + [
                "--out",
                str(tmp_path),
                "--epochs",
                "3",
                "--max-steps",
                "5",
                "--dataroot",
                "/data/w",
                "--val-split",
                "none",
            ]
        )
    )
    assert (config.output_dir, config.epochs, config.max_steps) == (str(tmp_path), 3, 5)
    assert config.data.dataset.dataroot == "/data/w" and config.data.val_split is None
    with pytest.raises(ConfigError, match="epochs.*must be >= 1"):
        resolve_config(parser.parse_args(base + ["--epochs", "0"]))
    with pytest.raises(ConfigError, match="either 'resume'.*or 'init'"):
        resolve_config(parser.parse_args(base + ["--resume", "a", "--init", "b"]))
    with pytest.raises(SystemExit):  # only stages 1 and 2 exist: argparse rejects any other
        parser.parse_args(["train", "--stage", "3", "--config", "x.yaml"])


def test_mixed_precision_on_cpu_falls_back_to_fp32_with_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        for requested in ("fp16", "bf16"):
            precision = resolve_precision(requested, torch.device("cpu"))
            assert precision.name == "off" and not precision.enabled and not precision.use_grad_scaler
    assert caplog.text.count("falling back to fp32") == 2
    assert resolve_precision("off", torch.device("cpu")).name == "off"


def test_cpu_run_with_fp16_config_trains_in_fp32_and_records_it(tmp_path: Path) -> None:
    trainer = build_tiny_trainer(tiny_config(tmp_path / "run", precision="fp16", max_steps=2))
    result = trainer.fit()
    assert trainer.precision.name == "off"
    assert torch.load(result.checkpoint, weights_only=True)["precision"] == "off"


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp16", "bf16"])
def test_mixed_precision_on_cuda(tmp_path: Path, precision: str) -> None:
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("GPU without bf16")
    from dima_core.training.distributed import init_distributed

    config = tiny_config(tmp_path / "run", precision=precision, device="cuda", max_steps=4)
    trainer = build_tiny_trainer(config, ctx=init_distributed("cuda"))
    result = trainer.fit()
    state = torch.load(result.checkpoint, weights_only=True)
    assert state["precision"] == precision
    assert bool(state["scaler"]) == (precision == "fp16"), "only fp16 runs a loss scaler"
    assert all(torch.isfinite(torch.tensor(h["total"])) for h in result.history)
