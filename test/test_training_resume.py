"""Resume equality: N steps straight == N/2 steps, stop, resume from the checkpoint, N/2 more steps.

Equal means bit-equal: identical parameters (torch.equal) and identical per-step losses and learning rates.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from dima_core.io.checkpoint import load_checkpoint
from training_fixtures import build_tiny_trainer, tiny_config

TOTAL_STEPS = 12  # 24 samples / batch 4 = 6 steps per epoch, 2 epochs

pytestmark = pytest.mark.usefixtures("single_thread")


def assert_same_run(straight, first, second, stop: int) -> None:
    assert second.step == straight.step == TOTAL_STEPS
    resumed_history = first.history + second.history
    assert [h["step"] for h in resumed_history] == [float(s) for s in range(1, TOTAL_STEPS + 1)]
    for a, b in zip(straight.history, resumed_history, strict=True):
        assert a == b, f"step {a['step']}: straight {a} vs resumed {b} (stopped at {stop})"


@pytest.mark.parametrize("stop", [4, 6, 9])  # inside epoch 0, exactly at the epoch boundary, inside epoch 1
def test_resume_reproduces_the_uninterrupted_run(tmp_path: Path, stop: int) -> None:
    data = {"num_workers": 0}
    straight_trainer = build_tiny_trainer(tiny_config(tmp_path / "straight", data=data))
    straight = straight_trainer.fit()

    first = build_tiny_trainer(tiny_config(tmp_path / "split", data=data, max_steps=stop)).fit()
    assert first.step == stop
    state = load_checkpoint(first.checkpoint)
    assert state["step"] == stop
    resumed_trainer = build_tiny_trainer(tiny_config(tmp_path / "split", data=data, resume=str(tmp_path / "split")))
    second = resumed_trainer.fit()

    assert_same_run(straight, first, second, stop)
    for (name, a), (_, b) in zip(
        straight_trainer.model.state_dict().items(), resumed_trainer.model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), f"parameter {name} differs after resuming at step {stop}"
    assert straight.replica_digest == second.replica_digest
    # The optimiser state matches too, so training could go on identically.
    for a, b in zip(straight_trainer.optimizer.state.values(), resumed_trainer.optimizer.state.values(), strict=True):
        assert torch.equal(a["exp_avg"], b["exp_avg"]) and torch.equal(a["exp_avg_sq"], b["exp_avg_sq"])


def test_resume_with_dataloader_workers(tmp_path: Path) -> None:
    """Worker processes get seeds from (seed, epoch, rank), not from consumed RNG: resume stays exact."""
    data = {"num_workers": 1}
    straight_trainer = build_tiny_trainer(tiny_config(tmp_path / "straight", data=data))
    straight = straight_trainer.fit()
    first = build_tiny_trainer(tiny_config(tmp_path / "split", data=data, max_steps=8)).fit()
    resumed_trainer = build_tiny_trainer(tiny_config(tmp_path / "split", data=data, resume=str(first.checkpoint)))
    second = resumed_trainer.fit()
    assert_same_run(straight, first, second, 8)
    assert straight.replica_digest == second.replica_digest


def test_different_seed_changes_the_run(tmp_path: Path) -> None:
    """Guards the equality tests against passing vacuously (e.g. a run that ignores its data order)."""
    a = build_tiny_trainer(tiny_config(tmp_path / "a", max_steps=3)).fit()
    b = build_tiny_trainer(tiny_config(tmp_path / "b", max_steps=3, seed=8)).fit()
    assert a.history[0]["total"] != b.history[0]["total"]
    assert a.replica_digest != b.replica_digest


def test_sigterm_checkpoints_after_the_current_step_and_resume_continues(tmp_path: Path) -> None:
    """A real SIGTERM (what SLURM sends before killing a preempted job) mid-run: clean checkpoint, exact resume."""
    import os
    import signal

    from training_fixtures import tiny_step

    straight = build_tiny_trainer(tiny_config(tmp_path / "straight")).fit()

    trainer = build_tiny_trainer(tiny_config(tmp_path / "preempted"))
    calls = {"n": 0}

    def step_then_signal(model, batch):
        calls["n"] += 1
        if calls["n"] == 5:
            os.kill(os.getpid(), signal.SIGTERM)  # delivered to this (main) thread before the step returns
        return tiny_step(model, batch)

    trainer.step_fn = step_then_signal
    before = signal.getsignal(signal.SIGTERM)
    first = trainer.fit()
    assert signal.getsignal(signal.SIGTERM) == before, "the previous handler is restored"
    assert first.stopped_by_signal and first.step == 5
    assert load_checkpoint(first.checkpoint)["step"] == 5

    second = build_tiny_trainer(tiny_config(tmp_path / "preempted", resume=str(tmp_path / "preempted"))).fit()
    assert not second.stopped_by_signal
    assert_same_run(straight, first, second, 5)
    assert straight.replica_digest == second.replica_digest
