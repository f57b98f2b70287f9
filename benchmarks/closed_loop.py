"""``dima bench closed-loop``: the planner(s) against the baselines in the closed-loop simulator, on held-out seeds,
every scenario; the table, the command and the machine go to ``docs/benchmarks.md``.

    dima bench closed-loop --policy onnx:models/planner.onnx --admlp models/admlp.pt --episodes 3 --seed 1000

The seeds default to 1000 and up: scenes the training world (seed 0, `config/synth_drive.yaml`) never contained.
The per-episode report (``report.json``) is written to ``--out`` beside the table.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Any

from dima_core.commands.sim import add_common_arguments

SECTION = "## Closed loop (`dima bench closed-loop`)"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("closed-loop", help="planner(s) vs baselines in the closed-loop simulator -> docs")
    p.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="SPEC",
        help="checkpoint:PATH | onnx:PATH (repeatable); the baselines run beside them",
    )
    add_common_arguments(p)
    p.set_defaults(seed=1000, episodes=2)
    p.add_argument("--out", default="runs/bench_closed_loop", help="folder for report.json, table.md, episodes/")
    p.add_argument("--video", action="store_true", help="also write the planners' MP4s")
    p.add_argument("--doc", default="docs/benchmarks.md", help="markdown file to update ('' to skip)")
    p.add_argument("--note", default="", help="a sentence added under the table (what was run and why)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from benchmarks.planner import update_doc
    from dima_core.commands.sim import prepare_run
    from dima_core.sim.runner import RunOptions, config_record, machine_line, run_closed_loop, write_report

    prepared = prepare_run(args, "dima bench closed-loop")
    if prepared is None:
        return 2
    scenarios, world_cfg, sim_cfg, policies = prepared
    seeds = list(range(args.seed, args.seed + args.episodes))
    machine_at_start = machine_line()
    report = run_closed_loop(
        world_cfg, sim_cfg, scenarios, seeds, policies, RunOptions(out_dir=args.out, video=args.video, progress=print)
    )
    command = "dima bench closed-loop " + " ".join(shlex.quote(a) for a in _bench_argv(args))
    write_report(
        report,
        os.path.join(args.out, "report.json"),
        command=command,
        machine=machine_at_start,
        seeds=seeds,
        scenarios=scenarios,
        config=config_record(world_cfg, sim_cfg),
    )
    table = report.table()
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    if args.doc:
        update_doc(
            args.doc,
            doc_section(args, report, table, command, machine_at_start, scenarios, seeds, sim_cfg),
            title=SECTION,
        )
        print(f"updated {args.doc}")
    return 0


def doc_section(
    args: argparse.Namespace,
    report: Any,
    table: str,
    command: str,
    machine_at_start: str,
    scenarios: list[str],
    seeds: list[int],
    sim_cfg: Any,
) -> str:
    """The docs/benchmarks.md section: how it was run, the score formula and success rule, the table, the note."""
    lines = [
        SECTION,
        "",
        f"- command: `{command}`",
        f"- machine at start: {machine_at_start}; whole run {report.wall_s / 60:.1f} min",
        f"- world: `{args.world_config or sim_cfg.world_config}`, scenarios {', '.join(scenarios)}, seeds "
        f"{seeds[0]}..{seeds[-1]} ({len(seeds)} episode(s) per scenario and policy), "
        f"{sim_cfg.planning_hz:g} Hz planning, {sim_cfg.sim_hz:g} Hz simulation; per-episode metrics in "
        f"`{os.path.join(args.out, 'report.json')}`",
        f"- {report.to_dict()['formula']}",
        f"- {report.to_dict()['success_rule']}",
        "",
        table,
        "",
    ]
    if args.note:
        lines += [args.note, ""]
    return "\n".join(lines)


def _bench_argv(args: argparse.Namespace) -> list[str]:
    argv = getattr(args, "argv", sys.argv[1:])
    return argv[argv.index("closed-loop") + 1 :] if "closed-loop" in argv else argv


__all__ = ["SECTION", "add_parser", "run"]
