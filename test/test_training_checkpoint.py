"""Checkpoints: atomic writes survive a crash mid-write; broken or foreign files fail with a clear message."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from dima_core.io.checkpoint import (
    CheckpointError,
    check_model_state,
    load_checkpoint,
    prune_checkpoints,
    resolve_checkpoint,
    save_checkpoint,
    write_latest,
)
from training_fixtures import REPO_ROOT, TinyNet, build_tiny_trainer, subprocess_env, tiny_config

pytestmark = pytest.mark.usefixtures("single_thread")


def trained_checkpoint(tmp_path: Path) -> Path:
    trainer = build_tiny_trainer(tiny_config(tmp_path / "run", epochs=1, max_steps=2))
    result = trainer.fit()
    assert result.checkpoint is not None
    return result.checkpoint


def test_checkpoint_holds_everything_needed_to_resume(tmp_path: Path) -> None:
    path = trained_checkpoint(tmp_path)
    state = load_checkpoint(path)
    assert state["step"] == 2 and state["epoch"] == 0 and state["epoch_step"] == 2
    assert state["sampler"] == {"seed": 7, "epoch": 0, "start_index": 8, "num_replicas": 1, "batch_size": 4}
    assert set(state["rng"][0]) >= {"python", "numpy", "torch"}
    assert state["optimizer"]["state"], "AdamW moments are saved"
    assert state["scheduler"]["last_epoch"] == 2
    assert state["config"]["optimizer"]["lr"] == pytest.approx(1e-2)
    assert resolve_checkpoint(tmp_path / "run") == path  # the run directory's 'latest' pointer
    assert not list(path.parent.glob(".*.tmp-*")), "no temporary file is left behind"


def test_crash_mid_write_leaves_the_previous_checkpoint_intact(tmp_path: Path) -> None:
    good = trained_checkpoint(tmp_path)
    before = good.read_bytes()
    # A real crash: another process starts an atomic save over the same name, writes half of the bytes and dies
    # (os._exit: no cleanup handlers, no exception unwinding) before the rename.
    script = textwrap.dedent(
        f"""
        import os
        from dima_core.io.atomic import write_atomic
        data = open({str(good)!r}, "rb").read()
        def die_half_way(fileobj):
            fileobj.write(b"X" * (len(data) // 2))
            fileobj.flush()
            os._exit(17)
        write_atomic({str(good)!r}, die_half_way)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=subprocess_env(), timeout=60)
    assert proc.returncode == 17
    leftovers = list(good.parent.glob(f".{good.name}.tmp-*"))
    assert len(leftovers) == 1, "the crash left its half-written temporary file, not the final one"
    assert good.read_bytes() == before, "the final path still holds the complete previous checkpoint"
    assert load_checkpoint(good)["step"] == 2
    # The next save of that name sweeps the stale temporary away.
    save_checkpoint(load_checkpoint(good), good)
    assert not list(good.parent.glob(f".{good.name}.tmp-*"))


def test_truncated_checkpoint_gives_a_clear_error(tmp_path: Path) -> None:
    good = trained_checkpoint(tmp_path)
    data = good.read_bytes()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"broken\.pt is corrupt or truncated"):
        load_checkpoint(broken)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(CheckpointError, match="empty"):
        load_checkpoint(empty)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_foreign_and_mismatched_checkpoints_are_rejected(tmp_path: Path) -> None:
    foreign = tmp_path / "weights.pt"
    torch.save({"state_dict": TinyNet().state_dict()}, foreign)
    with pytest.raises(CheckpointError, match="not a DiMA training checkpoint"):
        load_checkpoint(foreign)

    good = trained_checkpoint(tmp_path)
    state = load_checkpoint(good)
    wider = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.ReLU(), torch.nn.Dropout(), torch.nn.Linear(32, 2))
    wrapped = torch.nn.Module()
    wrapped.net = wider
    expected = r"does not match this model .*3 shape mismatches \[net\.0\.bias: checkpoint \(16,\) vs model \(32,\)"
    with pytest.raises(CheckpointError, match=expected):
        check_model_state(state["model"], wrapped, str(good))

    # Resuming with a different model config is refused before anything is loaded.
    trainer = build_tiny_trainer(tiny_config(tmp_path / "other", resume=str(good)))
    trainer.model_config = {"name": "tiny", "hidden": 99}
    with pytest.raises(CheckpointError, match="different model config"):
        trainer.fit()


def test_latest_pointer_and_pruning(tmp_path: Path) -> None:
    trainer = build_tiny_trainer(tiny_config(tmp_path / "run", epochs=1, checkpoint_interval=1, keep_checkpoints=2))
    trainer.fit()  # 6 steps, a checkpoint after each
    names = sorted(p.name for p in (tmp_path / "run").glob("checkpoint_step*.pt"))
    assert names == ["checkpoint_step00000005.pt", "checkpoint_step00000006.pt"]
    assert resolve_checkpoint(tmp_path / "run").name == "checkpoint_step00000006.pt"
    write_latest(tmp_path / "run", "checkpoint_step00000005.pt")
    assert prune_checkpoints(tmp_path / "run", keep=0) == [tmp_path / "run" / "checkpoint_step00000006.pt"]
    with pytest.raises(CheckpointError, match="without a 'latest' pointer"):
        resolve_checkpoint(tmp_path)
