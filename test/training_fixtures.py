"""Helpers for the training tests (test/conftest.py belongs to the data and ROS tests).

Two kinds of subjects:
- a *tiny real problem*: a small MLP with dropout regressing a fixed random linear map (:class:`TinyNet`,
  :class:`TinyRegression`, :func:`tiny_step`). It trains in milliseconds, yet uses every piece the trainer has to
  get right for resume equality: dropout (torch RNG), shuffling (sampler), AdamW state, the lr schedule;
- the real stage-1 stack (VisionPlanner, PlannerLoss, DrivingDataset) on a tiny synthetic world made by
  ``dima data synth`` (:func:`synth_world`), for the command-line smoke and the DDP runs.
The real planner is shrunk by :data:`MICRO_MODEL_OVERRIDES` (same modules, test-sized widths and input).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import Dataset

from dima_core.config import config_from_dict
from dima_core.training.config import TrainConfig

REPO_ROOT = Path(__file__).resolve().parents[1]

IN_DIM, HIDDEN, OUT_DIM = 8, 16, 2


class TinyRegression(Dataset):
    """``n`` samples ``{"x": (8,), "y": (2,)}`` of a fixed noisy linear map; identical for a given ``seed``."""

    def __init__(self, n: int = 24, seed: int = 1234) -> None:
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, IN_DIM, generator=generator)
        weight = torch.randn(IN_DIM, OUT_DIM, generator=generator)
        self.y = self.x @ weight + 0.1 * torch.randn(n, OUT_DIM, generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"x": self.x[i], "y": self.y[i]}


class TinyNet(nn.Module):
    """MLP with dropout, so a training step consumes the global torch RNG."""

    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(IN_DIM, HIDDEN), nn.ReLU(), nn.Dropout(0.2), nn.Linear(HIDDEN, OUT_DIM))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def tiny_step(model: nn.Module, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Named losses with a 'total', like a stage's step function."""
    pred = model(batch["x"])
    mse = torch.nn.functional.mse_loss(pred, batch["y"])
    l1 = torch.nn.functional.l1_loss(pred, batch["y"])
    return {"mse": mse, "l1": l1, "total": mse + 0.5 * l1}


def tiny_config(output_dir: Path | str, **overrides: Any) -> TrainConfig:
    """A fast TrainConfig for the tiny problem (keys as in TrainConfig; ``data`` may be a partial mapping)."""
    base: dict[str, Any] = {
        "epochs": 2,
        "output_dir": str(output_dir),
        "seed": 7,
        "deterministic": False,  # a process-global switch: leave it off inside the pytest process
        "optimizer": {"lr": 1e-2},
        "schedule": {"warmup_iters": 3},
        "grad_clip_norm": 1.0,
        "data": {"batch_size": 4, "num_workers": 0, "val_split": None},
        "checkpoint_interval": 0,
        "log_interval": 1,
        "tensorboard": False,
        "progress_bar": False,
    }
    data_overrides = overrides.pop("data", {})
    base["data"] = {**base["data"], **data_overrides}
    base.update(overrides)
    return config_from_dict(base, TrainConfig, source="test")


def build_tiny_trainer(config: TrainConfig, ctx: Any = None, record_history: bool = True) -> Any:
    """Seed, build the model (identically on every rank), and the real Trainer around it."""
    from dima_core.training.determinism import seed_everything
    from dima_core.training.trainer import Trainer

    seed_everything(config.seed)
    model = TinyNet()
    return Trainer(
        model,
        tiny_step,
        TinyRegression(),
        config,
        ctx=ctx,
        record_history=record_history,
        model_config={"name": "tiny", "hidden": HIDDEN},
    )


# The real VisionPlanner shrunk to test size (every module present, tiny widths): a training step takes a fraction
# of a second on one CPU thread instead of seconds for dima_tiny. Overrides of config/model/dima_tiny.yaml.
MICRO_MODEL_OVERRIDES: dict[str, Any] = {
    "name": "micro_test",
    "image_size": [64, 32],
    "embed_dim": 32,
    "backbone": {"fpn_channels": 32},
    "bev": {"grid_size": [8, 8], "embed_dim": 32, "num_heads": 2, "ffn_dim": 64, "num_z_anchors": 2},
    "agent_head": {"num_queries": 8, "num_heads": 2, "ffn_dim": 64, "num_modes": 2},
    "map_head": {"num_vectors": 4, "num_points": 6, "num_heads": 2, "ffn_dim": 64},
    "planner": {"num_heads": 2, "ffn_dim": 64, "feature_dim": 32},
}


