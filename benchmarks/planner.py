"""``dima bench planner``: train the CPU-sized vision planner (stage 1) on a synthetic world and score it on val
against the constant-velocity and AD-MLP baselines, in both planning conventions, overall and per long-tail split;
measure training throughput and batch-1 inference latency on this machine; record it all in ``docs/benchmarks.md``.

Steps: (1) generate a world of ``--scenes-train + --scenes-val`` scenes with the scenario mix of
``config/synth.yaml`` (so the long-tail splits have rows), split by scene, rendered at the model's input size so the
data layer does not resize (``--world`` reuses an existing one); (2) train stage 1 from ``--config`` with
``--steps`` optimiser steps on a cosine schedule that ends there; (3) predict every val sample; (4) fit AD-MLP on the
train split and score all three planners on the same val samples with the same GT occupancy; (5) time batch-1
inference of the trained model (and of ``vad_tiny`` with random weights, when one frame takes at most
``--vad-tiny-max-seconds``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import math
import os
import platform
import signal
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from benchmarks.command_line import bench_command
from benchmarks.synth import machine

log = logging.getLogger(__name__)

SECTION = "## Vision planner on the synthetic world (`dima bench planner`)"
SPLIT_ORDER: tuple[str, ...] = ("overtake", "three_point_turn", "resume_from_stop", "turning")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "planner",
        help="train the CPU planner on a synthetic world, score it vs constant velocity and AD-MLP, time it",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--scenes-train", type=int, default=60, help="training scenes (default 60)")
    p.add_argument("--scenes-val", type=int, default=20, help="validation scenes (default 20)")
    p.add_argument("--seed", type=int, default=0, help="world and training seed (default 0)")
    p.add_argument("--config", default="config/train/stage1_dima_cpu.yaml", help="stage-1 training YAML")
    p.add_argument("--model-config", default=None, help="model YAML (default: the training config's)")
    p.add_argument("--scene-seconds", type=float, default=20.0, help="length of each generated scene (default 20 s)")
    p.add_argument("--epochs", type=int, default=None, help="epochs (default: the config's); sets --steps")
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="optimiser steps; the cosine schedule ends there (default: epochs x steps per epoch)",
    )
    p.add_argument(
        "--train-minutes",
        type=float,
        default=None,
        help="wall-clock cap on training: stop (and checkpoint) after the step in flight once it is spent",
    )
    p.add_argument("--batch-size", type=int, default=None, help="training batch (default: the config's)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default: the config's)")
    p.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch intra-op threads (default 2; on a machine loaded by other jobs 1 is often faster)",
    )
    p.add_argument("--out", default="runs/bench_planner", help="world, checkpoints and report.json go here")
    p.add_argument("--world", default=None, help="reuse this synthetic dataroot instead of generating one")
    p.add_argument("--width", type=int, default=None, help="render width (default: the model's input width)")
    p.add_argument("--height", type=int, default=None, help="render height (default: the model's input height)")
    p.add_argument("--admlp-epochs", type=int, default=300, help="AD-MLP training epochs (default 300)")
    p.add_argument("--latency-frames", type=int, default=50, help="timed batch-1 frames (default 50)")
    p.add_argument("--latency-warmup", type=int, default=5, help="untimed warm-up frames (default 5)")
    p.add_argument("--vad-tiny-config", default="config/model/vad_tiny.yaml", help="'' skips vad_tiny latency")
    p.add_argument(
        "--vad-tiny-max-seconds",
        type=float,
        default=5.0,
        help="time vad_tiny only when its first frame takes at most this long (default 5 s)",
    )
    p.add_argument("--doc", default="docs/benchmarks.md", help="markdown file to update ('' to skip)")
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------------ pieces


def make_world(
    out: Path, scenes_train: int, scenes_val: int, seed: int, width: int, height: int, scene_seconds: float = 20.0
) -> dict[str, Any]:
    """Generate the world: ``config/synth.yaml``'s scenario mix, split by scene into exactly the requested counts."""
    from dima_core.config import load_config
    from dima_core.data.synth import SynthConfig, generate_dataset
    from dima_core.training.stage1 import resolve_repo_path

    cfg = load_config(resolve_repo_path("config/synth.yaml"), SynthConfig)
    cfg.camera.width, cfg.camera.height = width, height
    cfg.scene_seconds = scene_seconds
    # SynthWorld puts round(val_fraction * n) scenes in val, so this fraction gives exactly scenes_val.
    cfg.val_fraction = scenes_val / (scenes_train + scenes_val)
    return generate_dataset(str(out), cfg, scenes_train + scenes_val, seed, None, overwrite=True, write_qa=False)


