"""Closed-loop scores of the arms of ``dima bench distill`` (issue 11 section 2): each arm's planner drives the
simulator (:mod:`dima_core.sim`) through every scenario on held-out scene seeds, scored as ``dima bench closed-loop``
scores (:mod:`dima_core.eval.closed_loop`: the PDMS-style score, success, at-fault collisions).

The simulator's world is ``config/synth_drive.yaml`` (through the sim config) and the seeds start at 1000, so no
episode is a scene the planners trained on. The expert runs on every episode as the progress reference. Every arm
sees the same episodes, which is what makes the per-seed paired comparison of scores meaningful.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Per-arm summary keys kept in the report (:func:`dima_core.eval.closed_loop.summarize_episodes`).
SUMMARY_KEYS = (
    "num_episodes",
    "score",
    "success_rate",
    "at_fault_collision_rate",
    "num_at_fault_collisions",
    "dac",
    "progress_ratio",
    "stuck_rate",
)


@dataclass(frozen=True)
class ClosedLoopSpec:
    """Which episodes every arm drives: ``episodes`` seeds from ``seed`` for each scenario (``all``: every one)."""

    episodes: int
    seed: int = 1000
    sim_config: str = "config/sim.yaml"
    scenarios: tuple[str, ...] = ("all",)
    threads: int = 1
    seconds: float | None = None  # episode length (None: the world's scene length)

    def __post_init__(self) -> None:
        if self.episodes < 1:
            raise ValueError(f"closed-loop episodes must be >= 1, got {self.episodes}")


def closed_loop_scores(checkpoint: str | Path, spec: ClosedLoopSpec, out_dir: Path | None = None) -> dict[str, Any]:
    """``{"overall": summary, "groups": {scenario: summary}}`` of ``checkpoint``'s planner (a stage-1 or stage-2
    checkpoint or a weights file; the LLM is never built) over the episodes of ``spec``; one PNG per episode in
    ``out_dir`` when given."""
    import argparse

    from dima_core.commands.sim import load_configs, resolve_scenarios
    from dima_core.sim.policies import make_policy
    from dima_core.sim.runner import RunOptions, run_closed_loop

    # The same world and sim configs `dima sim run --sim-config ...` would drive.
    world_cfg, sim_cfg = load_configs(
        argparse.Namespace(sim_config=spec.sim_config, seconds=spec.seconds, world_config=None)
    )
    policy = make_policy(f"checkpoint:{checkpoint}", threads=spec.threads)
    seeds = list(range(spec.seed, spec.seed + spec.episodes))
    report = run_closed_loop(
        world_cfg,
        sim_cfg,
        resolve_scenarios(list(spec.scenarios)),
        seeds,
        [policy],
        RunOptions(out_dir=str(out_dir) if out_dir is not None else None, video=False),
    )
    summary = report.aggregates()["policies"][policy.name]

    def keep(entry: dict[str, Any]) -> dict[str, Any]:
        return {k: entry[k] for k in SUMMARY_KEYS}

    return {
        "overall": keep(summary["overall"]),
        "groups": {g: keep(s) for g, s in summary["groups"].items()},
        "seeds": seeds,
        "wall_s": report.wall_s,
    }


__all__ = ["SUMMARY_KEYS", "ClosedLoopSpec", "closed_loop_scores"]
