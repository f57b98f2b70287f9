"""Stage 2: DiMA joint training of the vision planner and its MLLM teacher (``dima train --stage 2``).

    dima train --stage 2 --config config/train/stage2_dima_tiny.yaml --init runs/stage1/latest --dataroot data/synth

What trains: the scene encoder, the planner, the Q-former adapters, the teacher's heads and queries and the LoRA
weights; the LLM base is frozen (and never stored in checkpoints: :class:`~dima_core.models.dima.DimaJointModel`).
``--init`` accepts a stage-1 checkpoint (planner weights) or a stage-2 one (everything but the frozen base).

One step (:class:`Stage2Step`) on a batch of keyframes:
- QA: one (question, answer) pair per sample, drawn deterministically from ``(seed, step, sample token)`` among the
  sample's pairs: a DriveLM JSON (``joint.drivelm_path``), else the synthetic world's ``drivelm_synth.json`` in the
  dataroot, else (and for frames those files do not cover) the rule-based generator on the fly;
- future BEV targets: the encoder (eval mode, no gradient) on keyframes t+k (``heads.future_offsets``, 1 and 2)
  found through the index's ``next_token`` chain; samples without them are masked;
- scene editing: with probability ``joint.scene_edit_probability`` per sample, a seeded add/remove edit of the GT
  (:func:`~dima_core.data.qa.scene_edits.edit_scene`) with its QA and edited ego label;
- loss: ``planner_loss_weight * PlannerLoss.total + teacher total`` (every teacher weight in the MLLM config); every
  term is returned, so the Trainer logs each to TensorBoard and metrics.jsonl under ``train/loss/<name>``.
  Planner terms keep PlannerLoss's names, teacher terms are prefixed ``mllm_``.

Options from Drive-KD and DriVLM (all off by default):
- ``joint.general_qa`` (DriVLM's general/domain mix): with probability ``ratio`` a sample's QA pair comes from a local
  general-purpose QA file instead (:mod:`dima_core.data.general_qa`), drawn from ``(seed, step, sample token)``;
  training steps only, so validation losses stay on driving QA;
- ``mllm.multi_teacher`` (Drive-KD multi-teacher): extra distillation terms ``distill_<name>`` from the LLM's
  ``<plan>`` hidden states at chosen layers into the planner's ego feature (:mod:`dima_core.models.mllm.distill`);
- ``mllm.gradient_projection`` (Drive-KD's gradient projection, PCGrad): the listed terms' gradients on the shared
  student (``modules``, the planner with its scene encoder by default) are projected off each other where they
  conflict, through a zero-valued surrogate added to ``total`` (:mod:`dima_core.training.gradient_projection`), so
  the generic Trainer's single backward (and DDP's all-reduce in it) is unchanged; it logs ``gradproj_*``.

Task switches (``joint.tasks``) turn each teacher term off for the paper's ablation ladder (``dima bench distill``):
vqa (no answers in the prompts), llm_plan (weight 0), distill (no planner feature), recon (mask ratio 0), future (no
future frames loaded), scene_edit (no edits); ``joint.beam_tokens`` restricts which token types the LLM sees.

Checkpoints, resume, precision, TensorBoard, DDP/FSDP and determinism come from the generic Trainer. It runs with
``find_unused_parameters: true`` because a step without scene edits (or with an absent task) leaves parameters
without gradient. The 7B configuration (config/train/stage2_llava7b.yaml) shards the LLM's decoder layers with FSDP
(``distributed.strategy: fsdp``, dima_core/training/fsdp.py), bf16 weights and gradient checkpointing
(training/README.md).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import numpy as np
import torch
from torch import nn

from dima_core.config import ranged
from dima_core.data.dataset import DrivingDataset, collate
from dima_core.data.general_qa import GeneralQAConfig, GeneralQAMix
from dima_core.data.index import SampleIndex
from dima_core.data.sample import DrivingSample
from dima_core.training.config import TrainConfig
from dima_core.training.distributed import DistContext
from dima_core.training.stage1 import (
    Stage1Validation,
    history_bev,
    load_index,
    planner_targets,
    resolve_repo_path,
    stage1_data_config,
)
from dima_core.training.stage1 import unwrap_model as _unwrap  # the body's name until stage 2 is restructured
from dima_core.training.trainer import Trainer

log = logging.getLogger(__name__)

SYNTH_QA_FILE = "drivelm_synth.json"  # written by `dima data synth` next to the tables
TEACHER_TERMS: tuple[str, ...] = ("vqa", "plan", "recon", "future", "distill", "scene_edit")


# ---------------------------------------------------------------------------------------------------- config
@dataclass
class TaskSwitches:
    """Which teacher terms train (the ablation ladder switches them on one by one)."""

    vqa: bool = ranged(True, help="(a) next-token CE on QA answers")
    llm_plan: bool = ranged(True, help="(b) the MLLM planning head's L1 (off: weight 0; the head still runs)")
    distill: bool = ranged(True, help="(f) KL from the MLLM planning feature into the planner's ego feature")
    recon: bool = ranged(True, help="(c) masked BEV token reconstruction (off: mask ratio 0)")
    future: bool = ranged(True, help="(d) BEV tokens at t+1, t+2 (off: future frames are not even loaded)")
    scene_edit: bool = ranged(True, help="(e) scene editing: edited QA + edited ego label")


@dataclass
class JointConfig:
    """Stage-2 settings on top of :class:`TrainConfig`."""

    mllm_config: str = ranged("config/mllm/smollm2_135m.yaml", help="MLLM teacher YAML (name under config/mllm/ "
                              "or a path); its weights section holds every teacher loss weight")
    beam_tokens: list[str] = ranged(default_factory=lambda: ["bev", "ego", "agent", "map"],
                                    help="token types the LLM sees; the others are zeroed before the adapters")
    tasks: TaskSwitches = field(default_factory=TaskSwitches)
    planner_loss_weight: float = ranged(1.0, lo=0.0, hi=1000.0, help="weight of the planner's own loss total")
    qa_source: Literal["auto", "drivelm", "rule_based"] = ranged(
        "auto", help="auto: drivelm_path, else <dataroot>/drivelm_synth.json, else rule-based; rule-based always "
        "fills frames a file does not cover"
    )
    drivelm_path: Optional[str] = ranged(None, help="DriveLM v1.1 JSON (train) whose keyframes are sample tokens")
    scene_edit_probability: float = ranged(0.5, lo=0.0, hi=1.0, help="chance each sample of a step is edited")
    max_question_tokens: int = ranged(256, lo=1, hi=8192, help="`dima ask` / answer_question question budget")
    general_qa: GeneralQAConfig = field(default_factory=GeneralQAConfig)


@dataclass
class Stage2TrainConfig(TrainConfig):
    """:class:`TrainConfig` + :class:`JointConfig` (``joint:`` in the YAML)."""

    stage: int = ranged(2, lo=2, hi=2, help="always 2")
    find_unused_parameters: bool = ranged(True, help="needed (DDP and FSDP): steps without scene edits leave heads "
                                          "unused")
    joint: JointConfig = field(default_factory=JointConfig)


def teacher_config(joint: JointConfig) -> Any:
    """The MLLM config with the task switches applied (recon off = mask ratio 0, LLM plan off = weight 0)."""
    from dima_core.models.mllm.config import load_mllm_config

    cfg = load_mllm_config(str(resolve_repo_path(joint.mllm_config)))
    tasks = joint.tasks
    if not tasks.recon:
        cfg.masking = dataclasses.replace(cfg.masking, ratio=0.0)
    if not tasks.llm_plan:
        cfg.weights = dataclasses.replace(cfg.weights, plan=0.0)
    return cfg


def enabled_terms(tasks: TaskSwitches, mllm_cfg: Any = None) -> tuple[str, ...]:
    """Teacher term names every step reports (identical on every rank, as the logging all-reduce requires); with
    ``mllm_cfg``, also the multi-teacher terms ``distill_<name>`` when that option and distillation are on, and
    ``attention_distill`` when that option is on."""
    on = {"vqa": tasks.vqa, "plan": True, "recon": tasks.recon, "future": tasks.future, "distill": tasks.distill,
          "scene_edit": tasks.scene_edit}
    terms = tuple(t for t in TEACHER_TERMS if on[t])
    if mllm_cfg is not None and tasks.distill:
        terms += tuple(mllm_cfg.extra_term_weights())
    if mllm_cfg is not None and mllm_cfg.attention_distill.enabled:  # the teacher computes it on every pass
        terms += ("attention_distill",)
    return terms


# ---------------------------------------------------------------------------------------------------- QA
def _stable_hash(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


class QATable:
    """Per-keyframe (question, answer) pairs: from a DriveLM file when it covers the frame, else rule-based."""

    def __init__(self, pairs: Optional[dict[str, list[tuple[str, str]]]] = None, source: str = "rule_based") -> None:
        self.pairs = pairs or {}
        self.source = source
        self._generated: dict[str, list[tuple[str, str]]] = {}

    @classmethod
    def from_drivelm(cls, path: str | Path) -> "QATable":
        from dima_core.data.drivelm import load_drivelm

        data = load_drivelm(path)
        pairs = {frame.frame_token: [(qa.question, qa.answer) for qa in frame.all_qa()] for _, frame in data.frames()}
        return cls({k: v for k, v in pairs.items() if v}, source=str(path))

    @classmethod
    def from_config(cls, joint: JointConfig, dataroot: str) -> "QATable":
        if joint.qa_source == "rule_based":
            return cls()
        if joint.drivelm_path:
            return cls.from_drivelm(resolve_repo_path(joint.drivelm_path))
        synth = Path(dataroot) / SYNTH_QA_FILE
        if synth.is_file():
            return cls.from_drivelm(synth)
        if joint.qa_source == "drivelm":
            raise FileNotFoundError(f"joint.qa_source is 'drivelm' but no drivelm_path is set and {synth} is absent")
        return cls()

    def for_sample(self, sample: DrivingSample) -> list[tuple[str, str]]:
        """The frame's pairs; the rule-based generator's (cached) where the file has none."""
        found = self.pairs.get(sample.token)
        if found:
            return found
        if sample.token not in self._generated:
            from dima_core.data.qa.generator import generate_frame

            frame, _ = generate_frame(sample)
            self._generated[sample.token] = [(qa.question, qa.answer) for qa in frame.all_qa()]
        return self._generated[sample.token]


# ---------------------------------------------------------------------------------------------------- data
class Stage2Dataset(DrivingDataset):
    """:class:`DrivingDataset` items plus what stage 2 needs.

    Extra keys: ``future_images_{k}`` / ``future_intrinsics_{k}`` / ``future_cam_to_ego_{k}`` (zeros when absent)
    and ``future_mask_{k}`` (bool) for each offset; ``qa`` (list of (question, answer)); ``edit_scene`` (an
    :class:`~dima_core.data.qa.scene_edits.EditableScene` of the GT, when scene editing is on).
    """

    def __init__(self, index: SampleIndex, cfg: Any, qa: QATable, future_offsets: Sequence[int] = (),
                 with_scene: bool = True) -> None:
        super().__init__(index, cfg)
        self.qa = qa
        self.future_offsets = tuple(future_offsets)
        self.with_scene = with_scene

    def future_sample(self, sample: DrivingSample, offset: int) -> Optional[DrivingSample]:
        """Keyframe t+offset of the same scene (through ``next_token``), None past the scene end / the index."""
        current: Optional[DrivingSample] = sample
        for _ in range(offset):
            nxt = current.next_token if current is not None else ""
            current = self.index.get(nxt) if nxt and nxt in self.index else None
        return current

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = super().__getitem__(i)
        sample = self.index.get(self.tokens[i])
        for k in self.future_offsets:
            future = self.future_sample(sample, k)
            if future is not None:
                cams = self._cameras(future)
                item[f"future_images_{k}"] = torch.from_numpy(np.ascontiguousarray(cams["images"]))
                item[f"future_intrinsics_{k}"] = torch.from_numpy(cams["intrinsics"])
                item[f"future_cam_to_ego_{k}"] = torch.from_numpy(cams["cam_to_ego"])
            else:
                item[f"future_images_{k}"] = torch.zeros_like(item["images"])
                item[f"future_intrinsics_{k}"] = item["intrinsics"].clone()
                item[f"future_cam_to_ego_{k}"] = item["cam_to_ego"].clone()
            item[f"future_mask_{k}"] = torch.tensor(future is not None)
        item["qa"] = self.qa.for_sample(sample)
        if self.with_scene:
            from dima_core.data.qa.scene_edits import EditableScene

            item["edit_scene"] = EditableScene.from_sample(sample)
        return item


_OBJECT_KEYS = ("qa", "edit_scene")


def stage2_collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`collate` for the tensors; ``qa`` and ``edit_scene`` stay per-sample lists."""
    objects = {key: [item[key] for item in items] for key in _OBJECT_KEYS if key in items[0]}
    batch = collate([{k: v for k, v in item.items() if k not in _OBJECT_KEYS} for item in items])
    batch.update(objects)
    return batch


