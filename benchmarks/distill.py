"""``dima bench distill``: does DiMA's distillation help the vision planner? A compute-matched study (issue 11).

    dima data synth --out data/synth_longtail --scenes 24 --seed 0 --config config/synth_longtail.yaml \\
        --width 192 --height 108 --seconds 12                  # long-tail scenarios held out to val
    dima bench distill --dataroot data/synth_longtail --version v1.0-synth --epochs 8 --stage2-epochs 2 \\
        --seeds 0 1 2 [--rungs ladder|full] [--teacher-warmup 200 --distill-ramp 100] [--distill-loss l1] \\
        [--planner-lr constant --planner-lr-multiplier 0.01] [--work runs/bench_distill] [--doc docs/benchmarks.md]

For every seed, with E epochs in total of which the last E2 are stage 2 (:mod:`benchmarks.distill_protocol`):
- one stage-1 run of E - E2 epochs, shared by both arms;
- (A) stage 1 only, compute-matched: the planner alone continues from it on stage 2's step grid, making the same
  planner updates on the same batches in the same order at the same planner lr as each (B) arm's planner;
- (B) DiMA: stage 2 (joint with the MLLM teacher) for E2 epochs from it; with ``--rungs ladder`` once per rung of
  the paper's ablation ladder (:data:`LADDER`), each rung a set of ``joint.tasks`` / ``joint.beam_tokens``
  switches (the last rung is full DiMA), with ``--rungs full`` only that.
``--teacher-warmup``, ``--warmup-terms``, ``--distill-ramp``, ``--distill-loss``, ``--planner-lr`` and
``--planner-lr-multiplier`` set the stage-2 protocol (docs/stage2.md); unset, the stage-2 config's values hold.

Every arm is evaluated vision-only (the LLM is not even constructed) on ``--val-split``: L2 and collision in both
conventions (VAD cumulative, UniAD per-step), overall and per long-tail split (the synthetic world's scenario tags;
held-out scenarios reach val only). The teacher (``--teacher-eval last``: of the last rung; ``all``; ``none``) is
scored at the handover from its warm-up and at the end: MLLM-only planning and DriveLM-style VQA on
``--vqa-frames`` val frames (:mod:`benchmarks.teacher_quality`). Each arm's wall time, planner updates, samples and
a FLOP estimate are recorded (:mod:`benchmarks.distill_costs`). The section of ``--doc`` gives mean ± sample
standard deviation over seeds, the paired comparison of every arm with (A) seed by seed, the costs and the
teacher's scores (:mod:`benchmarks.distill_report`), with the command line and the machine.

``--max-steps`` caps every training stage (a smoke run: the numbers then mean nothing and the report says so).

Seeds can run as separate jobs (one process or cluster job per seed, each with its own ``--work`` and ``--doc ''``)
and be merged afterwards into one table with spread:

    dima bench distill --from-reports runs/bd_s0/report.json runs/bd_s1/report.json [--doc docs/benchmarks.md]

Merging checks that the reports ran the same protocol (dataroot, epochs, stage-2 epochs, rungs, configs, splits,
warm-up, ramp, loss kind, planner lr).
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks.distill_report import SECTION_TITLE, merge_reports, replace_section, section

log = logging.getLogger(__name__)

# The paper's ablation ladder as stage-2 switches: (name, beam_tokens, tasks). Rung 1 trains VQA and the MLLM
# planning head on BEV tokens only; each later rung adds one ingredient; the last one is full DiMA.
_ALL_TOKENS = ["bev", "ego", "agent", "map"]
_OFF = {"vqa": True, "llm_plan": True, "distill": False, "recon": False, "future": False, "scene_edit": False}
LADDER: tuple[tuple[str, list[str], dict[str, bool]], ...] = (
    ("VQA + LLM planning (BEV tokens)", ["bev"], dict(_OFF)),
    ("+ all BEAM tokens", _ALL_TOKENS, dict(_OFF)),
    ("+ distillation", _ALL_TOKENS, {**_OFF, "distill": True}),
    ("+ masked reconstruction", _ALL_TOKENS, {**_OFF, "distill": True, "recon": True}),
    ("+ future prediction", _ALL_TOKENS, {**_OFF, "distill": True, "recon": True, "future": True}),
    ("+ scene editing (full DiMA)", _ALL_TOKENS, {k: True for k in _OFF}),
)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "distill",
        help="compute-matched stage 1 vs DiMA stage 2 (and the ablation ladder) "
        "over seeds, paired; costs and the teacher's own scores -> docs/benchmarks.md",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--dataroot", help="synthetic world (long-tail scenarios held out to val)")
    p.add_argument("--version", default="v1.0-synth")
    p.add_argument("--index", default=None, help="cached index at the model's map resolution (default: built once)")
    p.add_argument("--stage1-config", default="config/train/stage1_dima_cpu.yaml")
    p.add_argument("--stage2-config", default="config/train/stage2_dima_cpu.yaml")
    p.add_argument("--model-config", default=None, help="planner YAML for both arms (default: the configs')")
    p.add_argument("--epochs", type=int, default=8, help="total epochs E of each arm")
    p.add_argument("--stage2-epochs", type=int, default=2, help="epochs E2 of stage 2 inside arm B")
    p.add_argument(
        "--init",
        default=None,
        metavar="PLANNER",
        help="a trained planner (stage-1 checkpoint or weights file) both arms of every seed start from, "
        "instead of a stage-1 run of E - E2 epochs per seed (--epochs is then not used)",
    )
    p.add_argument(
        "--stage2-steps",
        type=int,
        default=None,
        metavar="STEPS",
        help="stop stage 2 of both arms after this many steps (warm-up included); the lr schedules "
        "still span --stage2-epochs",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--rungs", choices=("ladder", "full"), default="ladder", help="every ladder rung or full DiMA only")
    p.add_argument("--train-split", default="train")
    p.add_argument("--val-split", default="val")
    p.add_argument("--batch-size", type=int, default=None, help="per-stage batch size override")
    p.add_argument("--max-steps", type=int, default=None, help="cap every stage (smoke runs)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default=None)
    p.add_argument(
        "--teacher-warmup",
        type=int,
        default=None,
        metavar="STEPS",
        help="stage-2 steps in which only the teacher trains, the planner frozen (default: the config's)",
    )
    p.add_argument(
        "--warmup-terms",
        nargs="+",
        default=None,
        choices=("vqa", "plan", "recon", "future", "scene_edit", "attention_distill"),
        help="teacher terms of the warm-up (default: the config's)",
    )
    p.add_argument(
        "--distill-ramp",
        type=int,
        default=None,
        metavar="STEPS",
        help="steps over which the distillation weight ramps up after the warm-up (default: the config's)",
    )
    p.add_argument(
        "--distill-loss",
        choices=("kl", "l1", "l2", "cosine"),
        default=None,
        help="distillation distance (default: the config's)",
    )
    p.add_argument(
        "--planner-lr",
        choices=("shared", "constant", "cosine"),
        default=None,
        help="the planner's stage-2 lr schedule (default: the config's)",
    )
    p.add_argument(
        "--planner-lr-multiplier",
        type=float,
        default=None,
        help="planner peak lr = optimizer.lr x this (default: the config's)",
    )
    p.add_argument(
        "--teacher-eval",
        choices=("none", "last", "all"),
        default="last",
        help="score the teacher of the last rung, of every rung, or none, at the handover and the end",
    )
    p.add_argument("--vqa-frames", type=int, default=8, help="val frames whose DriveLM questions the teacher answers")
    p.add_argument("--vqa-max-new-tokens", type=int, default=48, help="answer length of the teacher's VQA")
    p.add_argument(
        "--teacher-plan-frames",
        type=int,
        default=0,
        help="val frames of the teacher's MLLM-only planning score (0: the whole split)",
    )
    p.add_argument(
        "--closed-loop-episodes",
        type=int,
        default=0,
        help="closed-loop episodes per scenario every arm drives (0: open loop only)",
    )
    p.add_argument("--closed-loop-seed", type=int, default=1000, help="first scene seed of the closed-loop episodes")
    p.add_argument("--sim-config", default="config/sim.yaml", help="simulator config of the closed-loop episodes")
    p.add_argument(
        "--closed-loop-scenarios",
        nargs="+",
        default=["all"],
        help="scenarios of the closed-loop episodes ('all': every one)",
    )
    p.add_argument(
        "--flop-steps",
        type=int,
        default=2,
        help="steps per phase counted by torch's FLOP counter (the estimate extrapolates them)",
    )
    p.add_argument("--work", default="runs/bench_distill", help="run directories and the JSON report")
    p.add_argument("--doc", default="docs/benchmarks.md", help="markdown file to update ('' to skip)")
    p.add_argument(
        "--from-reports",
        nargs="+",
        default=None,
        metavar="REPORT",
        help="merge the report.json files of earlier runs (e.g. one per seed) instead of training",
    )
    p.set_defaults(func=run)
    return p


def _machine() -> str:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{platform.node()}: {platform.processor() or platform.machine()}, torch {torch.__version__}, {gpu}"


def joint_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The ``joint`` overrides of the protocol arguments that are set (None keeps the stage-2 config's)."""
    joint: dict[str, Any] = {"teacher_warmup": {}, "planner_lr": {}}
    if args.teacher_warmup is not None:
        joint["teacher_warmup"]["steps"] = args.teacher_warmup
    if args.warmup_terms is not None:
        joint["teacher_warmup"]["terms"] = list(args.warmup_terms)
    if args.distill_ramp is not None:
        joint["distill_ramp_steps"] = args.distill_ramp
    if args.distill_loss is not None:
        joint["distill_loss"] = args.distill_loss
    if args.planner_lr is not None:
        joint["planner_lr"]["schedule"] = args.planner_lr
    if args.planner_lr_multiplier is not None:
        joint["planner_lr"]["multiplier"] = args.planner_lr_multiplier
    return {k: v for k, v in joint.items() if v != {}}


