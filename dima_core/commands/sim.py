"""``dima sim run`` / ``dima sim fit-admlp``: drive policies in the closed-loop simulator.

    dima sim run --policy onnx:models/planner.onnx --scenarios all --episodes 2 --seed 100 --out runs/sim
    dima sim run --policy checkpoint:runs/planner_drive --scenarios cruise turn_left --out runs/sim_ckpt
    dima sim fit-admlp --dataroot data/synth_drive --out models/admlp.pt     # then --admlp models/admlp.pt

Writes ``report.json`` (every episode's metrics, the aggregates, the score formula), ``table.md`` (policies x
scenarios, beside the expert, log replay, constant velocity and AD-MLP), and per episode a PNG summary and, for the
non-baseline policies, an MP4 (cameras with the plan, BEV with map, agents, plan and driven path).
"""

from __future__ import annotations

import argparse
import logging
import os

from dima_core.data.synth.config import SCENARIOS

log = logging.getLogger(__name__)


def add_parser(groups: argparse._SubParsersAction) -> None:
    sim = groups.add_parser("sim", help="closed-loop simulator: the planner drives, the synthetic world reacts")
    commands = sim.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="drive policies through closed-loop episodes and score them")
    run.add_argument(
        "--policy",
        action="append",
        default=[],
        metavar="SPEC",
        help="checkpoint:PATH | onnx:PATH | expert | log_replay | cv | ad_mlp:PATH (repeatable)",
    )
    add_common_arguments(run)
    run.add_argument("--out", required=True, help="output folder (report.json, table.md, episodes/)")
    run.add_argument("--no-video", action="store_true", help="skip the MP4s (PNG summaries are still written)")
    run.set_defaults(func=run_sim)

    fit = commands.add_parser("fit-admlp", help="fit the AD-MLP baseline on a dataset's training split")
    fit.add_argument("--dataroot", required=True)
    fit.add_argument("--version", default="v1.0-synth")
    fit.add_argument("--split", default="train")
    fit.add_argument("--epochs", type=int, default=300)
    fit.add_argument("--index", default=None, help="a `dima data index` file of the dataroot (built if absent)")
    fit.add_argument("--out", required=True, help="model file (torch state dict, weights only)")
    fit.set_defaults(func=run_fit_admlp)


def add_common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scenarios", nargs="+", default=["all"], help=f"scenario names or 'all' ({', '.join(SCENARIOS)})")
    p.add_argument("--episodes", type=int, default=1, help="episodes (seeds) per scenario")
    p.add_argument("--seed", type=int, default=0, help="first seed; episodes use seed, seed+1, ...")
    p.add_argument("--sim-config", default="config/sim.yaml", help="SimConfig YAML")
    p.add_argument("--world-config", default=None, help="SynthConfig YAML (default: the sim config's world_config)")
    p.add_argument("--seconds", type=float, default=None, help="episode length (default: the world's scene length)")
    p.add_argument(
        "--baselines",
        nargs="*",
        default=["expert", "log_replay", "cv"],
        help="baseline policies run beside the given ones (default: expert log_replay cv)",
    )
    p.add_argument("--admlp", default=None, help="AD-MLP model file (`dima sim fit-admlp`): adds the ad_mlp baseline")
    p.add_argument("--threads", type=int, default=1, help="CPU threads of the planner backends")


def load_configs(args: argparse.Namespace):
    """(world config, sim config) from the arguments; ConfigError on a bad file."""
    from dataclasses import replace

    from dima_core.config import load_config
    from dima_core.data.synth.config import SynthConfig
    from dima_core.sim.config import SimConfig

    sim_cfg = load_config(args.sim_config, SimConfig) if args.sim_config else SimConfig()
    if args.seconds is not None:
        sim_cfg = replace(sim_cfg, episode_seconds=float(args.seconds))
    world_path = args.world_config or sim_cfg.world_config
    world_cfg = load_config(world_path, SynthConfig) if world_path else SynthConfig()
    if sim_cfg.camera_width is not None:
        world_cfg = replace(
            world_cfg, camera=replace(world_cfg.camera, width=sim_cfg.camera_width, height=sim_cfg.camera_height)
        )
    return world_cfg, sim_cfg


