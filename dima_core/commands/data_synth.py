"""``dima data synth``: generate a synthetic nuScenes-format dataroot (see dima_core.data.synth)."""

from __future__ import annotations

import argparse
import logging
import os
import time

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "synth",
        help="generate a synthetic driving world in nuScenes format",
        description="Procedural driving world written as a nuScenes dataroot (tables, 6 cameras, LIDAR_TOP, map "
        "expansion, CAN bus, synth_meta.json with splits and scenario tags). Deterministic for a seed.",
    )
    p.add_argument("--out", required=True, help="output dataroot (must be empty or absent unless --overwrite)")
    p.add_argument("--scenes", type=int, default=4, help="number of scenes (default 4)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--scenario",
        action="append",
        default=None,
        metavar="NAME",
        help="only these scenarios, cycled over the scenes (repeatable); default: the config's scenario_mix",
    )
    p.add_argument("--config", default=None, help="YAML with SynthConfig keys (e.g. config/synth.yaml)")
    p.add_argument("--version", default=None, help="table folder name, e.g. v1.0-synth (default), v1.0-mini")
    p.add_argument("--width", type=int, default=None, help="image width (default 400)")
    p.add_argument("--height", type=int, default=None, help="image height (default 225)")
    p.add_argument("--seconds", type=float, default=None, help="scene length in seconds (default 20)")
    p.add_argument("--no-qa", action="store_true", help="skip the DriveLM-format QA file (drivelm_synth.json)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace a non-empty --out directory (only one this command wrote: it holds synth_meta.json)",
    )
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace):
    """SynthConfig from --config plus command-line overrides (validated like any config file)."""
    from dima_core.config import config_from_dict, config_to_dict, load_config
    from dima_core.data.synth import SynthConfig

    cfg = load_config(args.config, SynthConfig) if args.config else SynthConfig()
    data = config_to_dict(cfg)
    if args.version is not None:
        data["version"] = args.version
    if args.width is not None:
        data["camera"]["width"] = args.width
    if args.height is not None:
        data["camera"]["height"] = args.height
    if getattr(args, "seconds", None) is not None:
        data["scene_seconds"] = args.seconds
    return config_from_dict(data, SynthConfig, source="command line")


def run(args: argparse.Namespace) -> int:
    from dima_core.data.synth import META_FILE, generate_dataset

    if args.scenes < 1:
        raise ValueError("--scenes must be >= 1")
    cfg = build_config(args)
    if os.path.exists(args.out) and os.listdir(args.out):
        if not args.overwrite:
            raise ValueError(f"{args.out} exists and is not empty; pass --overwrite to replace it")
        if not os.path.exists(os.path.join(args.out, META_FILE)):
            raise ValueError(
                f"{args.out} is not empty and is not a synthetic dataroot (no {META_FILE}); not deleting it"
            )
    start = time.perf_counter()

    def progress(scene) -> None:
        log.info("wrote %s (%s, %s)", scene.name, scene.scenario, scene.location)

    summary = generate_dataset(
        args.out, cfg, args.scenes, args.seed, args.scenario, args.overwrite, progress, write_qa=not args.no_qa
    )
    elapsed = time.perf_counter() - start
    print(
        f"wrote {summary['scenes']} scenes, {summary['keyframes']} keyframes, {summary['annotations']} annotations "
        f"to {args.out} (version {cfg.version}) in {elapsed:.1f} s"
    )
    if "qa_file" in summary:
        print(f"wrote {summary['qa_pairs']} rule-based QA pairs to {summary['qa_file']}")
    return 0