def train_config(args: argparse.Namespace, dataroot: str, out: Path) -> Any:
    """The training YAML with the bench's overrides (validated by the config system like any file)."""
    from dima_core.config import config_from_dict, config_to_dict, load_config
    from dima_core.training.config import TrainConfig
    from dima_core.training.stage1 import resolve_repo_path

    data = config_to_dict(load_config(resolve_repo_path(args.config), TrainConfig))
    data["data"]["dataset"]["dataroot"] = dataroot
    data["data"]["dataset"]["index_path"] = None
    data["data"]["train_split"], data["data"]["val_split"] = "train", "val"
    data.update(
        output_dir=str(out / "train"),
        seed=args.seed,
        device="cpu",
        resume=None,
        init=None,
        tensorboard=False,
        progress_bar=False,
        validate_every_epochs=0,  # the bench scores val itself
        checkpoint_interval=0,
        checkpoint_every_epoch=False,
        keep_checkpoints=1,
        log_interval=10,
    )
    if args.batch_size is not None:
        data["data"]["batch_size"] = args.batch_size
    if args.lr is not None:
        data["optimizer"]["lr"] = args.lr
    if args.epochs is not None:
        data["epochs"] = args.epochs
    if args.model_config is not None:
        data["model_config"] = args.model_config
    return config_from_dict(data, TrainConfig, source=f"{args.config} + dima bench planner")


def set_total_steps(trainer: Any, steps: int) -> None:
    """Make the run exactly ``steps`` optimiser steps with the cosine schedule ending there.

    The trainer derives its schedule from whole epochs; a CPU budget is counted in steps, and stopping a longer
    schedule early (``max_steps``) would leave the learning rate high at the end.
    """
    from dima_core.training.schedule import build_scheduler

    epochs = max(1, math.ceil(steps / trainer.steps_per_epoch))
    trainer.config = dataclasses.replace(trainer.config, epochs=epochs, max_steps=steps)
    trainer.total_steps = steps
    trainer.scheduler = build_scheduler(trainer.optimizer, trainer.config.schedule, steps)


def predict_val(model: Any, dataset: Any, batch_size: int = 8) -> dict[str, Any]:
    """Sample token -> (6, 2) planned trajectory (ego frame) for every item of ``dataset``, through the library
    behind ``dima eval --checkpoint`` (the training data path, eval mode, no grad)."""
    from dima_core.eval.planner_inference import predict_trajectories

    return predict_trajectories(model, dataset, batch_size=batch_size)


def time_frames(
    forward: Callable[[], Any], frames: int, warmup: int, budget_s: float | None = None
) -> dict[str, float]:
    """Median / p90 / mean wall-clock ms of ``forward()`` over ``frames`` calls after ``warmup`` untimed ones.

    With ``budget_s``, timing stops early once that many seconds were spent (the count is reported).
    """
    import numpy as np

    for _ in range(warmup):
        forward()
    times: list[float] = []
    start = time.perf_counter()
    for _ in range(frames):
        t0 = time.perf_counter()
        forward()
        times.append((time.perf_counter() - t0) * 1e3)
        if budget_s is not None and time.perf_counter() - start > budget_s:
            break
    arr = np.asarray(times)
    return {
        "median_ms": float(np.median(arr)),
        "p90_ms": float(np.percentile(arr, 90)),
        "mean_ms": float(arr.mean()),
        "frames": float(len(arr)),
    }


def model_latency(model: Any, item: Mapping[str, Any], frames: int, warmup: int) -> dict[str, float]:
    """Batch-1 latency of the trained model on one real val frame (all 6 cameras, eval mode, no grad)."""
    import torch

    inputs = {k: item[k].unsqueeze(0) for k in ("images", "intrinsics", "cam_to_ego", "ego_status", "command")}
    model.eval()

    def forward() -> Any:
        with torch.no_grad():
            return model(**inputs)

    return time_frames(forward, frames, warmup)


