"""``dima viz``: per-sample pictures and a video per scene of a planner's outputs over a split.

    dima viz --checkpoint CKPT --dataroot DIR --version V [--split val] [--scene NAME] [--out DIR]
             [--max-samples N] [--score-threshold 0.3] [--tile-width 320] [--fps 2] [--device cpu|cuda]
    dima viz --results FILE --dataroot DIR --version V [--split val] [--scene NAME] [--out DIR] [--max-samples N]

Each keyframe becomes ``OUT/<scene>/<nnn>_<token>.png``: the six cameras with the GT boxes and the PREDICTED boxes
(score >= ``--score-threshold``; checkpoint mode), the planned trajectory (red) and the GT future (green) projected
on the ground in the front camera, and the BEV panel with the GT map and agents, the predicted map and boxes, the
three command-conditioned modes (faint) and the plan against the GT future. Each scene also becomes
``OUT/<scene>.mp4`` (cv2 ``mp4v``, ``--fps`` frames per second: nuScenes keyframes come at 2 Hz), read back with
``cv2.VideoCapture`` after writing to check every frame decodes.

``--results`` draws an external planner's trajectories from a results file (docs/design.md, Evaluation protocol);
no model runs.
"""

from __future__ import annotations

import argparse
import logging
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

logger = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "viz",
        help="pictures and per-scene videos of a planner's plans, boxes and map over a split",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", metavar="CKPT", help="stage-1 planner checkpoint file or run directory")
    source.add_argument("--results", metavar="FILE", help="results file {meta, results: {token: {trajectory}}}")
    parser.add_argument("--dataroot", required=True, help="nuScenes (or synthetic world) root")
    parser.add_argument("--version", required=True, help="table version, e.g. v1.0-mini")
    parser.add_argument("--split", default="val", help="split to draw ('all' for every sample); default val")
    parser.add_argument("--scene", action="append", default=[], help="only this scene (name); repeatable")
    parser.add_argument("--out", default="viz", help="output folder (default ./viz)")
    parser.add_argument("--max-samples", type=int, default=None, help="stop after this many keyframes in total")
    parser.add_argument(
        "--score-threshold",
        type=float,
        default=0.3,
        help="predicted boxes and map vectors below this class score are not drawn",
    )
    parser.add_argument("--tile-width", type=int, default=320, help="pixels per camera tile")
    parser.add_argument("--fps", type=float, default=2.0, help="video frame rate (keyframes are 2 Hz)")
    parser.add_argument("--no-video", action="store_true", help="PNGs only")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="device of the planner")
    parser.add_argument("--index", metavar="FILE", help="cached index at the model's map resolution (checkpoint mode)")
    parser.add_argument("--name", help="method name in the captions (default: model name or results file stem)")
    parser.set_defaults(func=run)
    return parser


def _select(tokens_and_scenes: list[tuple[str, str]], scenes: list[str], max_samples: int | None) -> list[str]:
    """Tokens (in dataset order: scene by scene, in time) of the wanted scenes, capped at ``max_samples``."""
    if scenes:
        known = {scene for _, scene in tokens_and_scenes}
        unknown = [s for s in scenes if s not in known]
        if unknown:
            raise ValueError(f"scene(s) {unknown} not in the selected split (scenes: {sorted(known)})")
    chosen = [t for t, scene in tokens_and_scenes if not scenes or scene in scenes]
    return chosen[:max_samples] if max_samples is not None else chosen


def _checkpoint_layers(args: argparse.Namespace, split: str | None) -> tuple[str, list[Any], dict[str, Any]]:
    """(method name, samples to draw, token -> PredictionLayer) for checkpoint mode."""
    import torch

    from dima_core.eval.detection_metrics import decode_detections
    from dima_core.eval.map_metrics import decode_map
    from dima_core.eval.planner_inference import eval_index, inference_dataset, load_planner_for_cli, run_planner
    from dima_core.viz import PredictionLayer

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    loaded = load_planner_for_cli(args.checkpoint)
    index = eval_index(loaded, args.dataroot, args.version, split, args.index)
    dataset = inference_dataset(loaded, index, split)
    selected = _select([(t, index.get(t).scene_name) for t in dataset.tokens], args.scene, args.max_samples)
    # Only the drawn keyframes run through the model; history frames still come from the full index.
    dataset.tokens = selected
    result = run_planner(loaded.model, dataset, batch_size=1, device=device)
    name = args.name or loaded.model_config.name
    layers = {}
    for token in selected:
        p = result.predictions[token]
        det = decode_detections(p.agent_boxes, p.agent_scores, p.agent_velocities, score_threshold=args.score_threshold)
        vmap = decode_map(p.map_polylines, p.map_scores, score_threshold=args.score_threshold)
        layers[token] = PredictionLayer(
            trajectory=p.trajectory,
            modes=p.trajectories,
            boxes=det.boxes,
            box_labels=det.labels,
            map_polylines=vmap.polylines,
            map_labels=vmap.labels,
        )
    return name, [index.get(t) for t in selected], layers


