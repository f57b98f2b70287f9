"""``dima data show``: one keyframe as a picture: the six cameras with projected GT boxes and a BEV panel.

    dima data show --dataroot data/synth --version v1.0-trainval --sample 0 --out x.png
    dima data show --dataroot data/nuscenes --version v1.0-mini --sample <sample token> --qa --out x.png

``--sample`` takes a sample token or an integer index into the keyframes (scene by scene in time order, within
``--split`` when given). ``--qa`` also marks the c-tags of the rule-based QA generator's key objects.
"""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "show",
        help="render one keyframe: cameras with 3D boxes and a BEV panel",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--dataroot", required=True, help="dataset root (holds <version>/, samples/, maps/)")
    parser.add_argument("--version", required=True, help="table version, e.g. v1.0-mini, v1.0-trainval")
    parser.add_argument("--sample", default="0", help="sample token, or an integer index into the keyframes")
    parser.add_argument("--split", default=None, help="with an integer --sample: index within this split")
    parser.add_argument("--out", required=True, help="PNG file to write")
    parser.add_argument("--tile-width", type=int, default=480, help="pixels per camera tile (default 480)")
    parser.add_argument("--qa", action="store_true", help="mark the QA generator's key-object c-tags")
    parser.add_argument("--no-map", action="store_true", help="skip the vector map (no map expansion)")
    parser.set_defaults(func=run)
    return parser


def resolve_sample_token(tokens: list[str], sample: str) -> str:
    """A token from ``--sample``: a listed token as is, or an integer index (negative counts from the end)."""
    if sample in tokens:
        return sample
    try:
        index = int(sample)
    except ValueError:
        raise ValueError(
            f"--sample {sample!r} is neither a sample token of this dataset nor an integer index"
        ) from None
    if not -len(tokens) <= index < len(tokens):
        raise ValueError(f"--sample {index} is out of range: the dataset has {len(tokens)} keyframes")
    return tokens[index]


def run(args: argparse.Namespace) -> int:
    from dima_core.data.nuscenes_reader import NuScenesReader
    from dima_core.viz import RenderOptions, render_sample, save_png

    if args.tile_width < 32:
        raise ValueError(f"--tile-width must be at least 32, got {args.tile_width}")
    reader = NuScenesReader(args.dataroot, args.version, with_map=not args.no_map)
    token = resolve_sample_token(reader.sample_tokens(args.split), args.sample)
    sample = reader.build_sample(token)
    tags = []
    if args.qa:
        from dima_core.data.qa import generate_frame

        frame, _ = generate_frame(sample)
        tags = [obj.tag for obj in frame.key_objects]
    image = render_sample(sample, tags=tags, options=RenderOptions(tile_width=args.tile_width))
    save_png(image, args.out)
    print(f"sample {token} (scene {sample.scene_name}): wrote {args.out} ({image.shape[1]}x{image.shape[0]})")
    return 0
