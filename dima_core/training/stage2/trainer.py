"""The stage-2 trainer: :class:`Stage2Trainer` (the generic Trainer with the phases, two lr groups and diagnostics)
and :func:`build_stage2_trainer`, which assembles model, losses, datasets and validation from a config.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

from torch import nn

from dima_core.data.general_qa import GeneralQAMix
from dima_core.training.config import TrainConfig
from dima_core.training.distributed import DistContext, all_reduce_mean
from dima_core.training.stage1 import Stage1Validation, load_index, resolve_repo_path, stage1_data_config
from dima_core.training.stage2.config import Stage2TrainConfig, teacher_config
from dima_core.training.stage2.data import Stage2Dataset, stage2_collate
from dima_core.training.stage2.lr import PLANNER_GROUP, TEACHER_GROUP, build_stage2_optimizer, build_stage2_scheduler
from dima_core.training.stage2.phases import Phase, PlannerFreeze, Stage2Phases
from dima_core.training.stage2.qa import QATable
from dima_core.training.stage2.step import Stage2Step
from dima_core.training.trainer import Batch, Trainer

log = logging.getLogger(__name__)


class Stage2Trainer(Trainer):
    """The generic Trainer for the joint model, plus what stage 2 adds around each step.

    - ``init`` also accepts a stage-1 (planner-only) checkpoint;
    - the optimiser has two param groups, planner and teacher, with the factors of
      :mod:`~dima_core.training.stage2.lr` (it replaces the Trainer's single group before anything has stepped);
    - before each training step the phase (:mod:`~dima_core.training.stage2.phases`) is applied: the planner is
      frozen during the teacher warm-up and restored at the handover;
    - after a step that recorded diagnostics they are averaged over the ranks and appended to ``metrics.jsonl``
      (and TensorBoard under ``diag/``).
    """

    def __init__(
        self, model: nn.Module, step_fn: Stage2Step, train_dataset: Any, config: Stage2TrainConfig, **kwargs: Any
    ) -> None:
        super().__init__(model, step_fn, train_dataset, config, **kwargs)
        joint = config.joint
        if self.fsdp is not None and joint.teacher_warmup.steps > 0:
            raise ValueError(
                "joint.teacher_warmup freezes the planner (requires_grad off), which FSDP fixes when it "
                "shards the model: use distributed.strategy ddp, or joint.teacher_warmup.steps 0"
            )
        if self.fsdp is not None and joint.diagnostics.every > 0 and step_fn.grad_cosine:
            # The other diagnostics still record; only the per-group gradients need unsharded parameters.
            log.warning(
                "joint.diagnostics.grad_cosine is off under FSDP (it takes gradients on unsharded "
                "parameters); the other diagnostics are recorded"
            )
            step_fn.grad_cosine = False
        if self.ctx.distributed and joint.teacher_warmup.steps > 0 and not config.find_unused_parameters:
            raise ValueError(
                "joint.teacher_warmup under DDP needs find_unused_parameters: true (the frozen planner "
                "gets no gradient)"
            )
        # Nothing has stepped yet: the Trainer's single-group AdamW is replaced by the two groups.
        self.optimizer = build_stage2_optimizer(self.model, config)
        self.scheduler = build_stage2_scheduler(self.optimizer, config, self.total_steps)
        self.phases = Stage2Phases(joint)
        self.freeze = PlannerFreeze(self.model.planner)

    def init_weights(self, path: str | Path) -> Path:
        from dima_core.io.checkpoint import check_model_state
        from dima_core.models.weights_file import load_weights_or_checkpoint

        file, state = load_weights_or_checkpoint(path)  # a stage-1/2 checkpoint or a planner weights file
        weights = state["model"]
        if any(k.startswith("planner.") for k in weights) and "mllm" in (state.get("model_config") or {}):
            check_model_state(weights, self.model, str(file))
            self.load_model_state(weights)  # the Trainer's loader: it also shards the weights under FSDP
            what = "planner, adapters, heads and LoRA"
        else:
            check_model_state(weights, self.model.planner, str(file))
            self.load_model_state(weights, prefix="planner.")
            what = "planner (stage-1 checkpoint or weights file; the teacher starts fresh)"
        log.info("initialised %s from %s (stage %s, step %s)", what, file, state.get("stage"), state.get("step"))
        return file

    def phase(self) -> Phase:
        """The phase of the next training step."""
        return self.phases.at(self.step)

    def train_step(self, batch: Batch) -> tuple[dict[str, float], float]:
        phase = self.phase()
        self.freeze.apply(phase.warmup)
        lrs = self.scheduler.get_last_lr()  # the rates this step updates with
        values, grad_norm = super().train_step(batch)
        diagnostics = self.step_fn.take_diagnostics()  # type: ignore[attr-defined]
        if diagnostics is not None:
            self.log_diagnostics(phase, diagnostics, lrs, grad_norm)
        return values, grad_norm

    def log_diagnostics(self, phase: Phase, values: dict[str, float], lrs: list[float], grad_norm: float) -> None:
        """Append one ``diag/`` record of the step just done to ``metrics.jsonl`` (rank 0; values averaged over
        the ranks, which all record the same keys at the same steps)."""
        numbers = {f"diag/{k}": v for k, v in values.items()}
        numbers["diag/distill_scale"] = phase.distill_scale
        numbers["diag/lr_teacher"] = float(lrs[TEACHER_GROUP])
        numbers["diag/lr_planner"] = float(lrs[PLANNER_GROUP])
        if not math.isnan(grad_norm):
            numbers["diag/grad_norm_total"] = grad_norm
        numbers = all_reduce_mean(numbers, self.ctx)
        if not self.ctx.is_main:
            return
        step = phase.step + 1  # steps done, as the loss records count them
        record = {"step": step, "epoch": self.epoch, "diag/phase": phase.name, **numbers}
        self.output_dir.mkdir(parents=True, exist_ok=True)
        with open(self.output_dir / "metrics.jsonl", "a") as fileobj:
            fileobj.write(json.dumps(record) + "\n")
        writer = getattr(self, "_writer", None)
        if writer is not None:
            for key, value in numbers.items():
                writer.add_scalar(key, value, step)


def check_warmup_terms(config: Stage2TrainConfig) -> None:
    """A warm-up needs a term that every step has: ``plan`` (always computed) or ``vqa`` (with its task on)."""
    warmup = config.joint.teacher_warmup
    warmup.validate()  # configs built in code get the YAML loader's check too
    if warmup.steps > 0 and "plan" not in warmup.terms and not ("vqa" in warmup.terms and config.joint.tasks.vqa):
        raise ValueError(
            f"joint.teacher_warmup.terms {warmup.terms}: include 'plan' (or 'vqa' with tasks.vqa on), "
            "a term every warm-up step trains"
        )


def build_stage2_trainer(
    config: TrainConfig,
    ctx: DistContext,
    record_history: bool = False,
    llm: nn.Module | None = None,
    tokenizer: Any = None,
) -> Stage2Trainer:
    """Joint model, losses, datasets, validation hook and the Trainer of a stage-2 run.

    ``llm``/``tokenizer``: an already loaded base LLM to use instead of loading ``mllm.llm`` (tests, benchmarks);
    it is frozen and LoRA-wrapped here unless it is a peft model already.
    """
    from dima_core.models import VisionPlanner, load_model_config
    from dima_core.models.dima import DimaJointModel, joint_model_config
    from dima_core.models.losses import PlannerLoss
    from dima_core.models.mllm.teacher import DimaTeacher
    from dima_core.training.determinism import seed_everything

    if not isinstance(config, Stage2TrainConfig):
        raise TypeError("stage 2 needs a Stage2TrainConfig (a stage-2 YAML with a 'joint' section)")
    joint = config.joint
    check_warmup_terms(config)
    model_config = load_model_config(resolve_repo_path(config.model_config))
    mllm_cfg = teacher_config(joint)
    mllm_cfg.check_model(model_config.embed_dim, tuple(model_config.bev.grid_size), model_config.planner.feature_dim)
    mllm_cfg.validate()
    offsets = tuple(mllm_cfg.heads.future_offsets) if joint.tasks.future else ()

    data = stage1_data_config(config, model_config)
    index = load_index(data, config, ctx)
    qa = QATable.from_config(joint, data.dataroot)
    log.info("stage-2 QA source: %s (%d frames; rule-based for the rest)", qa.source, len(qa.pairs))
    general_qa = GeneralQAMix.from_config(joint.general_qa, resolve_repo_path)
    if general_qa is not None:
        log.info(
            "general QA mix: %.0f%% of samples from %s (%d pairs)",
            100 * general_qa.ratio,
            general_qa.source,
            len(general_qa.pairs),
        )

    def dataset(split: str) -> Stage2Dataset:
        return Stage2Dataset(index, dataclasses.replace(data, split=split), qa, offsets, joint.tasks.scene_edit)

    train_set = dataset(config.data.train_split)
    if len(train_set) == 0:
        raise ValueError(f"split '{config.data.train_split}' has no samples in {data.dataroot}")
    val_set = None
    if config.data.val_split is not None and config.validate_every_epochs:
        val_set = dataset(config.data.val_split)
        if len(val_set) == 0:
            log.warning("val split '%s' is empty: validation disabled", config.data.val_split)
            val_set = None

    # Identical initial weights (planner, adapters, heads, LoRA) on every rank, as in stage 1.
    seed_everything(config.seed, config.deterministic)
    planner = VisionPlanner(model_config)
    teacher = DimaTeacher(mllm_cfg, llm=llm, tokenizer=tokenizer)
    model = DimaJointModel(planner, teacher, joint.beam_tokens)
    loss = PlannerLoss(model_config.loss, model_config.bev.x_range, model_config.bev.y_range)
    step = Stage2Step(
        loss,
        joint,
        temporal=model_config.bev.use_temporal,
        seed=config.seed,
        future_offsets=offsets,
        mllm_cfg=mllm_cfg,
        general_qa=general_qa,
    )
    if step.projector is not None:
        from dima_core.training.gradient_projection import module_parameters

        # Fail before training when `modules` names nothing trainable (a typo would otherwise stop step 1).
        shared = module_parameters(model, mllm_cfg.gradient_projection.modules)
        log.info(
            "gradient projection of %s on %s (%.2f M parameters)",
            list(mllm_cfg.gradient_projection.terms),
            list(mllm_cfg.gradient_projection.modules),
            sum(p.numel() for _, p in shared) / 1e6,
        )
    if joint.diagnostics.every > 0 and joint.diagnostics.grad_cosine:
        from dima_core.training.gradient_projection import module_parameters

        module_parameters(model, joint.diagnostics.modules)  # the same early check for the diagnostics' modules
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    log.info(
        "stage 2: %s + %s teacher: %.2f M trainable, %.2f M frozen (LLM base); terms %s; distillation %s; "
        "teacher warm-up %d steps, ramp %d; planner lr %s; train %d samples",
        model_config.name,
        mllm_cfg.llm.source,
        trainable / 1e6,
        frozen / 1e6,
        list(step.terms),
        mllm_cfg.distill.kind,
        joint.teacher_warmup.steps,
        joint.distill_ramp_steps,
        joint.planner_lr.schedule,
        len(train_set),
    )
    trainer = Stage2Trainer(
        model,
        step,
        train_set,
        config,
        ctx=ctx,
        collate_fn=stage2_collate,
        val_hook=None,
        model_config=joint_model_config(model_config, mllm_cfg, joint.beam_tokens),
        record_history=record_history,
    )
    step.trainer = trainer
    if val_set is not None:
        trainer.val_hook = Stage1Validation(val_set, config, ctx, stage2_collate)
    return trainer


__all__ = ["Stage2Trainer", "build_stage2_trainer", "check_warmup_terms"]