def vad_tiny_latency(path: str, frames: int, max_first_s: float) -> dict[str, float] | None:
    """Batch-1 latency of ``vad_tiny`` (random weights: latency does not depend on them), or None when its first
    frame takes longer than ``max_first_s`` (then only that first frame is reported by the caller's log)."""
    import torch

    from dima_core.models import VisionPlanner, load_model_config
    from dima_core.models.dummy_inputs import dummy_inputs
    from dima_core.training.stage1 import resolve_repo_path

    config = load_model_config(resolve_repo_path(path))
    model = VisionPlanner(config).eval()
    inputs = dummy_inputs(config, batch=1)

    def forward() -> Any:
        with torch.no_grad():
            return model(**inputs)

    t0 = time.perf_counter()
    forward()  # first call: allocations; also the go/no-go probe
    first = time.perf_counter() - t0
    if first > max_first_s:
        log.warning("vad_tiny: first batch-1 frame took %.1f s > %.1f s: not timed further", first, max_first_s)
        return {"first_frame_ms": first * 1e3, "frames": 0.0}
    # At most ~6x the first frame's time in total, so a slow machine stays within a few tens of seconds.
    result = time_frames(forward, frames, warmup=1, budget_s=max(5 * first, 1.0))
    result["first_frame_ms"] = first * 1e3
    return result


# ------------------------------------------------------------------------------------------------ report


def _cell(value: float | None, digits: int) -> str:
    return "-" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def markdown_table(reports: Mapping[str, Mapping[str, Any]]) -> str:
    """One markdown table: rows = (split, method, convention); L2 (m) and collision (%) at 1/2/3 s and avg."""
    cols = ("1s", "2s", "3s", "avg")
    head = ["split", "N", "method", "conv"] + [f"L2 {c} (m)" for c in cols] + [f"Col {c} (%)" for c in cols]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * 8) + "|"]
    any_report = next(iter(reports.values()))
    sections = [("overall", None)] + [(s, s) for s in SPLIT_ORDER if s in any_report.get("splits", {})]
    for title, split in sections:
        for method, rep in reports.items():
            sec = rep if split is None else rep["splits"][split]
            for conv in ("vad", "uniad"):
                row = [title, str(sec["num_samples"]), method, conv]
                row += [_cell(sec[conv]["l2"].get(c), 3) for c in cols]
                row += [_cell(sec[conv]["collision"].get(c), 2) for c in cols]
                lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def verdict(reports: Mapping[str, Mapping[str, Any]], learned: str, baseline: str) -> tuple[bool, str]:
    """Whether ``learned`` beats ``baseline`` on val overall, on L2 avg and collision avg, in both conventions."""
    parts, ok = [], True
    for conv in ("vad", "uniad"):
        for metric, unit in (("l2", "m"), ("collision", "%")):
            a = reports[learned][conv][metric]["avg"]
            b = reports[baseline][conv][metric]["avg"]
            # Collision ties at 0 % count as not worse; L2 must be strictly lower.
            better = a < b if metric == "l2" else a <= b
            ok &= better
            parts.append(f"{conv} {metric} avg {a:.3f} vs {b:.3f} {unit} ({'better' if better else 'NOT better'})")
    return ok, "; ".join(parts)


def update_doc(path: str, section: str, title: str = SECTION) -> None:
    """Replace the section headed ``title`` in ``path`` (up to the next '## ' heading), or append it; the other
    sections stay as they are."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    start = text.find(title)
    if start >= 0:
        end = text.find("\n## ", start + len(title))
        text = text[:start] + section.rstrip("\n") + "\n" + (text[end:] if end >= 0 else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")


# ------------------------------------------------------------------------------------------------ run


@dataclasses.dataclass
class World:
    """The synthetic dataroot the bench trains and scores on, and what the doc says about it."""

    path: str
    note: str  # "reused `PATH`" or "generated: N scenes, K keyframes, T s"
    meta: dict[str, Any]  # its synth_meta.json
    seed: int
    width: int  # rendered camera size, from the world itself (it may have been made elsewhere)
    height: int


@dataclasses.dataclass
class TrainedPlanner:
    """Step 2's outcome: the trainer (model, dataset, index), its run and its wall / CPU time."""

    trainer: Any
    config: Any  # the TrainConfig
    result: Any  # the trainer's FitResult
    steps: int  # the schedule's length (the run may stop earlier on the --train-minutes cap)
    wall_s: float
    cpu_s: float

    @property
    def samples_seen(self) -> int:
        return self.result.step * self.config.data.batch_size

    def mean_losses(self, which: slice) -> dict[str, float]:
        """Mean total / plan_reg loss over the history steps ``which`` (empty without a history)."""
        import numpy as np

        history = self.result.history
        return {k: float(np.mean([h[k] for h in history[which]])) for k in ("total", "plan_reg")} if history else {}


