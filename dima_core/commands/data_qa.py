"""``dima data qa``: rule-based DriveLM-format QA for every keyframe of a nuScenes-format dataset.

    dima data qa --dataroot data/nuscenes --version v1.0-mini --split val --out data/qa/mini_val_qa.json

Questions in DriveLM's four categories (perception, prediction, planning, behavior) with ``<c,CAM,x,y>`` tags at
the pixel where each key object is rendered; answers from the annotations. Generator options come from
``--config`` (``config/qa.yaml``, section ``qa``). Image paths in the file are relative to its folder (as DriveLM).
"""

from __future__ import annotations

import argparse
import logging
import time

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "qa",
        help="write rule-based DriveLM-format QA for every keyframe",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataroot", required=True, help="dataset root (holds <version>/, samples/, maps/)")
    parser.add_argument("--version", required=True, help="table version, e.g. v1.0-mini, v1.0-trainval")
    parser.add_argument("--split", default=None, help="train / val / test (default: every scene)")
    parser.add_argument("--out", required=True, help="DriveLM JSON file to write")
    parser.add_argument("--config", default=None, help="YAML with a 'qa' section (QAConfig), e.g. config/qa.yaml")
    parser.add_argument("--no-map", action="store_true", help="skip the vector map (no map expansion)")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from dima_core.config import load_config
    from dima_core.data.nuscenes_reader import NuScenesReader
    from dima_core.data.qa import QAConfig, write_qa_for_dataset

    cfg = load_config(args.config, QAConfig, section="qa") if args.config else QAConfig()
    start = time.perf_counter()
    reader = NuScenesReader(args.dataroot, args.version, with_map=not args.no_map)
    dataset = write_qa_for_dataset(reader, args.out, cfg, split=args.split)
    elapsed = time.perf_counter() - start
    print(
        f"wrote {dataset.num_qa} QA pairs for {dataset.num_frames} keyframes in {len(dataset.scenes)} scenes "
        f"to {args.out} ({elapsed:.1f} s)"
    )
    return 0
