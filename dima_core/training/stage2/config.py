"""Typed stage-2 configuration: :class:`Stage2TrainConfig` = :class:`TrainConfig` + the ``joint:`` section.

The ``joint`` section (:class:`JointConfig`) holds what stage 2 adds to a training run: the teacher's YAML and the
ablation switches, the QA sources, and the protocol choices of the distillation study (issue 11): the teacher
warm-up and the distillation ramp (:class:`TeacherWarmupConfig`, ``distill_ramp_steps``), the planner's learning-rate
schedule (:class:`PlannerLrConfig`), the distillation loss kind (``distill_loss``) and the training diagnostics
(:class:`DiagnosticsConfig`). docs/stage2.md describes each with the recipe.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from dima_core.config import ranged
from dima_core.data.general_qa import GeneralQAConfig
from dima_core.training.config import TrainConfig

# Teacher terms in the order the step reports them; the multi-teacher terms ``distill_<name>`` follow.
TEACHER_TERMS: tuple[str, ...] = ("vqa", "plan", "recon", "future", "distill", "scene_edit")
# Terms a teacher warm-up may train (the distillation into the planner starts at the handover by definition).
WARMUP_TERMS: tuple[str, ...] = ("vqa", "plan", "recon", "future", "scene_edit", "attention_distill")
DistillLossKind = Literal["kl", "l1", "l2", "cosine"]


@dataclass
class TaskSwitches:
    """Which teacher terms train (the ablation ladder switches them on one by one)."""

    vqa: bool = ranged(True, help="(a) next-token CE on QA answers")
    llm_plan: bool = ranged(True, help="(b) the MLLM planning head's L1 (off: weight 0; the head still runs)")
    distill: bool = ranged(True, help="(f) distillation from the MLLM planning feature into the planner's ego feature")
    recon: bool = ranged(True, help="(c) masked BEV token reconstruction (off: mask ratio 0)")
    future: bool = ranged(True, help="(d) BEV tokens at t+1, t+2 (off: future frames are not even loaded)")
    scene_edit: bool = ranged(True, help="(e) scene editing: edited QA + edited ego label")


@dataclass
class TeacherWarmupConfig:
    """Phase 1 of stage 2: the teacher learns alone before it teaches.

    For the first ``steps`` optimiser steps the planner (scene encoder included) is frozen: eval mode (no dropout,
    BatchNorm statistics untouched), ``requires_grad`` off, so it gets no gradient and AdamW leaves its parameters
    and state alone. Only ``terms`` train the teacher (adapters, LoRA, heads, queries) on the frozen BEAM tokens;
    the distillation terms are not computed. The planner's own loss is still computed and logged.
    """

    steps: int = ranged(
        0,
        lo=0,
        hi=100_000_000,
        help="optimiser steps of teacher-only training at the start of stage 2 (0: none, DiMA as published)",
    )
    terms: list[str] = ranged(
        default_factory=lambda: ["vqa", "plan"],
        help="teacher terms the warm-up trains (of vqa, plan, recon, future, scene_edit, attention_distill; those "
        "switched off in tasks are absent anyway). Others are not built (future frames, scene edits) or are "
        "computed with weight 0 (recon: the BEV masking is part of the teacher's forward)",
    )

    def validate(self) -> None:
        unknown = [t for t in self.terms if t not in WARMUP_TERMS]
        if unknown:
            raise ValueError(
                f"terms {unknown} are not warm-up terms (choose from "
                f"{list(WARMUP_TERMS)}; distillation starts at the handover)"
            )
        if self.steps > 0 and not self.terms:
            raise ValueError("steps > 0 needs at least one warm-up term in terms")


@dataclass
class PlannerLrConfig:
    """The planner's learning rate in stage 2 (its own AdamW param group; the teacher follows ``schedule``).

    ``factor(step)`` multiplies ``optimizer.lr``; it is 0 during the teacher warm-up (frozen planner) and, from the
    handover step h on:

    - ``shared``: ``multiplier * lr_factor(step, total, schedule)``, the run's warm-up + cosine, which re-warms a
      converged stage-1 planner together with the fresh teacher (what DiMA's single schedule does);
    - ``constant``: ``multiplier`` (e.g. stage 1's final lr: ``multiplier = stage-1 lr * min_lr_ratio / lr``);
    - ``cosine``: ``multiplier * lr_factor(step - h, total - h, (warmup_iters, warmup_ratio, min_lr_ratio))``, a
      schedule of its own that starts at the handover.
    """

    schedule: Literal["shared", "constant", "cosine"] = ranged(
        "shared",
        help="shared: the run's schedule (re-warms the planner with the teacher); constant: a fixed "
        "multiple of optimizer.lr; cosine: its own warm-up + cosine from the handover to the end",
    )
    multiplier: float = ranged(1.0, lo=0.0, hi=100.0, help="planner peak lr = optimizer.lr * multiplier")
    warmup_iters: int = ranged(0, lo=0, hi=10_000_000, help="cosine: linear warm-up steps after the handover")
    warmup_ratio: float = ranged(1.0 / 3.0, lo=0.0, hi=1.0, help="cosine: lr factor at the first warm-up step")
    min_lr_ratio: float = ranged(1e-3, lo=0.0, hi=1.0, help="cosine: final lr as a fraction of the peak")


@dataclass
class DiagnosticsConfig:
    """Why distillation helps or hurts, measured during training and appended to ``metrics.jsonl``.

    On every ``every``-th optimiser step (steps ``every``, ``2 every``, ...: a run shorter than ``every`` records
    nothing) the step records each loss term's raw value and its weighted contribution to ``total``, the phase
    and distillation scale, both learning rates, the planner's feature distance to the teacher's (L2, cosine, the
    configured distillation loss), and with ``grad_cosine`` the cosine and norms of the gradients of the planning
    loss, of the distillation terms and of the other teacher terms on the parameters of ``modules`` (the shared
    encoder).
    """

    every: int = ranged(50, lo=0, hi=10_000_000, help="optimiser steps between diagnostic records (0: off)")
    grad_cosine: bool = ranged(
        True,
        help="also the gradient cosines on `modules`: one extra backward per loss group on a recorded step "
        "(the teacher group's runs through the LLM); needs unsharded parameters: off with a WARNING under FSDP",
    )
    modules: list[str] = ranged(
        default_factory=lambda: ["planner.backbone", "planner.bev_encoder"],
        help="dotted submodules of the joint model whose parameters the gradient cosines are taken on (default: "
        "the scene encoder the planner and the teacher share)",
    )


@dataclass
class JointConfig:
    """Stage-2 settings on top of :class:`TrainConfig`."""

    mllm_config: str = ranged(
        "config/mllm/smollm2_135m.yaml",
        help="MLLM teacher YAML (name under config/mllm/ "
        "or a path); its weights section holds every teacher loss weight",
    )
    beam_tokens: list[str] = ranged(
        default_factory=lambda: ["bev", "ego", "agent", "map"],
        help="token types the LLM sees; the others are zeroed before the adapters",
    )
    tasks: TaskSwitches = field(default_factory=TaskSwitches)
    planner_loss_weight: float = ranged(1.0, lo=0.0, hi=1000.0, help="weight of the planner's own loss total")
    qa_source: Literal["auto", "drivelm", "rule_based"] = ranged(
        "auto",
        help="auto: drivelm_path, else <dataroot>/drivelm_synth.json, else rule-based; rule-based always "
        "fills frames a file does not cover",
    )
    drivelm_path: str | None = ranged(None, help="DriveLM v1.1 JSON (train) whose keyframes are sample tokens")
    scene_edit_probability: float = ranged(0.5, lo=0.0, hi=1.0, help="chance each sample of a step is edited")
    max_question_tokens: int = ranged(256, lo=1, hi=8192, help="`dima ask` / answer_question question budget")
    general_qa: GeneralQAConfig = field(default_factory=GeneralQAConfig)
    teacher_warmup: TeacherWarmupConfig = field(default_factory=TeacherWarmupConfig)
    distill_ramp_steps: int = ranged(
        0,
        lo=0,
        hi=100_000_000,
        help="after the warm-up the distillation weights (distill and distill_<name>) grow "
        "linearly over this many steps: 1/N of the configured weight at the handover step, the full weight from "
        "step handover + N - 1 on (0: the full weight at once)",
    )
    distill_loss: DistillLossKind | None = ranged(
        None,
        help="distillation distance of (f): kl (DiMA), l1, l2 or cosine on the features (Orion-Lite); None "
        "keeps the MLLM config's distill.kind",
    )
    planner_lr: PlannerLrConfig = field(default_factory=PlannerLrConfig)
    diagnostics: DiagnosticsConfig = field(default_factory=DiagnosticsConfig)


@dataclass
class Stage2TrainConfig(TrainConfig):
    """:class:`TrainConfig` + :class:`JointConfig` (``joint:`` in the YAML)."""

    stage: int = ranged(2, lo=2, hi=2, help="always 2")
    find_unused_parameters: bool = ranged(
        True,
        help="needed (DDP and FSDP): steps without scene edits leave heads "
        "unused, a teacher warm-up leaves the planner without gradients",
    )
    joint: JointConfig = field(default_factory=JointConfig)


def teacher_config(joint: JointConfig) -> Any:
    """The MLLM config with the task switches applied (recon off = mask ratio 0, LLM plan off = weight 0) and
    ``joint.distill_loss`` as its ``distill.kind`` when set."""
    from dima_core.models.mllm.config import load_mllm_config
    from dima_core.training.stage1 import resolve_repo_path

    cfg = load_mllm_config(str(resolve_repo_path(joint.mllm_config)))
    tasks = joint.tasks
    if not tasks.recon:
        cfg.masking = dataclasses.replace(cfg.masking, ratio=0.0)
    if not tasks.llm_plan:
        cfg.weights = dataclasses.replace(cfg.weights, plan=0.0)
    if joint.distill_loss is not None:
        cfg.distill = dataclasses.replace(cfg.distill, kind=joint.distill_loss)
    return cfg


def enabled_terms(tasks: TaskSwitches, mllm_cfg: Any = None) -> tuple[str, ...]:
    """Teacher term names every step reports (identical on every rank, as the logging all-reduce requires); with
    ``mllm_cfg``, also the multi-teacher terms ``distill_<name>`` when that option and distillation are on, and
    ``attention_distill`` when that option is on."""
    on = {
        "vqa": tasks.vqa,
        "plan": True,
        "recon": tasks.recon,
        "future": tasks.future,
        "distill": tasks.distill,
        "scene_edit": tasks.scene_edit,
    }
    terms = tuple(t for t in TEACHER_TERMS if on[t])
    if mllm_cfg is not None and tasks.distill:
        terms += tuple(mllm_cfg.extra_term_weights())
    if mllm_cfg is not None and mllm_cfg.attention_distill.enabled:  # the teacher computes it on every pass
        terms += ("attention_distill",)
    return terms


def is_distill_term(name: str) -> bool:
    """Whether teacher term ``name`` pulls the planner towards the teacher: (f) and the multi-teacher terms (the
    terms the warm-up withholds and the ramp scales; ``attention_distill`` is a teacher-side regulariser)."""
    return name == "distill" or name.startswith("distill_")


def describe_config(config: Stage2TrainConfig) -> str:
    """One-line JSON of the switches and protocol choices (benchmark reports)."""
    from dima_core.config import config_to_dict

    joint = config.joint
    return json.dumps(
        {
            "tasks": config_to_dict(joint.tasks),
            "beam_tokens": joint.beam_tokens,
            "teacher_warmup": config_to_dict(joint.teacher_warmup),
            "distill_ramp_steps": joint.distill_ramp_steps,
            "distill_loss": joint.distill_loss,
            "planner_lr": config_to_dict(joint.planner_lr),
        }
    )


__all__ = [
    "DiagnosticsConfig",
    "DistillLossKind",
    "JointConfig",
    "PlannerLrConfig",
    "Stage2TrainConfig",
    "TEACHER_TERMS",
    "TaskSwitches",
    "TeacherWarmupConfig",
    "WARMUP_TERMS",
    "describe_config",
    "enabled_terms",
    "is_distill_term",
    "teacher_config",
]
