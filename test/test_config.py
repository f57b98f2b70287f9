"""The typed config system: good files load, bad files fail naming file, key and problem."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from dima_core.config import ConfigError, config_from_dict, config_to_dict, load_config, ranged, save_config


@dataclass
class OptimConfig:
    lr: float = ranged(2e-4, lo=0.0, hi=1.0, help="learning rate")
    betas: tuple[float, float] = (0.9, 0.999)


@dataclass
class TrainConfig:
    name: str = "run"
    epochs: int = ranged(10, lo=1)
    backend: Literal["torch", "onnxruntime", "tensorrt"] = "torch"
    amp: bool = False
    weights: str | None = None
    image_size: tuple[int, int] = ranged((256, 144), lo=16)
    losses: dict[str, float] = field(default_factory=lambda: {"plan": 1.0})
    milestones: list[int] = field(default_factory=list)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def validate(self) -> None:
        if self.milestones and max(self.milestones) > self.epochs:
            raise ValueError(f"milestones {self.milestones} exceed epochs {self.epochs}")


def write(tmp_path, text: str):
    path = tmp_path / "train.yaml"
    path.write_text(text)
    return path


def test_loads_nested_values_and_keeps_defaults(tmp_path):
    path = write(tmp_path, "epochs: 3\noptim:\n  lr: 0.001\nimage_size: [320, 180]\nlosses: {plan: 2, kl: 0.5}\n")
    cfg = load_config(path, TrainConfig)
    assert cfg.epochs == 3
    assert cfg.optim.lr == pytest.approx(1e-3)
    assert cfg.optim.betas == (0.9, 0.999)
    assert cfg.image_size == (320, 180)
    assert cfg.losses == {"plan": 2.0, "kl": 0.5}
    assert isinstance(cfg.losses["plan"], float)
    assert cfg.backend == "torch"


def test_round_trip_through_yaml(tmp_path):
    cfg = TrainConfig(epochs=5, weights="/w.pt", milestones=[2, 4])
    path = tmp_path / "out.yaml"
    save_config(cfg, path)
    assert load_config(path, TrainConfig) == cfg
    assert config_to_dict(cfg)["image_size"] == [256, 144]


@pytest.mark.parametrize(
    "text, key, problem",
    [
        ("epoch: 3\n", "epoch", "unknown key"),
        ("optim:\n  lrr: 0.1\n", "optim.lrr", "unknown key"),
        ("epochs: three\n", "epochs", "expected int"),
        ("epochs: 2.5\n", "epochs", "expected int"),
        ("amp: 1\n", "amp", "expected bool"),
        ("epochs: 0\n", "epochs", "must be >= 1"),
        ("optim:\n  lr: 5\n", "optim.lr", "must be <= 1.0"),
        ("backend: cuda\n", "backend", "must be one of"),
        ("image_size: [320]\n", "image_size", "wrong length"),
        ("image_size: [320, 8]\n", "image_size", "must be >= 16"),
        ("losses: {plan: high}\n", "losses.plan", "expected float"),
        ("optim: 3\n", "optim", "expected a mapping"),
        ("epochs: 2\nmilestones: [5]\n", "", "exceed epochs"),
    ],
)
def test_errors_name_file_key_and_problem(tmp_path, text, key, problem):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, TrainConfig)
    message = str(info.value)
    assert str(path) in message
    if key:
        assert f"'{key}'" in message
        assert info.value.key == key
    assert problem in message


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml", TrainConfig)
    path = write(tmp_path, "epochs: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path, TrainConfig)
    path = write(tmp_path, "- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(path, TrainConfig)


def test_sections_and_required_keys(tmp_path):
    @dataclass
    class Required:
        dataroot: str

    path = write(tmp_path, "train:\n  epochs: 4\ndata: {}\n")
    assert load_config(path, TrainConfig, section="train").epochs == 4
    with pytest.raises(ConfigError, match="'data.dataroot': missing required key"):
        load_config(path, Required, section="data")
    with pytest.raises(ConfigError, match="'eval': missing required section"):
        load_config(path, TrainConfig, section="eval")
    assert config_from_dict({"dataroot": "/d"}, Required).dataroot == "/d"
