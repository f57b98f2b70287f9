"""One stage-2 step (:class:`Stage2Step`, the trainer's ``step_fn``): joint forward, planner + teacher losses.

On a batch of keyframes:

- QA: one (question, answer) pair per sample, drawn deterministically from ``(seed, step, sample token)`` among the
  sample's pairs (:class:`~dima_core.training.stage2.qa.QATable`), or a general pair (``joint.general_qa``);
- future BEV targets: the encoder (eval mode, no gradient) on keyframes t+k (``heads.future_offsets``, 1 and 2)
  found through the index's ``next_token`` chain; samples without them are masked;
- scene editing: with probability ``joint.scene_edit_probability`` per sample, a seeded add/remove edit of the GT
  (:func:`~dima_core.data.qa.scene_edits.edit_scene`) with its QA and edited ego label;
- loss: ``total = planner_loss_weight * PlannerLoss.total + sum_n weight_n * scale_n * term_n`` where the weights
  are the MLLM config's and ``scale_n`` is the phase's (:mod:`~dima_core.training.stage2.phases`): in the teacher
  warm-up only the warm-up terms train and the planner's loss is logged but not trained; the distillation terms
  follow the ramp. Every term is returned, so the Trainer logs each under ``train/loss/<name>``: planner terms keep
  PlannerLoss's names, teacher terms (raw, unweighted) are prefixed ``mllm_``, ``mllm_total`` is the weighted
  teacher sum that enters ``total``.

Options: gradient projection (``mllm.gradient_projection``, :mod:`dima_core.training.gradient_projection`) adds
its zero-valued surrogate to ``total`` on training steps after the warm-up; diagnostics (``joint.diagnostics``,
:mod:`~dima_core.training.stage2.diagnostics`) are measured on recorded steps and left in :attr:`pending` for the
trainer to log.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from typing import Any

import numpy as np
import torch
from torch import nn

from dima_core.data.general_qa import GeneralQAMix
from dima_core.training.stage1 import float32_outputs, history_bev, planner_targets, unwrap_model
from dima_core.training.stage2.config import JointConfig, enabled_terms, is_distill_term
from dima_core.training.stage2.diagnostics import FeatureTap, feature_distances, gradient_statistics
from dima_core.training.stage2.phases import Phase, Stage2Phases
from dima_core.training.stage2.qa import stable_hash


def prefixed_parameters(model: nn.Module, modules: Sequence[str]) -> list[nn.Parameter]:
    """Parameters that require grad under the dotted submodule names ``modules`` (empty while they are frozen)."""
    return [
        p
        for n, p in model.named_parameters()
        if p.requires_grad and any(n == m or n.startswith(m + ".") for m in modules)
    ]


class Stage2Step:
    """``step_fn`` of the trainer: joint forward, planner + teacher losses (module docstring).

    Args:
        loss: the planner's :class:`~dima_core.models.losses.PlannerLoss`.
        joint: the run's ``joint`` section.
        temporal: the planner reads a BEV history (``bev.use_temporal``).
        seed: the run's seed (QA, edit and projection draws are functions of it and the step).
        future_offsets: keyframe offsets of the future-BEV targets (empty: none loaded).
        mllm_cfg: the teacher config (with the task switches applied).
        general_qa: the general/domain QA mix, when configured.
    """

    def __init__(
        self,
        loss: nn.Module,
        joint: JointConfig,
        temporal: bool,
        seed: int,
        future_offsets: Sequence[int],
        mllm_cfg: Any = None,
        general_qa: GeneralQAMix | None = None,
    ) -> None:
        from dima_core.training.gradient_projection import GradientProjector

        self.loss = loss
        self.joint = joint
        self.temporal = temporal
        self.seed = seed
        self.future_offsets = tuple(future_offsets)
        self.terms = enabled_terms(joint.tasks, mllm_cfg)
        self.general_qa = general_qa
        self.phases = Stage2Phases(joint)
        # joint.diagnostics.grad_cosine, unless the trainer turns it off (FSDP-sharded parameters).
        self.grad_cosine = joint.diagnostics.grad_cosine
        self.projection = mllm_cfg.gradient_projection if mllm_cfg is not None else None
        self.projector: GradientProjector | None = None
        if self.projection is not None and self.projection.enabled:
            self.projector = GradientProjector(
                self.projection.terms, self.projection.anchor, self.projection.sync_ranks
            )
        self.trainer: Any = None  # set by build_stage2_trainer: the step index seeds QA and edits
        # Diagnostics measured by the last recorded training step ({name: float}); the trainer takes them.
        self.pending: dict[str, float] | None = None

    @property
    def step_index(self) -> int:
        return self.trainer.step if self.trainer is not None else 0

    def phase(self) -> Phase:
        """The phase of the step in progress."""
        return self.phases.at(self.step_index)

    def _rng(self, token: str, purpose: int) -> np.random.Generator:
        # A pure function of (seed, step, sample, purpose): resume and DDP ranks draw exactly what a rerun draws.
        return np.random.default_rng([self.seed, self.step_index, stable_hash(token), purpose])

    def select_qa(self, batch: Mapping[str, Any], mix_general: bool = True) -> tuple[list[str], list[str]]:
        """One (question, answer) per sample: a general pair with probability ``joint.general_qa.ratio`` (when
        ``mix_general``), else one of the sample's driving pairs."""
        questions, answers = [], []
        for token, pairs in zip(batch["token"], batch["qa"], strict=True):
            general = (
                self.general_qa.draw(self.seed, self.step_index, token)
                if (mix_general and self.general_qa is not None)
                else None
            )
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
        for token, scene in zip(batch["token"], batch["edit_scene"], strict=True):
            rng = self._rng(token, 1)
            edit = None
            if rng.random() < self.joint.scene_edit_probability:
                edit = edit_scene(scene, cfg, seed=int(rng.integers(2**31)))
            edits.append(edit)
        return edits

    def future_targets(
        self, joint_model: nn.Module, batch: Mapping[str, Any]
    ) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
        bev, valid = {}, {}
        for k in self.future_offsets:
            mask = batch[f"future_mask_{k}"].bool()
            valid[k] = mask
            if bool(mask.any()):
                bev[k] = joint_model.encode_bev_tokens(
                    batch[f"future_images_{k}"], batch[f"future_intrinsics_{k}"], batch[f"future_cam_to_ego_{k}"]
                )
            else:  # no sample has frame t+k: zeros that the mask excludes entirely
                c = joint_model.planner.config.embed_dim
                h, w = joint_model.planner.config.bev.grid_size
                bev[k] = torch.zeros(mask.shape[0], h * w, c, device=mask.device)
        return bev, valid

    def teacher_inputs(self, joint_model: nn.Module, batch: Mapping[str, Any], phase: Phase) -> Any:
        """The :class:`~dima_core.models.dima.TeacherInputs` of this step (a warm-up builds what it trains)."""
        from dima_core.models.dima import TeacherInputs

        teacher = joint_model.teacher
        tasks = self.joint.tasks
        questions, answers = self.select_qa(batch, mix_general=joint_model.training)
        prompts = teacher.encode_prompts(questions, answers if tasks.vqa else None)
        future_bev = future_valid = None
        if tasks.future and self.future_offsets and self.phases.builds(phase, "future"):
            future_bev, future_valid = self.future_targets(joint_model, batch)
        edits = edit_prompts = None
        if tasks.scene_edit and "edit_scene" in batch and self.phases.builds(phase, "scene_edit"):
            edits = self.select_edits(batch, teacher.cfg.scene_edit)
            if any(e is not None for e in edits):
                edit_prompts = teacher.edit_qa_prompts(edits, seed=self.seed + self.step_index)
            else:
                edits = None
        return TeacherInputs(
            prompts=prompts,
            plan_gt=batch["ego_future"],
            plan_mask=batch["ego_future_mask"],
            distill=tasks.distill and self.phases.builds(phase, "distill"),
            future_bev=future_bev,
            future_valid=future_valid,
            edits=edits,
            edit_prompts=edit_prompts,
        )

    def run(self, model: nn.Module, batch: Mapping[str, Any]) -> tuple[Any, dict[str, torch.Tensor]]:
        """``(PlannerOutput, losses)`` (Stage1Validation reads the plan as well as the losses)."""
        joint_model = unwrap_model(model)
        teacher = joint_model.teacher
        phase = self.phase()
        training = joint_model.training and torch.is_grad_enabled()
        every = self.joint.diagnostics.every
        record = training and every > 0 and (self.step_index + 1) % every == 0  # steps every, 2 every, ...
        if teacher.cfg.two_stage.enabled:
            teacher.set_stage(teacher.stage_for_step(self.step_index))
        prev_bev = ego_motion = None
        if self.temporal and "prev_images" in batch:
            prev_bev, ego_motion = history_bev(joint_model.planner, batch)
        inputs = self.teacher_inputs(joint_model, batch, phase)
        tap = FeatureTap(teacher.plan_head) if record else nullcontext()
        with tap:
            out = model(
                images=batch["images"],
                intrinsics=batch["intrinsics"],
                cam_to_ego=batch["cam_to_ego"],
                ego_status=batch["ego_status"],
                command=batch["command"],
                prev_bev=prev_bev,
                ego_motion=ego_motion,
                teacher_inputs=inputs,
            )
        # Planner losses in fp32 whatever the autocast (Hungarian costs and focal terms), as in stage 1.
        with torch.autocast(device_type=batch["images"].device.type, enabled=False):
            planner_losses = dict(self.loss(float32_outputs(out.planner), planner_targets(batch)))
        planner_total = planner_losses.pop("total")
        losses: dict[str, torch.Tensor] = dict(planner_losses)
        losses["planner_total"] = planner_total
        zero = planner_total.new_zeros(())
        for name in self.terms:  # absent this step (no edit, no answer tokens): a logged zero keeps keys aligned
            losses[f"mllm_{name}"] = out.teacher_terms.get(name, zero).float()
        contributions = self.contributions(teacher.cfg, out.teacher_terms, phase)
        teacher_total: torch.Tensor | None = None
        for value in contributions.values():  # the terms' order: the same sum as the teacher's total_loss
            teacher_total = value if teacher_total is None else teacher_total + value
        if teacher_total is None:
            raise RuntimeError(
                f"step {self.step_index} ({phase.name}): no teacher term trains (terms present: "
                f"{sorted(out.teacher_terms)})"
            )
        losses["mllm_total"] = teacher_total
        planner_part = self.joint.planner_loss_weight * planner_total
        # In the warm-up the planner is frozen: its loss is measured, not trained.
        losses["total"] = teacher_total if phase.warmup else planner_part + teacher_total
        # Training steps only: validation runs without gradients (and without the collective of sync_ranks).
        if self.projector is not None and training:
            if phase.warmup:  # the shared student is frozen: nothing to project
                losses.update(
                    {"gradproj_conflicts": zero, "gradproj_min_cosine": zero + 1.0, "gradproj_skipped": zero + 1.0}
                )
            else:
                self.project_gradients(model, planner_part, contributions, losses)
        if record:
            self.pending = self.diagnose(joint_model, out, tap.feature, phase, planner_part, contributions, losses)
        return out.planner, losses

    def contributions(self, mllm_cfg: Any, terms: Mapping[str, torch.Tensor], phase: Phase) -> dict[str, torch.Tensor]:
        """``{term: weight * phase scale * value}`` of the teacher terms that train in ``phase`` (in the terms'
        order; a term with scale 0 is left out, so its parameters get no gradient at all)."""
        out = {}
        for name, value in terms.items():
            scale = self.phases.term_scale(phase, name)
            if scale > 0.0:
                out[name] = (mllm_cfg.term_weight(name) * scale) * value.float()
        return out

    def project_gradients(
        self,
        model: nn.Module,
        planner_part: torch.Tensor,
        contributions: Mapping[str, torch.Tensor],
        losses: dict[str, torch.Tensor],
    ) -> None:
        """Add the gradient-projection surrogate to ``losses["total"]`` and log what the projection saw.

        ``model`` is the training model as the trainer passes it (maybe DDP-wrapped). Each term enters with its
        contribution to the total (weight and phase scale), so the projected gradients are the ones the plain sum
        adds.
        """
        from dima_core.training.gradient_projection import is_sharded_model, module_parameters

        assert self.projector is not None and self.projection is not None
        if is_sharded_model(model):
            raise RuntimeError(
                "mllm.gradient_projection needs unsharded parameters (one process or DDP); this run "
                "shards the model with FSDP: switch one of the two off"
            )
        joint_model = unwrap_model(model)
        parts = {"planner": planner_part, **contributions}
        params = [p for _, p in module_parameters(joint_model, self.projection.modules)]
        scaler = self.trainer.scaler if self.trainer is not None else None
        grad_scale = float(scaler.get_scale()) if scaler is not None and scaler.is_enabled() else 1.0
        # The visiting order: a pure function of (seed, step), the same on every rank and on a rerun.
        seed = int(np.random.SeedSequence([self.seed, self.step_index, 3]).generate_state(1)[0])
        surrogate, stats = self.projector.surrogate(parts, params, seed, grad_scale)
        losses["total"] = losses["total"] + surrogate
        zero = losses["total"].detach().new_zeros(())
        losses["gradproj_conflicts"] = zero + float(stats.conflicts)
        losses["gradproj_min_cosine"] = zero + (1.0 if stats.skipped else stats.min_cosine)
        losses["gradproj_skipped"] = zero + float(stats.skipped)

    def diagnose(
        self,
        joint_model: nn.Module,
        out: Any,
        teacher_feature: torch.Tensor | None,
        phase: Phase,
        planner_part: torch.Tensor,
        contributions: Mapping[str, torch.Tensor],
        losses: Mapping[str, torch.Tensor],
    ) -> dict[str, float]:
        """The diagnostics of a recorded step (:mod:`~dima_core.training.stage2.diagnostics`), as floats."""
        from dima_core.training.trainer import loss_values

        cfg = self.joint.diagnostics
        teacher = joint_model.teacher
        record: dict[str, float] = {}
        values = loss_values(
            {"planner": losses["planner_total"], **{name: losses[f"mllm_{name}"] for name in self.terms}}
        )
        record.update({f"term/{k}": v for k, v in values.items()})
        weighted = {"planner": planner_part.detach() * (0.0 if phase.warmup else 1.0)}
        weighted.update(
            {
                name: contributions[name].detach() if name in contributions else planner_part.new_zeros(())
                for name in self.terms
            }
        )
        record.update({f"weighted/{k}": v for k, v in loss_values(weighted).items()})
        if teacher_feature is not None and out.planner.ego_feature is not None:
            with torch.no_grad():
                projected = teacher.distiller.project(teacher_feature)
            record.update(feature_distances(out.planner.ego_feature, projected, teacher.cfg.distill))
        if self.grad_cosine:
            distill = [v for k, v in contributions.items() if is_distill_term(k)]
            rest = [v for k, v in contributions.items() if not is_distill_term(k)]
            groups = {
                "planner": None if phase.warmup else planner_part,
                "distill": torch.stack(distill).sum() if distill else None,
                "teacher": torch.stack(rest).sum() if rest else None,
            }
            params = prefixed_parameters(joint_model, cfg.modules)
            record.update(gradient_statistics(groups, params))
        return record

    def take_diagnostics(self) -> dict[str, float] | None:
        """The diagnostics of the last recorded step, once (None when the last step recorded none)."""
        pending, self.pending = self.pending, None
        return pending

    def __call__(self, model: nn.Module, batch: Mapping[str, Any]) -> Mapping[str, torch.Tensor]:
        return self.run(model, batch)[1]


__all__ = ["Stage2Step", "prefixed_parameters"]
