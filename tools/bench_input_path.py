#!/usr/bin/env python
"""The planner node's input path, measured: JPEG decode + resize + normalise of six camera images per frame, the
exact training path (full decode, then resize) against scaled decoding (libjpeg 1/2, 1/4, 1/8, then the remainder),
and how far the scaled tensors are from the training ones.

    source tools/env.sh && python tools/bench_input_path.py --iters 40 --out /tmp/input_path.json

Frames are rendered by the synthetic world (dima_core.data.synth: road, lane marks, buildings, vehicles,
pedestrians, per-scene lighting, sensor noise) at the full nuScenes size and JPEG-encoded at quality 90, like the
bag's camera JPEGs (~200 KiB); a flat or random-noise image would decode unrealistically fast or slow. The same
world is rendered at the synthetic dataset's size (400x225) for the accuracy figures.

What is timed is exactly what the node's worker does per camera (:func:`dima_core.runtime.preprocess.decode_for_network`
and :func:`~dima_core.runtime.preprocess.camera_tensor`), for each network input size:

- ``full``: ``jpeg_max_reduction`` 1, the training path bit for bit;
- ``scaled``: ``jpeg_max_reduction`` 8, the largest reduction whose image still covers the input;

per camera and per frame of six (sequential), on one core (this process pinned to one CPU, OpenCV and BLAS at one
thread), and per frame with :class:`~dima_core.runtime.preprocess.CameraPipeline` at 1, 2 and 3 threads on two cores.
Accuracy: max, p99.9 and mean absolute difference of the normalised tensor (mean 0, std 1, as the shipped models
expect; on [0, 1] pixels) against the training path.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGETS = {"dima_cpu": (128, 72), "dima_tiny": (256, 144)}  # config/model/*.yaml image_size (width, height)
FULL_SIZE = (1600, 900)
SYNTH_SIZE = (400, 225)


def render_jpegs(
    size: tuple[int, int], scenes: int, frames: int, quality: int = 90, seed: int = 5, raw: list | None = None
) -> list[list[bytes]]:
    """``[frame][camera]`` JPEG bytes from the synthetic world rendered at ``size`` (the rendered RGB images are
    appended to ``raw`` when given, in the same order)."""
    import cv2

    from dima_core.config import config_from_dict
    from dima_core.data.synth import SynthConfig, SynthWorld

    cfg = config_from_dict(
        {"scene_seconds": 5.0, "camera": {"width": size[0], "height": size[1]}}, SynthConfig, source="bench_input_path"
    )
    world = SynthWorld.generate(cfg, seed, scenes, ["cruise", "turn_left", "ped_crossing", "follow"][:scenes])
    out = []
    for scene in world.scenes:
        for k in range(frames):
            images, _, _ = scene.render(1 + 4 * k)
            encoded = []
            for image in images:
                if raw is not None:
                    raw.append(image[:, :, ::-1].copy())
                ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
                assert ok
                encoded.append(buf.tobytes())
            out.append(encoded)
    return out


def _stats(ms: list[float]) -> dict[str, float]:
    a = np.asarray(ms, np.float64)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "mean": float(a.mean())}


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1000.0


def measure(frames: list[list[bytes]], iters: int) -> dict[str, Any]:
    import cv2

    from dima_core.runtime.preprocess import CameraModel, PreprocessSettings, camera_tensor, decode_for_network

    cv2.setNumThreads(1)
    width, height = FULL_SIZE
    cam = CameraModel(np.diag([1266.0, 1266.0, 1.0]), width, height, np.eye(4))
    results: dict[str, Any] = {}
    for model, target in TARGETS.items():
        paths = {
            "full": PreprocessSettings(target, jpeg_max_reduction=1),
            "scaled": PreprocessSettings(target, jpeg_max_reduction=8),
        }
        per_cam: dict[str, list[float]] = {p: [] for p in paths}
        decode_only: dict[str, list[float]] = {p: [] for p in paths}
        per_frame: dict[str, list[float]] = {p: [] for p in paths}
        reduction = decode_for_network(frames[0][0], "jpeg", paths["scaled"]).reduction
        for it in range(iters):
            jpegs = frames[it % len(frames)]
            for name, settings in paths.items():  # interleaved: load changes hit both paths alike
                t_frame = 0.0
                for data in jpegs:
                    # _time calls the lambda before it returns, in this iteration: late binding cannot bite.
                    t_dec = _time(lambda: decode_for_network(data, "jpeg", settings))  # noqa: B023
                    t = _time(lambda: camera_tensor(decode_for_network(data, "jpeg", settings), cam, settings))  # noqa: B023
                    decode_only[name].append(t_dec)
                    per_cam[name].append(t)
                    t_frame += t
                per_frame[name].append(t_frame)
        results[model] = {
            "target": list(target),
            "reduction": reduction,
            **{
                name: {
                    "camera": _stats(per_cam[name]),
                    "decode": _stats(decode_only[name]),
                    "frame": _stats(per_frame[name]),
                }
                for name in paths
            },
        }
    return results


def measure_threads(frames: list[list[bytes]], iters: int, threads: tuple[int, ...] = (1, 2, 3)) -> dict[str, Any]:
    """Frame time (six cameras) through CameraPipeline at each thread count, scaled path, both targets."""
    import cv2

    from dima_core.constants import CAMERA_NAMES
    from dima_core.runtime.preprocess import CameraModel, CameraPipeline, PreprocessSettings, decode_for_network

    cv2.setNumThreads(1)
    width, height = FULL_SIZE
    cam = CameraModel(np.diag([1266.0, 1266.0, 1.0]), width, height, np.eye(4))
    out: dict[str, Any] = {}
    for model, target in TARGETS.items():
        for path, reduction in (("scaled", 8), ("full", 1)):
            settings = PreprocessSettings(target, jpeg_max_reduction=reduction)
            pipes = {n: CameraPipeline(settings, n) for n in threads}
            times: dict[int, list[float]] = {n: [] for n in threads}
            for it in range(iters):
                jpegs = dict(zip(CAMERA_NAMES, frames[it % len(frames)], strict=True))

                def source(name: str, jpegs=jpegs, settings=settings):
                    return decode_for_network(jpegs[name], "jpeg", settings, name), cam

                for n, pipe in pipes.items():
                    times[n].append(_time(lambda: pipe.tensors(CAMERA_NAMES, source)))  # noqa: B023 (called at once)
            for pipe in pipes.values():
                pipe.close()
            out[f"{model}/{path}"] = {str(n): _stats(v) for n, v in times.items()}
    return out


def accuracy(frames_by_size: dict[str, list[list[bytes]]]) -> dict[str, Any]:
    """|scaled - training| of the normalised tensors, per full size and network input."""
    from dima_core.data.dataset import load_image, prepare_image
    from dima_core.runtime.preprocess import CameraModel, PreprocessSettings, camera_tensor, decode_for_network

    out: dict[str, Any] = {}
    for size_name, frames in frames_by_size.items():
        for model, target in TARGETS.items():
            for max_red in (2, 4, 8):
                settings = PreprocessSettings(target, jpeg_max_reduction=max_red)
                diffs, reduction = [], 1
                for jpegs in frames:
                    for data in jpegs:
                        decoded = decode_for_network(data, "jpeg", settings)
                        reduction = decoded.reduction
                        cam = CameraModel(np.eye(3), decoded.full_width, decoded.full_height, np.eye(4))
                        ours, _ = camera_tensor(decoded, cam, settings)
                        # The training loader reads files: same bytes through a file, then prepare_image.
                        tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench_input_path.{os.getpid()}.jpg"
                        tmp.write_bytes(data)
                        ref, _, _ = prepare_image(
                            load_image(tmp), (target[1], target[0]), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
                        )
                        tmp.unlink()
                        diffs.append(np.abs(ours - ref).reshape(-1))
                d = np.concatenate(diffs)
                key = f"{size_name}->{model}/max{max_red}"
                out[key] = {
                    "reduction": reduction,
                    "max": float(d.max()),
                    "p999": float(np.percentile(d, 99.9)),
                    "mean": float(d.mean()),
                    "images": sum(len(f) for f in frames),
                }
    return out


def jpeg_error(frames: list[list[bytes]], raw: list[np.ndarray]) -> dict[str, float]:
    """Context for the tolerance: mean |training tensor of the JPEG - tensor of the image before JPEG| per input."""
    from dima_core.data.dataset import prepare_image
    from dima_core.runtime.preprocess import decode_compressed

    jpegs = [data for f in frames for data in f]
    out = {}
    for model, (w, h) in TARGETS.items():
        d = [
            np.abs(
                prepare_image(decode_compressed(data), (h, w), (0, 0, 0), (1, 1, 1))[0]
                - prepare_image(image, (h, w), (0, 0, 0), (1, 1, 1))[0]
            ).mean()
            for data, image in zip(jpegs, raw, strict=True)
        ]
        out[model] = float(np.mean(d))
    return out


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| network input | path | JPEG decode | per camera (decode + resize + normalise) | six cameras |",
        "|---|---|---:|---:|---:|",
    ]
    for model, r in report["one_core"].items():
        w, h = r["target"]
        for path in ("full", "scaled"):
            label = "full decode + resize (training path)" if path == "full" else f"1/{r['reduction']} decode + resize"
            cells = [f"{r[path][k]['p50']:.2f} / {r[path][k]['p99']:.2f}" for k in ("decode", "camera", "frame")]
            lines.append(f"| {model} {w}x{h} | {label} | " + " | ".join(cells) + " |")
    lines += ["", "| six cameras, 2 cores | threads 1 | threads 2 | threads 3 |", "|---|---:|---:|---:|"]
    for key, r in report["threads"].items():
        lines.append(
            f"| {key} | " + " | ".join(f"{r[n]['p50']:.2f} / {r[n]['p99']:.2f}" for n in ("1", "2", "3")) + " |"
        )
    lines += [
        "",
        "| JPEG size -> network input | reduction | max abs diff | p99.9 | mean abs diff | images |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, r in report["accuracy"].items():
        lines.append(
            f"| {key} | 1/{r['reduction']} | {r['max']:.4f} ({r['max'] * 255:.0f}/255) | "
            f"{r['p999']:.4f} | {r['mean']:.5f} ({r['mean'] * 255:.2f}/255) | {r['images']} |"
        )
    lines += [
        "",
        "JPEG quality 90 itself (training path of the JPEG vs the rendered image before compression), mean abs "
        "diff: " + ", ".join(f"{m} {v:.5f}" for m, v in report["jpeg_q90_mean_error"].items()),
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--iters", type=int, default=40, help="timed frames per path and target")
    ap.add_argument("--scenes", type=int, default=3)
    ap.add_argument("--frames", type=int, default=2, help="rendered frames per scene")
    ap.add_argument("--out", type=Path, help="JSON report")
    args = ap.parse_args(argv)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    cpus = sorted(os.sched_getaffinity(0))
    raw: list[np.ndarray] = []
    full = render_jpegs(FULL_SIZE, args.scenes, args.frames, raw=raw)
    synth = render_jpegs(SYNTH_SIZE, args.scenes, args.frames)
    kib = float(np.mean([len(b) for f in full for b in f])) / 1024.0
    load = os.getloadavg()[0]
    os.sched_setaffinity(0, {cpus[0]})
    one_core = measure(full, args.iters)
    os.sched_setaffinity(0, set(cpus[:2]))
    threads = measure_threads(full, args.iters)
    os.sched_setaffinity(0, set(cpus))
    report = {
        "one_core": one_core,
        "threads": threads,
        "accuracy": accuracy({f"{FULL_SIZE[0]}x{FULL_SIZE[1]}": full, f"{SYNTH_SIZE[0]}x{SYNTH_SIZE[1]}": synth}),
        "jpeg_q90_mean_error": jpeg_error(full, raw),
        "jpeg_kib": kib,
        "frames": len(full),
        "iters": args.iters,
        "cpus": len(cpus),
        "load_1min_at_start": load,
        "load_1min_at_end": os.getloadavg()[0],
        "machine": f"{platform.processor() or platform.machine()}, Python {platform.python_version()}",
    }
    import cv2

    report["opencv"] = cv2.__version__
    if args.out:
        args.out.write_text(json.dumps(report, indent=1))
    print(markdown(report))
    print(
        f"\n{len(full)} frame sets of six {FULL_SIZE[0]}x{FULL_SIZE[1]} JPEGs (quality 90, mean {kib:.0f} KiB), "
        f"{args.iters} timed frames per cell; 1-min load {load:.1f} at start, {report['load_1min_at_end']:.1f} at "
        f"end; OpenCV {cv2.__version__}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
