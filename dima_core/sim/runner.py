"""Run policies over a set of closed-loop episodes and report: the code behind ``dima sim run`` and
``dima bench closed-loop``.

Every (scenario, seed) episode is built once and driven by each policy in turn; the expert always runs first,
because its metrics are the reference that waives a map rule the expert itself breaks (``score_episode``). Per
episode the report keeps all metrics; per policy and scenario the aggregates; videos and summaries are optional.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dima_core.config import config_to_dict
from dima_core.data.synth.config import SynthConfig
from dima_core.eval.closed_loop import (
    SCORE_FORMULA,
    SUCCESS_RULE,
    EpisodeMetrics,
    aggregate,
    format_table,
    score_episode,
)
from dima_core.sim.config import SimConfig
from dima_core.sim.episode import ClosedLoopEpisode
from dima_core.sim.policies import ExpertPolicy, Policy
from dima_core.sim.video import write_episode_summary, write_episode_video

log = logging.getLogger(__name__)

# Table order: the reference and the baselines first, then the models.
BASELINE_ORDER = ("expert", "log_replay", "const_velocity", "ad_mlp")


@dataclass
class RunOptions:
    """What to write besides the report: videos (MP4 per episode and policy), PNG summaries."""

    out_dir: str | None = None
    video: bool = True
    summary_png: bool = True
    video_policies: Sequence[str] | None = None  # None: every policy that is not a baseline
    progress: Callable[[str], None] | None = None


@dataclass
class ClosedLoopReport:
    metrics: list[EpisodeMetrics] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    wall_s: float = 0.0

    def aggregates(self) -> dict:
        return aggregate(self.metrics, by="scenario")

    def table(self) -> str:
        names = [m.policy for m in self.metrics]
        order = [p for p in BASELINE_ORDER if p in names] + sorted({p for p in names if p not in BASELINE_ORDER})
        return format_table(self.aggregates(), order)

    def to_dict(self, **extra: object) -> dict:
        return {
            "formula": SCORE_FORMULA,
            "success_rule": SUCCESS_RULE,
            "aggregates": self.aggregates(),
            "episodes": [m.to_dict() for m in self.metrics],
            "files": self.files,
            "wall_s": self.wall_s,
            **extra,
        }


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).strip("_") or "policy"


def run_closed_loop(
    world_cfg: SynthConfig,
    sim_cfg: SimConfig,
    scenarios: Sequence[str],
    seeds: Sequence[int],
    policies: Sequence[Policy],
    options: RunOptions | None = None,
) -> ClosedLoopReport:
    """Drive every policy through every (scenario, seed); the expert runs first on each episode (added if absent)."""
    options = options or RunOptions()
    ordered = list(policies)
    if not any(p.name == "expert" for p in ordered):
        ordered.insert(0, ExpertPolicy())
    ordered.sort(key=lambda p: p.name != "expert")
    report = ClosedLoopReport()
    t0 = time.perf_counter()
    for scenario in scenarios:
        for seed in seeds:
            episode = ClosedLoopEpisode(world_cfg, sim_cfg, scenario, int(seed))
            reference: EpisodeMetrics | None = None
            for policy in ordered:
                wants_video = (
                    options.out_dir is not None
                    and options.video
                    and (
                        policy.name in options.video_policies
                        if options.video_policies is not None
                        else policy.name not in BASELINE_ORDER
                    )
                )
                t_ep = time.perf_counter()
                ep_log = episode.run(policy, keep_frames=wants_video)
                # The expert is its own reference: a map rule its sanctioned manoeuvre breaks (the overtake's
                # pass through the oncoming lane) is waived for it as for everyone who does the same. The others
                # are compared with its raw (unwaived) metrics.
                if policy.name == "expert":
                    reference = score_episode(ep_log)
                metrics = score_episode(ep_log, reference)
                report.metrics.append(metrics)
                if options.progress is not None:
                    options.progress(
                        f"{scenario} seed {seed} {policy.name}: score {metrics.score:.3f}, "
                        f"{'success' if metrics.success else 'fail'}, progress {metrics.progress_m:.0f} m "
                        f"({time.perf_counter() - t_ep:.1f} s)"
                    )
                if options.out_dir is not None:
                    stem = os.path.join(options.out_dir, "episodes", f"{scenario}_s{seed}_{_safe(policy.name)}")
                    os.makedirs(os.path.dirname(stem), exist_ok=True)
                    score_line = f"score {metrics.score:.2f} {'success' if metrics.success else 'fail'}"
                    if wants_video:
                        write_episode_video(ep_log, episode.cameras, stem + ".mp4", score_line=score_line)
                        report.files.append(stem + ".mp4")
                    if options.summary_png:
                        collisions = [(c.step, c.agent_id) for c in metrics.collisions if c.at_fault]
                        write_episode_summary(
                            ep_log,
                            stem + ".png",
                            summary_lines(metrics),
                            episode.reference.record.ego[: episode.num_steps, :2],
                            collisions,
                        )
                        report.files.append(stem + ".png")
    report.wall_s = time.perf_counter() - t0
    return report


def summary_lines(m: EpisodeMetrics) -> list[str]:
    return [
        f"{m.policy} | {m.scenario} seed {m.seed}",
        f"score {m.score:.3f}  {'SUCCESS' if m.success else 'fail'}",
        f"NC {m.nc:g}  DAC {m.dac:g}  DDC {m.ddc:g}  EP {m.ep:.2f}  TTC {m.ttc:g}  C {m.comfort:g}",
        f"progress {m.progress_m:.1f} m (expert {m.expert_progress_m:.1f} m)",
        f"at-fault collisions {m.num_at_fault_collisions}  ended: {m.ended_early or 'no'}",
    ]


def machine_line() -> str:
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    return (
        f"{platform.machine()} {platform.processor() or ''} {os.cpu_count()} logical cores; Python "
        f"{platform.python_version()}; 1/5/15-min load average {load[0]:.1f}/{load[1]:.1f}/{load[2]:.1f}"
    )


def write_report(report: ClosedLoopReport, path: str, **extra: object) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(jsonable(report.to_dict(**extra)), f, indent=1)


def jsonable(obj):
    """JSON-ready copy: numpy scalars and arrays as Python values, non-finite floats as None (strict JSON)."""
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return jsonable(obj.item())
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    return obj


def config_record(world_cfg: SynthConfig, sim_cfg: SimConfig) -> dict:
    return {"world": config_to_dict(world_cfg), "sim": config_to_dict(sim_cfg)}


__all__ = [
    "BASELINE_ORDER",
    "ClosedLoopReport",
    "RunOptions",
    "config_record",
    "jsonable",
    "machine_line",
    "run_closed_loop",
    "summary_lines",
    "write_report",
]
