"""`dima eval --checkpoint` on a micro stage-1 checkpoint: a complete report with finite numbers, a results file
that `dima eval --results` scores to the same planning numbers, and the inference library on the same data path
as training."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from dima_core.cli import main as dima_main
from eval_ckpt_helpers import train_micro_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.fixture(scope="module")
def micro_run(synth_world, micro_model, micro_index, tmp_path_factory) -> Path:
    return train_micro_checkpoint(synth_world, micro_model, micro_index, tmp_path_factory.mktemp("eval_ckpt") / "run")


def _numbers(obj: Any) -> Iterator[float]:
    """Every number in a JSON tree (None, strings and booleans skipped)."""
    if isinstance(obj, dict):
        for v in obj.values():
            yield from _numbers(v)
    elif isinstance(obj, list):
        for v in obj:
            yield from _numbers(v)
    elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
        yield float(obj)


def test_inference_library_matches_the_training_data_path(synth_world, micro_index, micro_run) -> None:
    from dima_core.data.index import SampleIndex
    from dima_core.eval.planner_inference import inference_dataset, load_planner, predict_trajectories, run_planner

    loaded = load_planner(micro_run)  # a run directory resolves through its 'latest' pointer
    assert loaded.model_config.name == "micro_test" and not loaded.model.training
    index = SampleIndex.load(micro_index, dataroot=str(synth_world.dataroot), version=synth_world.version)
    dataset = inference_dataset(loaded, index, "val")
    # The model's own input size and map resolution, identity normalisation (stage1_data_config).
    assert dataset.cfg.image_size == (32, 64) and dataset.cfg.map_points_per_vector == 6
    dataset.tokens = dataset.tokens[:5]  # a few frames are enough here (2 shared cores); the CLI test runs them all
    result = run_planner(loaded.model, dataset, batch_size=2)
    assert list(result.predictions) == dataset.tokens
    first = result.predictions[dataset.tokens[0]]
    assert first.trajectory.shape == (6, 2) and first.trajectories.shape == (3, 6, 2)
    assert np.allclose(first.trajectories[first.command], first.trajectory)
    assert first.agent_boxes.shape == (8, 7) and first.agent_scores.shape == (8, 10)
    assert first.map_polylines.shape == (4, 6, 2) and first.map_scores.shape == (4, 3)
    assert len(result.latency_ms) == math.ceil(len(dataset) / 2) and result.mean_latency_ms > 0
    # Batching does not change the plans (eval mode: no dropout).
    single = predict_trajectories(loaded.model, dataset, batch_size=1)
    for token, traj in result.trajectories.items():
        np.testing.assert_allclose(single[token], traj, atol=1e-4)


@pytest.mark.integration
def test_eval_checkpoint_report_and_results_roundtrip(synth_world, micro_index, micro_run, tmp_path, capsys) -> None:
    common = [
        "--dataroot",
        str(synth_world.dataroot),
        "--version",
        synth_world.version,
        "--split",
        "val",
        "--admlp-epochs",
        "5",
        "--admlp-model",
        str(tmp_path / "admlp.pt"),
    ]
    report_path, results_path = tmp_path / "report.json", tmp_path / "results.json"
    assert (
        dima_main(
            [
                "eval",
                "--checkpoint",
                str(micro_run),
                *common,
                "--index",
                str(micro_index),
                "--out",
                str(report_path),
                "--results-out",
                str(results_path),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "detection (matching)" in printed and "map (Chamfer AP)" in printed and "ms/frame" in printed

    report = json.loads(report_path.read_text())
    assert report["method"] == "micro_test" and report["num_samples"] > 0
    for key in ("vad", "uniad", "splits", "baselines", "formula", "detection", "map", "inference", "source"):
        assert key in report, key
    assert set(report["baselines"]) == {"const_velocity", "ad_mlp"}
    for conv in ("vad", "uniad"):
        assert set(report[conv]["l2"]) == {"1s", "2s", "3s", "avg"}
        assert set(report[conv]["collision"]) == {"1s", "2s", "3s", "avg"}
    det, vmap = report["detection"], report["map"]
    # The synthetic world's split names collide with official ones but not its membership: matching-based AP.
    assert det["method"] == "matching" and "centre-distance" in det["formula"]
    assert 0.0 <= det["mAP"] <= 1.0 and 0.0 <= det["NDS"] <= 1.0 and det["num_gt"] > 0
    assert set(det["tp_errors"]) == {"mATE", "mASE", "mAOE", "mAVE"}
    assert 0.0 <= vmap["mAP"] <= 1.0 and "CD(P, G)" in vmap["formula"]
    assert vmap["thresholds_m"] == [0.5, 1.0, 1.5]
    assert report["inference"]["num_frames"] == len([t for t in json.loads(results_path.read_text())["results"]])
    assert report["source"]["step"] == 2
    assert all(math.isfinite(v) for v in _numbers(report))

    # The results file is the interface of docs/design.md (Evaluation protocol): scoring it reproduces the
    # planning numbers.
    rescored_path = tmp_path / "rescored.json"
    assert (
        dima_main(
            ["eval", "--results", str(results_path), *common, "--out", str(rescored_path), "--name", "micro_test"]
        )
        == 0
    )
    rescored = json.loads(rescored_path.read_text())
    assert rescored["num_samples"] == report["num_samples"] and rescored["num_missing_results"] == 0
    for conv in ("vad", "uniad"):
        for metric in ("l2", "collision"):
            for k, v in report[conv][metric].items():
                assert rescored[conv][metric][k] == pytest.approx(v, abs=1e-9), (conv, metric, k)
    for split, section in report["splits"].items():
        assert rescored["splits"][split]["num_samples"] == section["num_samples"]
        if section["num_samples"]:
            assert rescored["splits"][split]["vad"]["l2"]["avg"] == pytest.approx(section["vad"]["l2"]["avg"], abs=1e-9)


def test_eval_checkpoint_rejects_a_non_checkpoint(synth_world, tmp_path, capsys) -> None:
    bogus = tmp_path / "model.pt"
    torch.save({"weights": torch.zeros(1)}, bogus)
    # A one-line error and exit status 2, not a traceback.
    assert (
        dima_main(
            [
                "eval",
                "--checkpoint",
                str(bogus),
                "--dataroot",
                str(synth_world.dataroot),
                "--version",
                synth_world.version,
            ]
        )
        == 2
    )
    assert "not a DiMA training checkpoint" in capsys.readouterr().err


def test_eval_keeps_the_training_image_cache_only_for_its_own_dataset(tmp_path) -> None:
    """A checkpoint trained from an image cache, evaluated on another world, decodes that world's JPEGs instead of
    refusing the training cache as stale."""
    import types

    from dima_core.data.config import DataConfig
    from dima_core.eval.planner_inference import eval_data_config

    own = DataConfig(dataroot=str(tmp_path / "train_world"), version="v1.0-synth", image_cache=str(tmp_path / "cache"))
    loaded = types.SimpleNamespace(data_config=own)
    assert eval_data_config(loaded, tmp_path / "train_world", "v1.0-synth", "val").image_cache == own.image_cache
    other = eval_data_config(loaded, tmp_path / "eval_world", "v1.0-synth", None)
    assert other.image_cache is None and other.dataroot == str(tmp_path / "eval_world")
    assert eval_data_config(loaded, tmp_path / "train_world", "v1.0-other", None).image_cache is None