def write_micro_model_config(directory: Path) -> Path:
    """A model YAML for the micro planner (validated by the model's own config loader before it is returned)."""
    import yaml

    from dima_core.models import load_model_config

    data = yaml.safe_load((REPO_ROOT / "config" / "model" / "dima_tiny.yaml").read_text())
    for key, value in MICRO_MODEL_OVERRIDES.items():
        if isinstance(value, dict):
            data[key] = {**data.get(key, {}), **value}
        else:
            data[key] = value
    path = Path(directory) / "micro_model.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    load_model_config(path)
    return path


def stage1_cli_args(world: Any, model_yaml: Path, index: Path, out: Path, *extra: str) -> list[str]:
    """``train`` arguments for a few steps of the real stage 1 on a tiny synthetic world (``data_fixtures``)."""
    return [
        "train",
        "--stage",
        "1",
        "--config",
        str(REPO_ROOT / "config" / "train" / "stage1_dima_tiny.yaml"),
        "--dataroot",
        str(world.dataroot),
        "--version",
        world.version,
        "--index",
        str(index),
        "--out",
        str(out),
        "--batch-size",
        "1",
        "--log-interval",
        "1",
        "--model-config",
        str(model_yaml),
        *extra,
    ]


def write_stage1_index(world: Any, model_yaml: Path, directory: Path) -> Path:
    """``dima data index`` of the world at the micro model's map resolution (what the dataset will ask for)."""
    import yaml

    from dima_core.cli import main as dima_main

    points = yaml.safe_load(Path(model_yaml).read_text())["map_head"]["num_points"]
    data_yaml = Path(directory) / "data.yaml"
    data_yaml.write_text(yaml.safe_dump({"data": {"map_points_per_vector": points}}))
    path = Path(directory) / "index.pkl"
    args = [
        "data",
        "index",
        "--dataroot",
        str(world.dataroot),
        "--version",
        world.version,
        "--out",
        str(path),
        "--config",
        str(data_yaml),
    ]
    if dima_main(args) != 0:
        raise RuntimeError(f"dima {' '.join(args)} failed")
    return path


def free_port() -> int:
    """A TCP port nobody listens on right now (for MASTER_PORT)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def subprocess_env() -> dict[str, str]:
    """Environment for child processes: the repo importable, one thread each (2 shared cores), no GPU."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), env.get("PYTHONPATH", "")) if p)
    env["OMP_NUM_THREADS"] = "1"
    env["CUDA_VISIBLE_DEVICES"] = ""
    return env


def torchrun_command(nproc: int, port: int, *args: str) -> list[str]:
    """``python -m torch.distributed.run`` on this interpreter, single node, a fixed rendezvous port."""
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "1",
        "--nproc_per_node",
        str(nproc),
        "--master_addr",
        "127.0.0.1",
        "--master_port",
        str(port),
        *args,
    ]


def run_checked(cmd: list[str], timeout: float, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with its full output (a failed torchrun is unreadable otherwise)."""
    proc = subprocess.run(cmd, cwd=cwd, env=subprocess_env(), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="session")
def micro_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The micro planner's model YAML (session-wide: the stage-1 and DDP tests share it)."""
    return write_micro_model_config(tmp_path_factory.mktemp("micro_model"))


@pytest.fixture(scope="session")
def micro_index(synth_world: Any, micro_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``dima data index`` of the session's synthetic world (``data_fixtures.synth_world``) for the micro model."""
    return write_stage1_index(synth_world, micro_model, tmp_path_factory.mktemp("micro_index"))


@pytest.fixture
def single_thread() -> Any:
    """One intra-op thread for the test, restored afterwards.

    On a small shared machine torch's default (one thread per core) oversubscribes the cores: a training step of
    the micro planner took 5-20 s with 2 threads under load and about 0.5 s with one.
    """
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)
