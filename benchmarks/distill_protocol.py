"""The compute-matched protocol of ``dima bench distill``, one seed at a time (issue 11 section 1).

For a seed, with E epochs in total of which the last E2 are stage 2, and h the teacher warm-up steps:

1. ``stage1``: stage 1 for E - E2 epochs. Both arms start from its checkpoint, so they share the first part of
   the run exactly.
2. ``(A) stage 1 only, compute-matched``: the planner alone, continued from that checkpoint on stage 2's step grid
   (:func:`~dima_core.training.stage2.build_planner_only_trainer`). It makes the same planner updates on the same
   batches in the same order, at the same planner lr, as each DiMA arm's planner.
3. ``(B) DiMA: <rung>``: stage 2 for E2 epochs from the checkpoint, once per rung. With a warm-up and teacher
   evaluation on, the run stops at the handover (its checkpoint is the warm-up teacher), is evaluated, and resumes
   to the end. Resume is exact, so this equals an uninterrupted run.

Every arm is evaluated vision-only. The teacher is evaluated at the handover and at the end (MLLM-only planning and
VQA, :mod:`benchmarks.teacher_quality`). Each run's cost is recorded: wall time, steps, planner updates, samples,
and a FLOP estimate (:mod:`benchmarks.distill_costs`).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.distill_closed_loop import ClosedLoopSpec, closed_loop_scores
from benchmarks.distill_costs import FlopSampler, RunCost, arm_cost, timed

log = logging.getLogger(__name__)

ARM_A = "(A) stage 1 only, compute-matched"


def rung_name(name: str) -> str:
    return f"(B) DiMA: {name}"


def build_config(path: str, cls: Any, overrides: dict[str, Any], joint: dict[str, Any] | None = None) -> Any:
    """``path`` (a training YAML) loaded as ``cls`` with top-level, ``data``/``data.dataset`` and ``joint`` overrides
    (None values keep the file's). ``joint`` entries replace whole keys, except mappings, which are merged one level
    deep (``{"teacher_warmup": {"steps": 100}}`` keeps the file's ``terms``)."""
    from dima_core.config import config_from_dict, config_to_dict, load_config
    from dima_core.training.stage1 import resolve_repo_path

    overrides = json.loads(json.dumps(overrides))  # the nested sections are consumed below
    data = config_to_dict(load_config(resolve_repo_path(path), cls))
    data_section = overrides.pop("data", {})
    dataset = data_section.pop("dataset", {})
    data.update({k: v for k, v in overrides.items() if v is not None})
    data["data"].update({k: v for k, v in data_section.items() if v is not None})
    data["data"]["dataset"].update({k: v for k, v in dataset.items() if v is not None})
    for key, value in (joint or {}).items():
        if isinstance(value, dict) and isinstance(data["joint"].get(key), dict):
            data["joint"][key] = {**data["joint"][key], **value}
        else:
            data["joint"][key] = value
    return config_from_dict(data, cls, source=f"{path} (bench distill)")


class SharedLLM:
    """The teacher's frozen base LLM loaded once per process; every stage-2 run and evaluation gets a private copy
    (the teacher LoRA-wraps the model it is given). Saves one GGUF load (about a minute on a CPU) per run."""

    def __init__(self, llm_config: Any) -> None:
        self.llm_config = llm_config
        self._model: Any = None
        self._tokenizer: Any = None

    def copy(self) -> tuple[Any, Any]:
        if self._model is None:
            from dima_core.models.mllm.llm import load_base_model, load_tokenizer, resolve_source, shared_gguf_parsing

            source = resolve_source(self.llm_config)
            with shared_gguf_parsing():
                self._tokenizer = load_tokenizer(self.llm_config, source)
                self._model = load_base_model(self.llm_config, source)
        return copy.deepcopy(self._model), self._tokenizer


@dataclass
class Protocol:
    """What every seed of one benchmark run shares."""

    stage1_config: str
    stage2_config: str
    common: dict[str, Any]  # overrides of both stages (data, device, step cap, no validation / TensorBoard)
    stage1_epochs: int  # E - E2
    stage2_epochs: int  # E2
    joint: dict[str, Any]  # joint overrides of every rung (warm-up, ramp, loss kind, planner lr)
    val_split: str
    device: str
    teacher_eval: str = "last"  # none | last | all: which rungs' teachers are evaluated
    vqa_frames: int = 8
    vqa_max_new_tokens: int = 48
    flop_steps: int = 2
    shared_llm: SharedLLM | None = None
    index: Any = None  # the evaluation index (set after the first stage-1 run)
    vqa_gt: Any = None  # the VQA ground truth (set with the index)
    references: dict[str, Any] = field(default_factory=dict)
    init: str | None = None  # a trained planner both arms start from instead of a stage-1 run per seed
    stage2_max_steps: int | None = None  # stage 2 (both arms) stops here; its schedules still span E2 epochs
    teacher_plan_frames: int = 0  # MLLM-only planning on this many spaced val frames (0: the whole split)
    closed_loop: ClosedLoopSpec | None = None  # closed-loop episodes every arm drives (None: open loop only)


def _llm(protocol: Protocol) -> tuple[Any, Any]:
    return protocol.shared_llm.copy() if protocol.shared_llm is not None else (None, None)


def _fit(build: Any, phase_of: Any, sampler: FlopSampler | None, samples_per_phase: int) -> tuple[Any, Any, float]:
    """Build a trainer, count its FLOPs, fit it: ``(result, sampler, seconds)``."""

    def run() -> tuple[Any, Any]:
        trainer = build()
        counted = sampler if sampler is not None else FlopSampler(phase_of, samples_per_phase)
        counted.attach(trainer)
        return trainer.fit(), counted

    (result, counted), seconds = timed(run)
    if result.checkpoint is None:
        raise RuntimeError("the run wrote no checkpoint")
    return result, counted, seconds


def train_stage1(protocol: Protocol, seed: int, out: Path) -> tuple[Path, RunCost]:
    """Stage 1 for ``stage1_epochs`` epochs; its checkpoint and cost."""
    from dima_core.training.config import TrainConfig
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage1 import build_stage1_trainer

    cfg = build_config(
        protocol.stage1_config,
        TrainConfig,
        {**protocol.common, "seed": seed, "epochs": protocol.stage1_epochs, "output_dir": str(out)},
    )
    result, sampler, seconds = _fit(
        lambda: build_stage1_trainer(cfg, DistContext()), lambda t: "train", None, protocol.flop_steps
    )
    return Path(result.checkpoint), sampler.cost(seconds)


def stage2_config(
    protocol: Protocol,
    seed: int,
    init: Path,
    out: Path,
    tokens: list[str] | None = None,
    tasks: dict[str, bool] | None = None,
) -> Any:
    """The stage-2 config of one rung (or, without ``tokens``/``tasks``, the file's switches)."""
    from dima_core.training.stage2 import Stage2TrainConfig

    joint = dict(protocol.joint)
    if tokens is not None:
        joint["beam_tokens"] = tokens
    if tasks is not None:
        joint["tasks"] = tasks
    overrides = {
        **protocol.common,
        "seed": seed,
        "epochs": protocol.stage2_epochs,
        "output_dir": str(out),
        "init": str(init),
    }
    if protocol.stage2_max_steps is not None:
        overrides["max_steps"] = protocol.stage2_max_steps
    return build_config(protocol.stage2_config, Stage2TrainConfig, overrides, joint=joint)


def train_control(protocol: Protocol, seed: int, init: Path, out: Path) -> tuple[Path, RunCost]:
    """Arm A's continuation: the planner alone on stage 2's step grid, from the shared stage-1 checkpoint."""
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage2 import build_planner_only_trainer

    cfg = stage2_config(protocol, seed, init, out)
    result, sampler, seconds = _fit(
        lambda: build_planner_only_trainer(cfg, DistContext()), lambda t: "train", None, protocol.flop_steps
    )
    return Path(result.checkpoint), sampler.cost(seconds)


def train_rung(
    protocol: Protocol,
    seed: int,
    init: Path,
    out: Path,
    tokens: list[str],
    tasks: dict[str, bool],
    evaluate_teacher: bool,
) -> tuple[Path, RunCost, dict[str, Any]]:
    """Arm B's stage 2 for one rung: checkpoint, cost, and the teacher's quality at the handover and the end."""
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage2 import build_stage2_trainer

    cfg = stage2_config(protocol, seed, init, out, tokens, tasks)

    def build(config: Any) -> Any:
        llm, tokenizer = _llm(protocol)
        return build_stage2_trainer(config, DistContext(), llm=llm, tokenizer=tokenizer)

    def phase_of(trainer: Any) -> str:
        return "warmup" if trainer.phase().warmup else "joint"

    handover = cfg.joint.teacher_warmup.steps
    cap = cfg.max_steps
    teacher: dict[str, Any] = {}
    sampler: FlopSampler | None = None
    seconds = 0.0
    if evaluate_teacher and handover > 0 and (cap is None or handover < cap):
        first = dataclasses.replace(cfg, max_steps=handover)
        result, sampler, seconds = _fit(lambda: build(first), phase_of, None, protocol.flop_steps)
        teacher["handover"] = evaluate_teacher_at(protocol, Path(result.checkpoint), out / "teacher_handover")
        teacher["handover"]["step"] = handover
        cfg = dataclasses.replace(cfg, resume=str(out), init=None)
    result, sampler, more = _fit(lambda: build(cfg), phase_of, sampler, protocol.flop_steps)
    seconds += more
    if evaluate_teacher:
        teacher["end"] = evaluate_teacher_at(protocol, Path(result.checkpoint), out / "teacher_end")
        teacher["end"]["step"] = result.step
    return Path(result.checkpoint), sampler.cost(seconds), teacher


def evaluate_teacher_at(protocol: Protocol, checkpoint: Path, out: Path) -> dict[str, Any]:
    from benchmarks.teacher_quality import teacher_quality

    llm, tokenizer = _llm(protocol)
    quality = teacher_quality(
        checkpoint,
        protocol.index,
        protocol.val_split,
        protocol.device,
        protocol.vqa_gt,
        protocol.vqa_max_new_tokens,
        llm=llm,
        tokenizer=tokenizer,
        plan_frames=protocol.teacher_plan_frames,
    )
    out.mkdir(parents=True, exist_ok=True)
    (out / "teacher_quality.json").write_text(json.dumps(quality, indent=2) + "\n")
    return quality


def prepare_evaluation(protocol: Protocol, stage1_dir: Path, work: Path) -> None:
    """The evaluation index (the one the first stage-1 run built or was given), the VQA ground truth of
    ``vqa_frames`` val frames and the scene-blind references."""
    from benchmarks.teacher_quality import blind_vqa, constant_velocity_planning, spaced, vqa_ground_truth
    from dima_core.models import load_model_config
    from dima_core.training.config import TrainConfig
    from dima_core.training.distributed import DistContext
    from dima_core.training.stage1 import load_index, resolve_repo_path, stage1_data_config

    cfg = build_config(protocol.stage1_config, TrainConfig, {**protocol.common, "output_dir": str(stage1_dir)})
    model_config = load_model_config(resolve_repo_path(cfg.model_config))
    protocol.index = load_index(stage1_data_config(cfg, model_config), cfg, DistContext())
    protocol.references["constant_velocity"] = constant_velocity_planning(protocol.index, protocol.val_split)
    if protocol.teacher_eval == "none":
        return
    val = [s for s in protocol.index if s.split == protocol.val_split]
    if not val:
        raise ValueError(f"split '{protocol.val_split}' has no samples to evaluate the teacher on")
    protocol.vqa_gt = vqa_ground_truth(spaced(val, protocol.vqa_frames), work / "vqa_ground_truth.json")
    train_split = cfg.data.train_split
    train = [s for s in protocol.index if s.split == train_split]
    protocol.references["blind_vqa"] = blind_vqa(protocol.vqa_gt, spaced(train, 200))


def run_seed(
    protocol: Protocol, seed: int, seed_dir: Path, rungs: list[tuple[str, list[str], dict[str, bool]]], work: Path
) -> dict[str, dict[str, Any]]:
    """Both arms of one seed: ``{arm name: {"metrics", "cost", "teacher", "closed_loop"}}`` (module docstring).

    With ``protocol.init`` the given planner replaces the seed's stage-1 run (its cost is not counted); the seed
    then varies the stage-2 data order, the teacher's initialisation and the dropout of both arms."""
    from benchmarks.teacher_quality import evaluate_mode

    if protocol.init is not None:
        ckpt1, first = Path(protocol.init), {}
    else:
        ckpt1, cost1 = train_stage1(protocol, seed, seed_dir / "stage1")
        first = {"stage1": cost1}
    if protocol.index is None:
        prepare_evaluation(protocol, seed_dir / "stage1", work)
    out: dict[str, dict[str, Any]] = {}

    def scored(name: str, checkpoint: Path, costs: dict[str, RunCost], teacher: dict[str, Any], arm_dir: Path) -> None:
        entry = {
            "metrics": evaluate_mode(checkpoint, protocol.index, protocol.val_split, protocol.device),
            "cost": arm_cost({**first, **costs}),
            "teacher": teacher,
            "closed_loop": None,
        }
        if protocol.closed_loop is not None:
            entry["closed_loop"] = closed_loop_scores(checkpoint, protocol.closed_loop, arm_dir / "closed_loop")
            log.info("%s seed %d: closed-loop score %.3f", name, seed, entry["closed_loop"]["overall"]["score"])
        out[name] = entry

    ckpt_a, cost_a = train_control(protocol, seed, ckpt1, seed_dir / "A_planner_only")
    scored(ARM_A, ckpt_a, {"planner_only": cost_a}, {}, seed_dir / "A_planner_only")
    for k, (name, tokens, tasks) in enumerate(rungs):
        evaluate_teacher = protocol.teacher_eval == "all" or (protocol.teacher_eval == "last" and k == len(rungs) - 1)
        rung_dir = seed_dir / f"B_stage2_rung{k}"
        ckpt_b, cost_b, teacher = train_rung(protocol, seed, ckpt1, rung_dir, tokens, tasks, evaluate_teacher)
        scored(rung_name(name), ckpt_b, {"stage2": cost_b}, teacher, rung_dir)
    return out


__all__ = [
    "ARM_A",
    "ClosedLoopSpec",
    "Protocol",
    "SharedLLM",
    "build_config",
    "prepare_evaluation",
    "run_seed",
    "rung_name",
    "stage2_config",
    "train_control",
    "train_rung",
    "train_stage1",
]