# ---------------------------------------------------------------------------------------------------- step
class Stage2Step:
    """``step_fn`` of the trainer: joint forward, planner + teacher losses (module docstring)."""

    def __init__(self, loss: nn.Module, joint: JointConfig, temporal: bool, seed: int,
                 future_offsets: Sequence[int], mllm_cfg: Any = None,
                 general_qa: Optional[GeneralQAMix] = None) -> None:
        from dima_core.training.gradient_projection import GradientProjector

        self.loss = loss
        self.joint = joint
        self.temporal = temporal
        self.seed = seed
        self.future_offsets = tuple(future_offsets)
        self.terms = enabled_terms(joint.tasks, mllm_cfg)
        self.general_qa = general_qa
        self.projection = mllm_cfg.gradient_projection if mllm_cfg is not None else None
        self.projector: Optional[GradientProjector] = None
        if self.projection is not None and self.projection.enabled:
            self.projector = GradientProjector(self.projection.terms, self.projection.anchor,
                                               self.projection.sync_ranks)
        self.trainer: Optional[Trainer] = None  # set by build_stage2_trainer: the step index seeds QA and edits

    @property
    def step_index(self) -> int:
        return self.trainer.step if self.trainer is not None else 0

    def _rng(self, token: str, purpose: int) -> np.random.Generator:
        # A pure function of (seed, step, sample, purpose): resume and DDP ranks draw exactly what a rerun draws.
        return np.random.default_rng([self.seed, self.step_index, _stable_hash(token), purpose])

    def select_qa(self, batch: Mapping[str, Any], mix_general: bool = True) -> tuple[list[str], list[str]]:
        """One (question, answer) per sample: a general pair with probability ``joint.general_qa.ratio`` (when
        ``mix_general``), else one of the sample's driving pairs."""
        questions, answers = [], []
        for token, pairs in zip(batch["token"], batch["qa"]):
            general = self.general_qa.draw(self.seed, self.step_index, token) if (
                mix_general and self.general_qa is not None) else None
            if general is not None:
                q, a = general
            else:
                q, a = pairs[int(self._rng(token, 0).integers(len(pairs)))] if pairs else ("Describe the scene.", "")
            questions.append(q)
            answers.append(a)
        return questions, answers

    def select_edits(self, batch: Mapping[str, Any], cfg: Any) -> list[Any]:
        from dima_core.data.qa.scene_edits import edit_scene

        edits = []
        for token, scene in zip(batch["token"], batch["edit_scene"]):
            rng = self._rng(token, 1)
            edit = None
            if rng.random() < self.joint.scene_edit_probability:
                edit = edit_scene(scene, cfg, seed=int(rng.integers(2**31)))
            edits.append(edit)
        return edits

    def future_targets(self, joint_model: nn.Module, batch: Mapping[str, Any]
                       ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        bev, valid = {}, {}
        for k in self.future_offsets:
            mask = batch[f"future_mask_{k}"].bool()
            valid[k] = mask
            if bool(mask.any()):
                bev[k] = joint_model.encode_bev_tokens(batch[f"future_images_{k}"], batch[f"future_intrinsics_{k}"],
                                                       batch[f"future_cam_to_ego_{k}"])
            else:  # no sample has frame t+k: zeros that the mask excludes entirely
                c = joint_model.planner.config.embed_dim
                h, w = joint_model.planner.config.bev.grid_size
                bev[k] = torch.zeros(mask.shape[0], h * w, c, device=mask.device)
        return bev, valid

    def run(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[Any, dict[str, torch.Tensor]]:
        """``(PlannerOutput, losses)`` (Stage1Validation reads the plan as well as the losses)."""
        from dima_core.models.dima import TeacherInputs

        joint_model = _unwrap(model)
        teacher = joint_model.teacher
        tasks = self.joint.tasks
        if teacher.cfg.two_stage.enabled:
            teacher.set_stage(teacher.stage_for_step(self.step_index))
        prev_bev = ego_motion = None
        if self.temporal and "prev_images" in batch:
            prev_bev, ego_motion = history_bev(joint_model.planner, batch)
        questions, answers = self.select_qa(batch, mix_general=joint_model.training)
        prompts = teacher.encode_prompts(questions, answers if tasks.vqa else None)
        future_bev = future_valid = None
        if tasks.future and self.future_offsets:
            future_bev, future_valid = self.future_targets(joint_model, batch)
        edits = edit_prompts = None
        if tasks.scene_edit and "edit_scene" in batch:
            edits = self.select_edits(batch, teacher.cfg.scene_edit)
            if any(e is not None for e in edits):
                edit_prompts = teacher.edit_qa_prompts(edits, seed=self.seed + self.step_index)
            else:
                edits = None
        inputs = TeacherInputs(prompts=prompts, plan_gt=batch["ego_future"], plan_mask=batch["ego_future_mask"],
                               distill=tasks.distill, future_bev=future_bev, future_valid=future_valid,
                               edits=edits, edit_prompts=edit_prompts)
        out = model(images=batch["images"], intrinsics=batch["intrinsics"], cam_to_ego=batch["cam_to_ego"],
                    ego_status=batch["ego_status"], command=batch["command"], prev_bev=prev_bev,
                    ego_motion=ego_motion, teacher_inputs=inputs)
        # Planner losses in fp32 whatever the autocast (Hungarian costs and focal terms), as in stage 1.
        with torch.autocast(device_type=batch["images"].device.type, enabled=False):
            planner_losses = dict(self.loss(out.planner, planner_targets(batch)))
        planner_total = planner_losses.pop("total")
        losses: dict[str, torch.Tensor] = dict(planner_losses)
        losses["planner_total"] = planner_total
        zero = planner_total.new_zeros(())
        for name in self.terms:  # absent this step (no edit, no answer tokens): a logged zero keeps keys aligned
            losses[f"mllm_{name}"] = out.teacher_terms.get(name, zero).float()
        losses["mllm_total"] = out.teacher_total.float()
        losses["total"] = self.joint.planner_loss_weight * planner_total + out.teacher_total.float()
        # Training steps only: validation runs without gradients (and without the collective of sync_ranks).
        if self.projector is not None and joint_model.training and torch.is_grad_enabled():
            self.project_gradients(model, teacher.cfg, planner_total, out.teacher_terms, losses)
        return out.planner, losses

    def project_gradients(self, model: nn.Module, mllm_cfg: Any, planner_total: torch.Tensor,
                          teacher_terms: Mapping[str, torch.Tensor], losses: dict[str, torch.Tensor]) -> None:
        """Add the gradient-projection surrogate to ``losses["total"]`` and log what the projection saw.

        ``model`` is the training model as the trainer passes it (maybe DDP-wrapped). Each term enters with its
        weight in the total, so the projected gradients are the ones the plain sum adds.
        """
        from dima_core.training.gradient_projection import is_sharded_model, module_parameters

        assert self.projector is not None and self.projection is not None
        if is_sharded_model(model):
            raise RuntimeError("mllm.gradient_projection needs unsharded parameters (one process or DDP); this run "
                               "shards the model with FSDP: switch one of the two off")
        joint_model = _unwrap(model)
        contributions = {"planner": self.joint.planner_loss_weight * planner_total}
        for name, value in teacher_terms.items():
            contributions[name] = mllm_cfg.term_weight(name) * value.float()
        params = [p for _, p in module_parameters(joint_model, self.projection.modules)]
        scaler = self.trainer.scaler if self.trainer is not None else None
        grad_scale = float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0
        # The visiting order: a pure function of (seed, step), the same on every rank and on a rerun.
        seed = int(np.random.SeedSequence([self.seed, self.step_index, 3]).generate_state(1)[0])
        surrogate, stats = self.projector.surrogate(contributions, params, seed, grad_scale)
        losses["total"] = losses["total"] + surrogate
        zero = losses["total"].detach().new_zeros(())
        losses["gradproj_conflicts"] = zero + float(stats.conflicts)
        losses["gradproj_min_cosine"] = zero + (1.0 if stats.skipped else stats.min_cosine)
        losses["gradproj_skipped"] = zero + float(stats.skipped)

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
        return self.run(model, batch)[1]


# ---------------------------------------------------------------------------------------------------- trainer
class Stage2Trainer(Trainer):
    """The generic Trainer; ``init`` also accepts a stage-1 (planner-only) checkpoint."""

    def init_weights(self, path: str | Path) -> Path:
        from dima_core.io.checkpoint import check_model_state, load_checkpoint, resolve_checkpoint

        file = resolve_checkpoint(path)
        state = load_checkpoint(file, map_location="cpu")
        weights = state["model"]
        if any(k.startswith("planner.") for k in weights) and "mllm" in (state.get("model_config") or {}):
            check_model_state(weights, self.model, str(file))
            self.load_model_state(weights)  # the Trainer's loader: it also shards the weights under FSDP
            what = "planner, adapters, heads and LoRA"
        else:
            check_model_state(weights, self.model.planner, str(file))
            self.load_model_state(weights, prefix="planner.")
            what = "planner (stage-1 checkpoint; the teacher starts fresh)"
        log.info("initialised %s from %s (stage %s, step %s)", what, file, state.get("stage"), state.get("step"))
        return file


def build_stage2_trainer(config: TrainConfig, ctx: DistContext, record_history: bool = False,
                         llm: Optional[nn.Module] = None, tokenizer: Any = None) -> Trainer:
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
        log.info("general QA mix: %.0f%% of samples from %s (%d pairs)", 100 * general_qa.ratio, general_qa.source,
                 len(general_qa.pairs))

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
    step = Stage2Step(loss, joint, temporal=model_config.bev.use_temporal, seed=config.seed, future_offsets=offsets,
                      mllm_cfg=mllm_cfg, general_qa=general_qa)
    if step.projector is not None:
        from dima_core.training.gradient_projection import module_parameters

        # Fail before training when `modules` names nothing trainable (a typo would otherwise stop step 1).
        shared = module_parameters(model, mllm_cfg.gradient_projection.modules)
        log.info("gradient projection of %s on %s (%.2f M parameters)", list(mllm_cfg.gradient_projection.terms),
                 list(mllm_cfg.gradient_projection.modules), sum(p.numel() for _, p in shared) / 1e6)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    frozen = sum(p.numel() for p in model.parameters() if not p.requires_grad)
    log.info("stage 2: %s + %s teacher: %.2f M trainable, %.2f M frozen (LLM base); terms %s; train %d samples",
             model_config.name, mllm_cfg.llm.source, trainable / 1e6, frozen / 1e6, list(step.terms), len(train_set))
    trainer = Stage2Trainer(model, step, train_set, config, ctx=ctx, collate_fn=stage2_collate, val_hook=None,
                            model_config=joint_model_config(model_config, mllm_cfg, joint.beam_tokens),
                            record_history=record_history)
    step.trainer = trainer
    if val_set is not None:
        trainer.val_hook = Stage1Validation(val_set, config, ctx, stage2_collate)
    return trainer


def describe_config(config: Stage2TrainConfig) -> str:
    """One-line JSON of the switches (benchmark reports)."""
    from dima_core.config import config_to_dict

    return json.dumps({"tasks": config_to_dict(config.joint.tasks), "beam_tokens": config.joint.beam_tokens})


__all__ = [
    "JointConfig",
    "QATable",
    "Stage2Dataset",
    "Stage2Step",
    "Stage2TrainConfig",
    "Stage2Trainer",
    "TaskSwitches",
    "build_stage2_trainer",
    "describe_config",
    "enabled_terms",
    "stage2_collate",
    "teacher_config",
]
