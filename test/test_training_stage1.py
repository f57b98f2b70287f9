"""The real stage 1 (VisionPlanner, PlannerLoss, DrivingDataset) on a tiny synthetic world, through `dima train`:

- a smoke run writes a checkpoint and TensorBoard events;
- resume equality with the real model, loss and data;
- two-process DDP on CPU (gloo): `torchrun -m dima_core.cli train --stage 1`; both ranks must end with
  bit-identical parameters, and rank 0 alone writes checkpoints and logs.

One module on purpose: the session fixtures (world, index) are instantiated once per importing module.
The micro model config (training_fixtures.MICRO_MODEL_OVERRIDES) keeps a step well under a second.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch

from dima_core.cli import main as dima_main
from dima_core.io.checkpoint import load_checkpoint, resolve_checkpoint
from training_fixtures import REPO_ROOT, free_port, run_checked, stage1_cli_args, torchrun_command

pytestmark = pytest.mark.usefixtures("single_thread")


@pytest.mark.integration
def test_dima_train_stage1_smoke(synth_world, micro_model, micro_index, tmp_path: Path, capsys) -> None:  # noqa: F811
    out = tmp_path / "run"
    # One epoch of 2 steps, validated on the train split (the session's tiny world has no val scenes).
    args = stage1_cli_args(
        synth_world,
        micro_model,
        micro_index,
        out,
        "--max-steps",
        "2",
        "--val-split",
        "train",
        "--epochs",
        "1",
        "--train-split",
        "train",
    )
    assert dima_main(args) == 0
    printed = capsys.readouterr().out
    assert "stage 1: 2 steps" in printed

    state = load_checkpoint(resolve_checkpoint(out))
    assert state["step"] == 2 and state["stage"] == 1
    assert state["model_config"]["name"] == "micro_test"
    assert state["config"]["data"]["dataset"]["index_path"] == str(micro_index)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())

    assert list((out / "tensorboard").glob("events.out.tfevents.*")), "TensorBoard event file written"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {
        "train/loss/total",
        "train/loss/plan_reg",
        "train/loss/det_cls",
        "train/loss/map_pts",
        "train/lr",
        "train/samples_per_s",
        "train/grad_norm",
    } <= tags
    assert [e.step for e in events.Scalars("train/loss/total")] == [1, 2]
    assert (out / "metrics.jsonl").read_text().count("\n") == 2


@pytest.mark.integration
def test_stage1_resume_equality_with_the_real_planner(
    synth_world,
    micro_model,
    micro_index,  # noqa: F811
    tmp_path: Path,
) -> None:
    """1 step, stop, resume, 1 more step == 2 steps straight, for the real model, loss and data."""
    from dima_core.commands.train import add_parser, resolve_config
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage1 import build_stage1_trainer

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())

    def trainer_for(out: Path, *extra: str):
        args = parser.parse_args(
            stage1_cli_args(
                synth_world,
                micro_model,
                micro_index,
                out,
                "--epochs",
                "1",
                "--val-split",
                "none",
                "--no-tensorboard",
                *extra,
            )
        )
        return build_stage1_trainer(resolve_config(args), DistContext(), record_history=True)

    straight_trainer = trainer_for(tmp_path / "straight", "--max-steps", "2")
    straight = straight_trainer.fit()
    first = trainer_for(tmp_path / "split", "--max-steps", "1").fit()
    resumed_trainer = trainer_for(tmp_path / "split", "--max-steps", "2", "--resume", str(tmp_path / "split"))
    second = resumed_trainer.fit()

    assert len(straight.history) == 2
    assert straight.history == first.history + second.history
    for (name, a), b in zip(
        straight_trainer.model.state_dict().items(), resumed_trainer.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


@pytest.mark.slow
@pytest.mark.integration
def test_two_process_gloo_run_keeps_replicas_identical(
    synth_world,
    micro_model,
    micro_index,  # noqa: F811
    tmp_path: Path,
) -> None:
    out = tmp_path / "ddp"
    args = stage1_cli_args(
        synth_world,
        micro_model,
        micro_index,
        out,
        "--max-steps",
        "3",
        "--checkpoint-interval",
        "2",
        "--epochs",
        "1",
        "--val-split",
        "none",
        "--device",
        "cpu",
    )
    proc = run_checked(torchrun_command(2, free_port(), "-m", "dima_core.cli", *args), timeout=400)
    log = proc.stdout + proc.stderr

    # Each rank hashed its own final parameters into its own file; DDP must have kept them bit-identical.
    digests = {p.name: p.read_text().strip() for p in sorted((out / "replicas").glob("rank*.sha256"))}
    assert set(digests) == {"rank0.sha256", "rank1.sha256"}, log
    assert len(set(digests.values())) == 1, f"replicas diverged: {digests}"
    assert "all 2 ranks hold identical parameters" in log

    # Rank 0 alone wrote the checkpoints (interval 2 and the final step 3) and the metrics log.
    names = sorted(p.name for p in out.glob("checkpoint_step*.pt"))
    assert names == ["checkpoint_step00000002.pt", "checkpoint_step00000003.pt"]
    state = load_checkpoint(resolve_checkpoint(out))
    assert state["step"] == 3 and state["world_size"] == 2
    assert state["sampler"]["num_replicas"] == 2
    assert len(state["rng"]) == 2, "every rank's RNG state is in the checkpoint"
    assert state["rng"][0]["torch"].tolist() != state["rng"][1]["torch"].tolist(), "ranks draw distinct streams"
    assert (out / "metrics.jsonl").read_text().count("\n") == 3
    assert log.count("stage 1: 3 steps") == 1, "only rank 0 prints the summary"


@pytest.mark.integration
def test_temporal_planner_trains_on_history_frames(
    synth_world,
    micro_model,
    micro_index,  # noqa: F811
    tmp_path: Path,
) -> None:
    """VAD's temporal queue: previous frames are encoded into a history BEV that the current frame attends to."""
    import yaml

    from dima_core.commands.train import add_parser, resolve_config
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage1 import build_stage1_trainer, history_bev

    model_yaml = tmp_path / "temporal.yaml"
    data = yaml.safe_load(micro_model.read_text())
    data["bev"]["use_temporal"] = True
    model_yaml.write_text(yaml.safe_dump(data))
    train_yaml = tmp_path / "train.yaml"
    train = yaml.safe_load((REPO_ROOT / "config" / "train" / "stage1_dima_tiny.yaml").read_text())
    train["data"]["dataset"]["num_prev_frames"] = 2
    train_yaml.write_text(yaml.safe_dump(train))

    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers())
    args = stage1_cli_args(
        synth_world,
        model_yaml,
        micro_index,
        tmp_path / "run",
        "--epochs",
        "1",
        "--val-split",
        "none",
        "--no-tensorboard",
        "--max-steps",
        "2",
    )
    args[args.index("--config") + 1] = str(train_yaml)
    trainer = build_stage1_trainer(resolve_config(parser.parse_args(args)), DistContext(), record_history=True)

    from dima_core.data.dataset import collate

    with_history = next(i for i, t in enumerate(trainer.dataset.tokens) if trainer.dataset.index.get(t).prev_token)
    batch = collate([trainer.dataset[with_history]])
    assert batch["prev_images"].shape[1] == 2 and bool(batch["prev_mask"][0, 0])
    prev_bev, motion = history_bev(trainer.model, batch)
    assert prev_bev is not None and prev_bev.shape[1:] == (32, 8, 8) and torch.isfinite(prev_bev).all()
    assert torch.equal(motion, batch["prev_ego_to_ego"][:, 0])
    assert trainer.model.training, "history encoding restores train mode"
    first = trainer.dataset.tokens.index(
        next(t for t in trainer.dataset.tokens if not trainer.dataset.index.get(t).prev_token)
    )
    assert history_bev(trainer.model, collate([trainer.dataset[first]])) == (None, None)

    result = trainer.fit()
    assert result.step == 2 and all(torch.isfinite(torch.tensor(h["total"])) for h in result.history)
