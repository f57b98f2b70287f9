"""``dima data cache``: decode every camera image of a sample index once, at the network input size, into a
memory-mapped uint8 cache that training reads instead of the JPEGs (``data.dataset.image_cache``).

    dima data index --dataroot data/synth --version v1.0-synth --out data/index/synth.pkl
    dima data cache --index data/index/synth.pkl --train-config config/train/stage1_dima_cpu.yaml \
        --out data/cache/synth_128x72

The size and interpolation come from a training config (the model's input size, as stage 1 uses it), a model config,
or ``--image-size H W``. Items read from the cache equal items decoded from the JPEGs bit for bit. The cache records
what its pixels depend on (dataset fingerprint, image size, interpolation, source files); a cache built for other
data or another size is refused, by this command (unless ``--force``) and by training.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "cache",
        help="pre-decode the images of an index at model resolution for fast training",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--index", required=True, help="sample index from `dima data index`")
    parser.add_argument("--out", required=True, help="cache directory to write")
    size = parser.add_mutually_exclusive_group(required=True)
    size.add_argument("--train-config", help="training YAML: its model's input size and its interpolation")
    size.add_argument("--model-config", help="model YAML: its input size (interpolation: --interpolation)")
    size.add_argument("--image-size", type=int, nargs=2, metavar=("H", "W"), help="network input height and width")
    parser.add_argument(
        "--interpolation",
        default=None,
        choices=("linear", "area", "nearest", "cubic"),
        help="resize filter (default: the training config's data.dataset.interpolation, else area)",
    )
    parser.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    parser.add_argument("--force", action="store_true", help="replace a cache built for other data or settings")
    parser.set_defaults(func=run)
    return parser


def resolve_size(args: argparse.Namespace) -> tuple[tuple[int, int], str]:
    """``((height, width), interpolation)`` from whichever of the size options was given."""
    from dima_core.config import load_config
    from dima_core.models import load_model_config
    from dima_core.training.stage1 import resolve_repo_path

    interpolation = args.interpolation
    if args.train_config:
        from dima_core.training.config import TrainConfig

        train = load_config(resolve_repo_path(args.train_config), TrainConfig)
        width, height = load_model_config(resolve_repo_path(train.model_config)).image_size
        return (int(height), int(width)), interpolation or train.data.dataset.interpolation
    if args.model_config:
        width, height = load_model_config(resolve_repo_path(args.model_config)).image_size
        return (int(height), int(width)), interpolation or "area"
    height, width = args.image_size
    if height < 16 or width < 16:
        raise ValueError(f"--image-size {height} {width}: both must be at least 16 pixels")
    return (int(height), int(width)), interpolation or "area"


def run(args: argparse.Namespace) -> int:
    from dima_core.data.image_cache import build_image_cache
    from dima_core.data.index import SampleIndex

    size, interpolation = resolve_size(args)
    index = SampleIndex.load(args.index)
    cache = build_image_cache(
        index, args.out, size, interpolation, workers=args.workers, overwrite=args.force, progress=True
    )
    print(
        f"image cache {cache.path}: {len(cache)} samples x 6 cameras at {size[1]}x{size[0]} ({interpolation}) "
        f"from {index.dataroot}"
    )
    return 0