def run(args: argparse.Namespace) -> int:
    """Both arms for every seed (arm B once per rung), evaluated; the report and the doc section."""
    import torch

    from benchmarks.distill_costs import FLOP_METHOD
    from benchmarks.distill_protocol import ClosedLoopSpec, Protocol, SharedLLM, build_config, run_seed
    from dima_core.training.stage2 import Stage2TrainConfig, teacher_config

    if args.from_reports:
        return run_merge(args)
    if not args.dataroot:
        raise ValueError("--dataroot is required (or --from-reports to merge earlier runs)")
    if args.init is None and not 0 < args.stage2_epochs < args.epochs:
        raise ValueError("--stage2-epochs must be between 1 and --epochs - 1 (arm B needs both stages)")
    if args.init is not None and args.stage2_epochs < 1:
        raise ValueError("--stage2-epochs must be >= 1")
    if args.init is not None and not Path(args.init).is_file():
        raise ValueError(f"--init {args.init}: no such planner file")
    if args.stage2_steps is not None and args.stage2_steps < 1:
        raise ValueError(f"--stage2-steps must be >= 1, got {args.stage2_steps}")
    if args.teacher_plan_frames < 0 or args.closed_loop_episodes < 0:
        raise ValueError("--teacher-plan-frames and --closed-loop-episodes must be >= 0")
    if len(set(args.seeds)) != len(args.seeds):
        raise ValueError(f"--seeds repeats a seed: {args.seeds}")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    common = _common_overrides(args, device)
    joint = joint_overrides(args)
    # The teacher's base LLM is loaded once and copied into every stage-2 run and evaluation.
    probe = build_config(args.stage2_config, Stage2TrainConfig, {**common, "output_dir": str(work)}, joint=joint)
    protocol = Protocol(
        stage1_config=args.stage1_config,
        stage2_config=args.stage2_config,
        common=common,
        stage1_epochs=args.epochs - args.stage2_epochs,
        stage2_epochs=args.stage2_epochs,
        joint=joint,
        val_split=args.val_split,
        device=device,
        teacher_eval=args.teacher_eval,
        vqa_frames=args.vqa_frames,
        vqa_max_new_tokens=args.vqa_max_new_tokens,
        flop_steps=args.flop_steps,
        shared_llm=SharedLLM(teacher_config(probe.joint).llm),
        init=args.init,
        stage2_max_steps=args.stage2_steps,
        teacher_plan_frames=args.teacher_plan_frames,
        closed_loop=(
            ClosedLoopSpec(
                args.closed_loop_episodes, args.closed_loop_seed, args.sim_config, tuple(args.closed_loop_scenarios)
            )
            if args.closed_loop_episodes
            else None
        ),
    )
    rungs = list(LADDER if args.rungs == "ladder" else LADDER[-1:])
    results: dict[str, list[Any]] = {}
    costs: dict[str, list[Any]] = {}
    teacher: dict[str, list[Any]] = {}
    closed_loop: dict[str, list[Any]] = {}
    start = time.time()
    for seed in args.seeds:
        arms = run_seed(protocol, seed, work / f"seed{seed}", rungs, work)
        for name, arm in arms.items():
            results.setdefault(name, []).append(arm["metrics"])
            costs.setdefault(name, []).append(arm["cost"])
            teacher.setdefault(name, []).append(arm["teacher"])
            closed_loop.setdefault(name, []).append(arm["closed_loop"])
        log.info("seed %d done after %.0f s", seed, time.time() - start)
    report = {
        "args": {k: v for k, v in vars(args).items() if k != "func"},
        "results": results,
        "costs": costs,
        "teacher": teacher,
        "closed_loop": closed_loop,
        "references": protocol.references,
        "flop_method": FLOP_METHOD.format(k=args.flop_steps),
        "elapsed_s": time.time() - start,
        "command": _command_line(args),
        "machine": f"{_machine()}, device {device}",
    }
    (work / "report.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    _publish(section([report]), args.doc)
    return 0


def _common_overrides(args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The overrides both stages of both arms share (data, device, step cap; no validation, no TensorBoard)."""
    return {
        "device": device,
        "max_steps": args.max_steps,
        "model_config": args.model_config,
        "tensorboard": False,
        "progress_bar": False,
        "validate_every_epochs": 0,
        "data": {
            "train_split": args.train_split,
            "val_split": None,
            "batch_size": args.batch_size,
            "dataset": {"dataroot": args.dataroot, "version": args.version, "index_path": args.index},
        },
    }


def _command_line(args: argparse.Namespace) -> str:
    """The command as typed when run from the ``dima`` CLI, else the equivalent one built from ``args``."""
    if sys.argv and sys.argv[0].endswith(("dima", "cli.py")):
        return "dima " + " ".join(sys.argv[1:])
    text = (
        f"dima bench distill --dataroot {args.dataroot} --epochs {args.epochs} --stage2-epochs "
        f"{args.stage2_epochs} --seeds {' '.join(map(str, args.seeds))} --rungs {args.rungs}"
    )
    for flag in (
        "init",
        "stage2_steps",
        "max_steps",
        "teacher_warmup",
        "warmup_terms",
        "distill_ramp",
        "distill_loss",
        "planner_lr",
        "planner_lr_multiplier",
        "teacher_plan_frames",
        "closed_loop_episodes",
    ):
        value = getattr(args, flag, None)
        if value is not None:
            text += f" --{flag.replace('_', '-')} {' '.join(map(str, value)) if isinstance(value, list) else value}"
    return text


def _publish(text: str, doc: str | None) -> None:
    print(text)
    if doc:
        replace_section(doc, text)
        print(f"updated {doc}")


def run_merge(args: argparse.Namespace) -> int:
    reports = []
    for path in args.from_reports:
        try:
            reports.append(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as exc:
            raise ValueError(f"cannot read bench distill report {path}: {exc}") from exc
        if not {"args", "results"} <= set(reports[-1]):
            raise ValueError(f"{path} is not a bench distill report (no 'args'/'results')")
    _publish(section(reports), args.doc)
    return 0


__all__ = ["LADDER", "SECTION_TITLE", "add_parser", "joint_overrides", "merge_reports", "run", "section"]