def build_policies(specs: list[str], baselines: list[str], admlp: str | None, threads: int) -> list:
    from dima_core.sim.policies import make_policy

    names = list(dict.fromkeys(baselines + specs + ([f"ad_mlp:{admlp}"] if admlp else [])))
    return [make_policy(spec, threads=threads) for spec in names]


def resolve_scenarios(names: list[str]) -> list[str]:
    from dima_core.sim.scene import check_scenarios

    return list(SCENARIOS) if names == ["all"] else check_scenarios(names)


def prepare_run(args: argparse.Namespace, prog: str):
    """(scenarios, world config, sim config, policies) from the common arguments, or None after printing why
    (unknown scenario, a policy that does not load); a bad config file raises ConfigError (exit 2 in the CLI)."""
    from dima_core.sim.policies import PolicyLoadError
    from dima_core.sim.scene import UnknownScenarioError

    try:
        scenarios = resolve_scenarios(args.scenarios)
        world_cfg, sim_cfg = load_configs(args)
        policies = build_policies(args.policy, args.baselines, args.admlp, args.threads)
    except (PolicyLoadError, UnknownScenarioError) as exc:
        print(f"{prog}: {exc}")
        return None
    return scenarios, world_cfg, sim_cfg, policies


def run_sim(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from dima_core.sim.runner import RunOptions, config_record, machine_line, run_closed_loop, write_report

    prepared = prepare_run(args, "dima sim")
    if prepared is None:
        return 2
    scenarios, world_cfg, sim_cfg, policies = prepared
    if not policies:
        print("dima sim: no policy to run (give --policy or keep --baselines)")
        return 2
    seeds = list(range(args.seed, args.seed + args.episodes))
    total = len(scenarios) * len(seeds) * (len(policies) + (0 if any(p.name == "expert" for p in policies) else 1))
    bar = tqdm(total=total, desc="closed loop", unit="episode", disable=None)

    def progress(line: str) -> None:
        bar.update(1)
        bar.write(line)

    report = run_closed_loop(
        world_cfg,
        sim_cfg,
        scenarios,
        seeds,
        policies,
        RunOptions(out_dir=args.out, video=not args.no_video, progress=progress),
    )
    bar.close()
    table = report.table()
    os.makedirs(args.out, exist_ok=True)
    write_report(
        report,
        os.path.join(args.out, "report.json"),
        command=_command_line(args),
        machine=machine_line(),
        seeds=seeds,
        scenarios=scenarios,
        config=config_record(world_cfg, sim_cfg),
    )
    with open(os.path.join(args.out, "table.md"), "w") as f:
        f.write(table + "\n")
    print(table)
    print(f"\n{report.to_dict()['formula']}")
    print(
        f"wrote {os.path.join(args.out, 'report.json')}, table.md and {len(report.files)} episode files "
        f"({report.wall_s:.0f} s)"
    )
    return 0


def run_fit_admlp(args: argparse.Namespace) -> int:
    from dima_core.data.index import SampleIndex, build_index
    from dima_core.data.nuscenes_reader import NuScenesReader
    from dima_core.eval.baselines import ADMLPConfig
    from dima_core.eval.evaluate import fit_admlp

    if args.index and os.path.isfile(args.index):
        index = SampleIndex.load(args.index, dataroot=args.dataroot, version=args.version)
    else:
        index = build_index(NuScenesReader(args.dataroot, args.version), split=args.split)
    samples = [index.get(t) for t in index.tokens(args.split)]
    model = fit_admlp(samples, ADMLPConfig(epochs=args.epochs))
    if model is None:
        print(f"dima sim fit-admlp: split {args.split!r} has no sample with a full future")
        return 2
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    model.save(args.out)
    print(f"AD-MLP fitted on {len(samples)} samples of {args.split} -> {args.out}")
    return 0


def _command_line(args: argparse.Namespace) -> str:
    import shlex
    import sys

    return "dima " + " ".join(shlex.quote(a) for a in getattr(args, "argv", sys.argv[1:]))


__all__ = ["add_common_arguments", "add_parser", "build_policies", "load_configs", "prepare_run", "resolve_scenarios"]