@dataclasses.dataclass
class ValScores:
    """Steps 3-4: every planner scored on the same val samples."""

    reports: dict[str, Any]  # planner name -> evaluate_planners report
    val_set: Any  # the val DrivingDataset
    predict_s: float  # wall time of the learned planner's val prediction
    beats_const_velocity: bool
    verdict: str


def run(args: argparse.Namespace) -> int:
    import torch

    from dima_core.models import load_model_config
    from dima_core.training.stage1 import resolve_repo_path

    if args.scenes_train < 1 or args.scenes_val < 1:
        raise ValueError("--scenes-train and --scenes-val must be >= 1")
    torch.set_num_threads(args.threads)
    load_start = _load_average()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg_probe = train_config(args, "unused", out)
    model_config = load_model_config(resolve_repo_path(cfg_probe.model_config))

    world = prepare_world(
        args, out, args.width or model_config.image_size[0], args.height or model_config.image_size[1]
    )  # 1.
    trained = train_planner(args, world.path, out)  # 2.
    model = trained.trainer.model.eval()
    scores = score_on_val(args, trained, model_config)  # 3-4.
    latency, vad = time_inference(args, model, scores.val_set[0])  # 5.
    load_end = _load_average()

    report = write_report(out, world, trained, scores, latency, vad)
    section = doc_section(
        args,
        report,
        world,
        trained,
        scores,
        model_config,
        cfg_probe.model_config,
        sum(p.numel() for p in model.parameters()),
        (load_start, load_end),
    )
    print(section)
    if args.doc:
        update_doc(args.doc, section)
        print(f"updated {args.doc}")
    return 0


def _load_average() -> tuple[float, float, float]:
    return os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3


def prepare_world(args: argparse.Namespace, out: Path, width: int, height: int) -> World:
    """Step 1: reuse ``--world`` or generate one under ``out/world`` at the model's input size."""
    t0 = time.perf_counter()
    if args.world:
        path = args.world
        note = f"reused `{path}`"
        log.info("reusing the synthetic world at %s", path)
    else:
        path = str(out / "world")
        summary = make_world(
            Path(path), args.scenes_train, args.scenes_val, args.seed, width, height, args.scene_seconds
        )
        note = (
            f"generated: {summary['scenes']} scenes, {summary['keyframes']} keyframes, {time.perf_counter() - t0:.0f} s"
        )
    meta = json.loads((Path(path) / "synth_meta.json").read_text())
    # What the doc states about the world comes from the world itself (it may have been made elsewhere).
    camera = meta.get("config", {}).get("camera", {})
    log.info("world: %s", note)
    return World(
        path,
        note,
        meta,
        meta.get("seed", args.seed),
        int(camera.get("width", width)),
        int(camera.get("height", height)),
    )


def train_planner(args: argparse.Namespace, world: str, out: Path) -> TrainedPlanner:
    """Step 2: stage 1 for exactly the requested steps (cosine schedule ending there), capped by --train-minutes."""
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage1 import build_stage1_trainer

    config = train_config(args, world, out)
    trainer = build_stage1_trainer(config, DistContext(), record_history=True)
    steps = args.steps if args.steps is not None else config.epochs * trainer.steps_per_epoch
    set_total_steps(trainer, steps)
    timer = None
    if args.train_minutes is not None:
        # The trainer's own clean-stop path (what SIGTERM triggers): finish the step, checkpoint, return.
        timer = threading.Timer(args.train_minutes * 60.0, setattr, (trainer, "_stop_signal", signal.SIGTERM))
        timer.daemon = True
        timer.start()
    t_train, c_train = time.perf_counter(), time.process_time()
    try:
        result = trainer.fit()
    finally:
        if timer is not None:
            timer.cancel()
    return TrainedPlanner(trainer, config, result, steps, time.perf_counter() - t_train, time.process_time() - c_train)