def _results_layers(args: argparse.Namespace, split: str | None) -> tuple[str, list[Any], dict[str, Any]]:
    """(method name, samples to draw, token -> PredictionLayer) for results-file mode (trajectories only)."""
    from dima_core.data.nuscenes_reader import NuScenesReader
    from dima_core.eval.results_file import load_results
    from dima_core.viz import PredictionLayer

    reader = NuScenesReader(args.dataroot, args.version, with_map=True)
    results = load_results(args.results, known_tokens=reader.sample_tokens(None))
    in_split = [t for t in reader.sample_tokens(split) if t in results.trajectories]
    if not in_split:
        raise ValueError(f"{args.results} has no result for any sample of split '{args.split}'")
    scene_of = {}
    for scene in reader.nusc.scene:  # scene names without building samples (no map work for skipped frames)
        token = scene["first_sample_token"]
        while token:
            scene_of[token] = scene["name"]
            token = reader.nusc.get("sample", token)["next"]
    selected = _select([(t, scene_of[t]) for t in in_split], args.scene, args.max_samples)
    layers = {t: PredictionLayer(trajectory=results.trajectories[t]) for t in selected}
    return args.name or Path(args.results).stem, [reader.build_sample(t) for t in selected], layers


def run(args: argparse.Namespace) -> int:
    from dima_core.constants import COMMAND_NAMES
    from dima_core.viz import RenderOptions, VideoWriter, count_video_frames, render_sample, save_png

    if args.max_samples is not None and args.max_samples < 1:
        raise ValueError("--max-samples must be >= 1")
    split = None if args.split == "all" else args.split
    build = _checkpoint_layers if args.checkpoint else _results_layers
    name, samples, layers = build(args, split)
    if not samples:
        raise ValueError(f"nothing to draw in split '{args.split}'")

    out = Path(args.out)
    by_scene: OrderedDict[str, list[Any]] = OrderedDict()
    for sample in samples:
        by_scene.setdefault(sample.scene_name, []).append(sample)
    options = RenderOptions(tile_width=args.tile_width)
    num_png = 0
    videos: list[tuple[Path, int]] = []
    for scene, scene_samples in by_scene.items():
        writer = None if args.no_video else VideoWriter(out / f"{scene}.mp4", fps=args.fps)
        try:
            for i, sample in enumerate(scene_samples):
                layer = layers[sample.token]
                caption = f"{name} | cmd {COMMAND_NAMES[sample.command]}"
                if sample.has_full_future and layer.trajectory is not None:
                    l2 = np.linalg.norm(np.asarray(layer.trajectory) - sample.ego_future, axis=-1)
                    caption += f" | L2@3s (VAD) {l2.mean():.2f} m"
                layer.caption = caption
                image = render_sample(sample, layer, options=options)
                save_png(image, out / scene / f"{i:03d}_{sample.token}.png")
                num_png += 1
                if writer is not None:
                    writer.write(image)
        finally:
            if writer is not None:
                writer.close()
        if writer is not None:
            # Read back: a writer without a working codec "succeeds" and leaves an empty or unreadable file.
            decoded = count_video_frames(writer.path)
            if decoded != writer.num_frames:
                raise OSError(f"{writer.path}: wrote {writer.num_frames} frames but cv2 reads back {decoded}")
            videos.append((writer.path, decoded))
    print(f"{num_png} pictures in {out} ({len(by_scene)} scene(s))")
    for path, frames in videos:
        print(f"video {path}: {frames} frames at {args.fps:g} fps")
    return 0
