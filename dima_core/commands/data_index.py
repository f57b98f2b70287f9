"""``dima data index``: read every keyframe through the devkit once and cache the samples (no pixels) in a file.

    dima data index --dataroot data/nuscenes --version v1.0-mini --split val --out data/index/mini_val.pkl

Settings not on the command line (CAN-bus root, map points, long-tail token files...) come from ``--config``
(``config/data.yaml``, section ``data``); command-line values override it.
"""

from __future__ import annotations

import argparse
import logging
import time

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "index",
        help="cache all samples of a nuScenes-format dataset for training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataroot", required=True, help="dataset root (holds <version>/, samples/, maps/)")
    parser.add_argument("--version", required=True, help="table version, e.g. v1.0-mini, v1.0-trainval")
    parser.add_argument("--split", default=None, help="train / val / test (default: every scene)")
    parser.add_argument("--out", required=True, help="index file to write (atomically)")
    parser.add_argument("--config", default=None, help="YAML with a 'data' section (DataConfig)")
    parser.add_argument("--can-bus-root", default=None, help="folder holding can_bus/ (default: the dataroot)")
    parser.add_argument(
        "--longtail",
        action="append",
        default=None,
        metavar="FILE",
        help='token-list JSON {"<split>": [sample tokens]} whose keys become sample tags (repeatable)',
    )
    parser.add_argument("--no-map", action="store_true", help="skip the vector map (no map expansion)")
    parser.add_argument("--no-can-bus", action="store_true", help="ego status from ego poses even with CAN data")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from dima_core.config import config_from_dict, config_to_dict, load_config
    from dima_core.data.config import DataConfig
    from dima_core.data.index import build_index
    from dima_core.data.nuscenes_reader import NuScenesReader

    cfg = load_config(args.config, DataConfig, section="data") if args.config else DataConfig()
    overrides = {"dataroot": args.dataroot, "version": args.version}
    if args.can_bus_root is not None:
        overrides["can_bus_root"] = args.can_bus_root
    if args.longtail:
        overrides["longtail_token_files"] = list(args.longtail)
    if args.no_map:
        overrides["with_map"] = False
    if args.no_can_bus:
        overrides["use_can_bus"] = False
    cfg = config_from_dict({**config_to_dict(cfg), **overrides}, DataConfig, source="command line")

    start = time.perf_counter()
    reader = NuScenesReader.from_config(cfg)
    if args.split is not None and not reader.scene_names(args.split):
        raise ValueError(
            f"split '{args.split}' has no scenes in {cfg.dataroot} ({cfg.version}); splits come from "
            f"{reader.splits.source or 'nowhere'}"
        )
    index = build_index(reader, split=args.split, progress=True)
    path = index.save(args.out)
    seconds = time.perf_counter() - start
    sources: dict[str, int] = {}
    for sample in index:
        sources[sample.ego_status.source] = sources.get(sample.ego_status.source, 0) + 1
    print(
        f"wrote {len(index)} samples of {cfg.dataroot} ({cfg.version}, split {args.split or 'all'}) to {path} "
        f"in {seconds:.1f} s; ego status from {sources or 'nothing'}"
    )
    return 0