def score_on_val(args: argparse.Namespace, trained: TrainedPlanner, model_config: Any) -> ValScores:
    """Steps 3-4: predict val with the trained model, fit AD-MLP on train, score all planners on the same samples."""
    from dima_core.data.dataset import DrivingDataset
    from dima_core.eval.baselines import ADMLPConfig
    from dima_core.eval.evaluate import baseline_planners, evaluate_planners, fit_admlp, report_tables
    from dima_core.training.stage1 import stage1_data_config

    index = trained.trainer.dataset.index
    data = stage1_data_config(trained.config, model_config)
    val_set = DrivingDataset(index, dataclasses.replace(data, split="val"))
    t_pred = time.perf_counter()
    preds = predict_val(trained.trainer.model, val_set)
    predict_s = time.perf_counter() - t_pred
    train_samples = [index.get(t) for t in index.tokens("train")]
    val_samples = [index.get(t) for t in index.tokens("val")]
    admlp = fit_admlp(train_samples, ADMLPConfig(epochs=args.admlp_epochs, seed=args.seed))
    planners: dict[str, Callable[[Any], Any]] = {model_config.name: lambda s: preds[s.token]}
    planners.update(baseline_planners(admlp))
    reports = evaluate_planners(val_samples, planners)
    print(report_tables(reports))
    ok, why = verdict(reports, model_config.name, "const_velocity")
    return ValScores(reports, val_set, predict_s, ok, why)


def time_inference(
    args: argparse.Namespace, model: Any, item: Mapping[str, Any]
) -> tuple[dict[str, float], dict[str, float] | None]:
    """Step 5: batch-1 latency of the trained model on one val frame, and of ``vad_tiny`` unless skipped."""
    latency = model_latency(model, item, args.latency_frames, args.latency_warmup)
    vad = None
    if args.vad_tiny_config:
        vad = vad_tiny_latency(args.vad_tiny_config, min(args.latency_frames, 10), args.vad_tiny_max_seconds)
    return latency, vad


def write_report(
    out: Path,
    world: World,
    trained: TrainedPlanner,
    scores: ValScores,
    latency: dict[str, float],
    vad: dict[str, float] | None,
) -> dict[str, Any]:
    """``out/report.json``: everything measured (the doc section is written from it); returns it."""
    config, samples = trained.config, trained.samples_seen
    splits = world.meta.get("splits", {})
    report = {
        "command": bench_command("planner"),
        "machine": machine(),
        "world": world.path,
        "world_note": world.note,
        "scenes": {"train": len(splits.get("train", [])), "val": len(splits.get("val", []))},
        "train": {
            "steps": trained.result.step,
            "batch_size": config.data.batch_size,
            "samples": samples,
            "epochs": samples / max(len(trained.trainer.dataset), 1),
            "wall_s": trained.wall_s,
            "cpu_s": trained.cpu_s,
            "samples_per_s": samples / trained.wall_s,
            "lr": config.optimizer.lr,
            "first_losses": trained.mean_losses(slice(None, 10)),
            "last_losses": trained.mean_losses(slice(-10, None)),
        },
        "latency": latency,
        "vad_tiny_latency": vad,
        "beats_const_velocity": scores.beats_const_velocity,
        "verdict": scores.verdict,
        "reports": scores.reports,
    }
    (out / "report.json").write_text(json.dumps(report, indent=1, default=float))
    return report


def _vad_line(args: argparse.Namespace, vad: dict[str, float] | None) -> str:
    if vad is not None and vad.get("frames", 0) > 0:
        return (
            f"median {vad['median_ms']:.0f} ms, p90 {vad['p90_ms']:.0f} ms over {int(vad['frames'])} frames "
            f"(random weights; ResNet-50, 640x360, BEV 100x100, 300 agents, 100 map vectors)"
        )
    if vad is not None:
        return (
            f"first frame {vad['first_frame_ms'] / 1e3:.1f} s: over the {args.vad_tiny_max_seconds:g} s cap, not timed"
        )
    return "skipped (`--vad-tiny-config ''`)"


def doc_section(
    args: argparse.Namespace,
    report: Mapping[str, Any],
    world: World,
    trained: TrainedPlanner,
    scores: ValScores,
    model_config: Any,
    model_config_path: str,
    params: int,
    load: tuple[tuple[float, float, float], tuple[float, float, float]],
) -> str:
    """The markdown section for docs/benchmarks.md: setup, throughput, latency, the verdict and the table."""
    import torch

    config, result, samples_seen = trained.config, trained.result, trained.samples_seen
    first_losses, last_losses = report["train"]["first_losses"], report["train"]["last_losses"]
    latency, learned, train_s = report["latency"], model_config.name, trained.wall_s
    load_start, load_end = load
    ok, why = scores.beats_const_velocity, scores.verdict
    stop_note = (
        f" (stopped at step {result.step} by the {args.train_minutes:g}-min training cap)"
        if result.stopped_by_signal
        else ""
    )
    return (
        f"{SECTION}\n\n"
        f"Stage-1 `{learned}` ({params / 1e6:.2f} M parameters, `{model_config_path}`, ego status "
        f"{'ON' if model_config.ego.use_ego_status else 'OFF'}, command ON) trained on the train scenes of a synthetic "
        f"world and scored on its val scenes against constant velocity (ego-status speed along the current heading) "
        f"and AD-MLP (ego status + past trajectory + command MLP, {args.admlp_epochs} epochs on the same train split). "
        f"Val only; split by scene. Metrics: [design.md, Evaluation protocol](design.md#evaluation-protocol) "
        f"(`vad` = VAD/ST-P3 cumulative mean over steps 1..2k, `uniad` = the value at step 2k; collision on the 0.5 m "
        f"GT occupancy with the 1.85 x 4.084 m ego box; only samples with a full 6-step future).\n\n"
        f"- command: `{report['command']}`\n"
        f"- world: {report['scenes']['train']} train / {report['scenes']['val']} val scenes, seed {world.seed}, "
        f"scenario mix of `config/synth.yaml`, cameras rendered at {world.width}x{world.height}, model input "
        f"{model_config.image_size[0]}x{model_config.image_size[1]} ({world.note})\n"
        f"- training: {result.step} steps x batch {config.data.batch_size} = {samples_seen} samples "
        f"({report['train']['epochs']:.2f} epochs of {len(trained.trainer.dataset)}), AdamW lr "
        f"{config.optimizer.lr:g}, cosine schedule over {trained.steps} steps{stop_note}; loss total "
        f"{first_losses.get('total', float('nan')):.2f} -> "
        f"{last_losses.get('total', float('nan')):.2f}, plan L1 {first_losses.get('plan_reg', float('nan')):.2f} -> "
        f"{last_losses.get('plan_reg', float('nan')):.2f} (means of the first / last 10 steps)\n"
        f"- **training throughput: {report['train']['samples_per_s']:.2f} samples/s** wall-clock "
        f"({train_s / 60:.1f} min; {samples_seen / max(trained.cpu_s, 1e-9):.2f} samples per CPU-second of this "
        f"process), {args.threads} torch threads\n"
        f"- **inference latency `{learned}`, batch 1 (6 cameras), CPU: median {latency['median_ms']:.1f} ms, "
        f"p90 {latency['p90_ms']:.1f} ms** over {int(latency['frames'])} frames after {args.latency_warmup} warm-up "
        f"frames; val prediction at batch 8 took {scores.predict_s:.0f} s for {len(scores.val_set)} samples\n"
        f"- inference latency `vad_tiny`, batch 1, CPU: {_vad_line(args, report['vad_tiny_latency'])}; GPU figures: "
        f"not measured (no GPU in this run)\n"
        f"- machine: {machine()}; Python {platform.python_version()}, torch {torch.__version__}; load average "
        f"(1/5/15 min) {load_start[0]:.1f}/{load_start[1]:.1f}/{load_start[2]:.1f} at start, "
        f"{load_end[0]:.1f}/{load_end[1]:.1f}/{load_end[2]:.1f} at end (a shared machine: other jobs slow the "
        f"wall-clock figures)\n"
        f"- **learned planner vs constant velocity on val (overall): {'BEATS it' if ok else 'does NOT beat it'}** "
        f"— {why}\n\n"
        f"{markdown_table(scores.reports)}\n\n"
        f"How to read it: AD-MLP sees the ego status, the past trajectory and the command and nothing else; where it "
        f"beats the camera planner, that is the open-loop blind spot (Zhai et al. 2023) showing, not better driving. "
        f"Collision rates are low for every planner on this world, so collision differences rest on a handful of "
        f"colliding steps; the long-tail rows carry few samples each (N column).\n"
    )
