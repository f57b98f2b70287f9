"""``DimaJointModel``: the vision planner and its MLLM teacher as one module (DiMA stage 2 and inference modes).

Training (stage 2, :mod:`dima_core.training.stage2`): one :meth:`DimaJointModel.forward` runs the planner and, when
given :class:`TeacherInputs`, the teacher on the planner's BEAM tokens (the shared scene encoder is the teacher's
trainable tokenizer), returning the planner output and the teacher's weighted loss terms. Everything runs inside
one ``forward`` so DDP sees every gradient-producing module.

Checkpoints hold the planner, adapters, heads, queries and LoRA weights but *not* the frozen LLM base:
:meth:`state_dict` drops those keys and :meth:`load_state_dict` accepts their absence (and only theirs). The LLM is
rebuilt from the MLLM config stored next to the weights (``model_config["mllm"]``).

Inference modes (:data:`MODES`):
- ``vision``: the planner alone; the deployed path. :func:`load_dima` in this mode never constructs the LLM.
- ``mllm``: the teacher's planning head on the planner's BEAM tokens.
- ``dual``: DiMA-Dual, ``planner.decode(max(planner ego feature, project(MLLM planning feature)))``.

:func:`answer_question` is the library entry of ``dima ask`` and of the ROS MLLM node.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from dima_core.io.checkpoint import (
    KEY_CONFIG,
    KEY_MODEL,
    KEY_MODEL_CONFIG,
    KEY_STEP,
    CheckpointError,
    check_model_state,
    load_checkpoint,
    resolve_checkpoint,
)
from dima_core.models.beam import BeamTokens
from dima_core.models.config import ModelConfig
from dima_core.models.planner import select_by_command
from dima_core.models.vision_planner import PlannerOutput, VisionPlanner

Mode = Literal["vision", "mllm", "dual"]
MODES: tuple[str, ...] = ("vision", "mllm", "dual")
# BEAM token types (MllmConfig's TOKEN_TYPES) -> BeamTokens attribute names.
TOKEN_ATTRS: dict[str, str] = {"bev": "bev", "ego": "ego", "agent": "agents", "map": "map"}
DEFAULT_MAX_QUESTION_TOKENS = 256


class QuestionTooLongError(ValueError):
    """A question longer than the configured token budget (the prompt would crowd out the scene tokens)."""


@dataclass
class TeacherInputs:
    """What the teacher's losses need besides the BEAM tokens (one entry per batch sample).

    prompts: QA prompts (with answers when VQA is trained). plan_gt (B, T, 2), plan_mask (B, T): GT ego future.
    distill: feed the planner's penultimate ego feature to the KL term. future_bev ``{k: (B, H*W, C)}`` and
    future_valid ``{k: (B,) bool}``: detached encoder tokens of keyframe t+k. edits / edit_prompts: scene editing.
    """

    prompts: Any
    plan_gt: torch.Tensor
    plan_mask: torch.Tensor
    distill: bool = True
    future_bev: dict[int, torch.Tensor] | None = None
    future_valid: dict[int, torch.Tensor] | None = None
    edits: Sequence[Any] | None = None
    edit_prompts: Any = None


@dataclass
class JointOutput:
    """``planner``: the planner's output; ``teacher_total`` / ``teacher_terms``: weighted sum and raw terms."""

    planner: PlannerOutput
    teacher_total: torch.Tensor | None = None
    teacher_terms: dict[str, torch.Tensor] = field(default_factory=dict)


def is_frozen_llm_key(name: str) -> bool:
    """State-dict key of a frozen LLM base weight (everything under ``teacher.llm.`` except LoRA tensors)."""
    return name.startswith("teacher.llm.") and "lora_" not in name


class DimaJointModel(nn.Module):
    """Vision planner + optional MLLM teacher.

    Args:
        planner: the :class:`VisionPlanner` (its encoder is shared with the teacher).
        teacher: a :class:`~dima_core.models.mllm.DimaTeacher`, or None for vision-only use.
        beam_tokens: token types the teacher sees; the others are replaced by zeros before the adapters (the
            ablation rung "without all BEAM tokens"), so no scene information flows through them.
    """

    def __init__(
        self, planner: VisionPlanner, teacher: nn.Module | None = None, beam_tokens: Sequence[str] = tuple(TOKEN_ATTRS)
    ) -> None:
        super().__init__()
        unknown = sorted(set(beam_tokens) - set(TOKEN_ATTRS))
        if unknown or not beam_tokens:
            raise ValueError(f"beam_tokens must be a non-empty subset of {list(TOKEN_ATTRS)}, got {list(beam_tokens)}")
        self.planner = planner
        self.teacher = teacher
        self.beam_tokens = tuple(beam_tokens)
        if teacher is not None:
            c = planner.config
            teacher.cfg.check_model(c.embed_dim, tuple(c.bev.grid_size), c.planner.feature_dim)

    @property
    def config(self) -> ModelConfig:
        return self.planner.config

    # ------------------------------------------------------------------------------------------------ state
    def state_dict(self, *args: Any, destination: Any = None, prefix: str = "", keep_vars: bool = False) -> Any:
        """Every tensor except the frozen LLM base (it is rebuilt from the MLLM config, not stored)."""
        state = super().state_dict(*args, destination=destination, prefix=prefix, keep_vars=keep_vars)
        for key in [k for k in state if is_frozen_llm_key(k[len(prefix) :])]:
            del state[key]
        return state

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False) -> Any:
        """Load everything :meth:`state_dict` stores; with ``strict`` only frozen LLM base keys may be missing."""
        result = super().load_state_dict(state_dict, strict=False, assign=assign)
        if strict:
            missing = [k for k in result.missing_keys if not is_frozen_llm_key(k)]
            if missing or result.unexpected_keys:
                raise RuntimeError(
                    f"DimaJointModel.load_state_dict: missing {missing[:5]} (+{max(len(missing) - 5, 0)}),"
                    f" unexpected {list(result.unexpected_keys)[:5]}"
                )
        return result

    # ------------------------------------------------------------------------------------------------ forward
    def teacher_view(self, beam: BeamTokens) -> BeamTokens:
        """The BEAM tokens the teacher reads: excluded token types zeroed (shapes kept for the adapters)."""
        if len(self.beam_tokens) == len(TOKEN_ATTRS):
            return beam
        replaced = {
            attr: torch.zeros_like(getattr(beam, attr))
            for name, attr in TOKEN_ATTRS.items()
            if name not in self.beam_tokens
        }
        return dataclasses.replace(beam, **replaced)

    def forward(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_ego: torch.Tensor,
        ego_status: torch.Tensor,
        command: torch.Tensor,
        prev_bev: torch.Tensor | None = None,
        ego_motion: torch.Tensor | None = None,
        teacher_inputs: TeacherInputs | None = None,
    ) -> JointOutput:
        """Planner forward (VisionPlanner's arguments) and, with ``teacher_inputs``, the teacher's losses."""
        out = self.planner(images, intrinsics, cam_to_ego, ego_status, command, prev_bev, ego_motion)
        if teacher_inputs is None:
            return JointOutput(out)
        if self.teacher is None:
            raise RuntimeError("teacher_inputs given to a DimaJointModel built without a teacher")
        t = teacher_inputs
        total, terms, _ = self.teacher.losses(
            self.teacher_view(out.beam),
            t.prompts,
            command,
            t.plan_gt,
            t.plan_mask,
            planner_feature=out.ego_feature if t.distill else None,
            future_bev=t.future_bev,
            future_valid=t.future_valid,
            edits=t.edits,
            edit_prompts=t.edit_prompts,
        )
        return JointOutput(out, total, terms)

    @torch.no_grad()
    def encode_bev_tokens(
        self, images: torch.Tensor, intrinsics: torch.Tensor, cam_to_ego: torch.Tensor
    ) -> torch.Tensor:
        """(B, H*W, C) BEV tokens of other frames (the future-prediction targets): eval mode, no gradient."""
        was_training = self.planner.training
        self.planner.eval()  # targets without dropout noise
        try:
            feats = self.planner.backbone(images.flatten(0, 1))
            bev = self.planner.bev_encoder(feats, intrinsics, cam_to_ego, None, None)
        finally:
            self.planner.train(was_training)
        return bev.flatten(2).transpose(1, 2)

    # ------------------------------------------------------------------------------------------------ modes
    def _require_teacher(self, mode: str) -> nn.Module:
        if self.teacher is None:
            raise RuntimeError(f"mode '{mode}' needs the MLLM teacher; this model was loaded without it")
        return self.teacher

    def plan(
        self,
        mode: Mode,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_ego: torch.Tensor,
        ego_status: torch.Tensor,
        command: torch.Tensor,
        prev_bev: torch.Tensor | None = None,
        ego_motion: torch.Tensor | None = None,
    ) -> PlannerOutput:
        """The planner's output with ``trajectories`` / ``trajectory`` (and ``ego_feature`` in dual mode) taken
        from the chosen mode; the BEAM outputs are the planner's in every mode."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        out = self.planner(images, intrinsics, cam_to_ego, ego_status, command, prev_bev, ego_motion)
        if mode == "vision":
            return out
        if mode == "mllm":
            mllm_trajs, _ = self._require_teacher(mode).plan(self.teacher_view(out.beam))
            trajs, feature = mllm_trajs.to(out.trajectories.dtype), out.ego_feature
        else:
            trajs, feature = self.dual_trajectories(out.beam, out.ego_feature)
        return dataclasses.replace(
            out, trajectories=trajs, trajectory=select_by_command(trajs, command), ego_feature=feature
        )

    def dual_trajectories(self, beam: BeamTokens, ego_feature: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """DiMA-Dual from the planner's outputs alone, without the cameras (what the ROS MLLM node runs on the
        planner node's dima/BeamTokens).

        Args:
            beam: the planner's BEAM tokens (B samples).
            ego_feature: (B, C_plan) the planner's penultimate planning feature (``PlannerOutput.ego_feature``, the
                exported ``ego_feature`` output).
        Returns:
            trajectories (B, M, T, 2) from the planner's final head applied to the fused feature, and that fused
            feature (B, C_plan): the element-wise max of ``ego_feature`` and the projected MLLM planning feature.
        """
        from dima_core.models.mllm.distill import dual_mode_feature

        teacher = self._require_teacher("dual")
        _, mllm_feature = teacher.plan(self.teacher_view(beam))
        feature = dual_mode_feature(ego_feature, mllm_feature, teacher.distiller.project)
        return self.planner.planner.decode(feature), feature


class ModePlanner(nn.Module):
    """A :class:`DimaJointModel` in one inference mode behind :class:`VisionPlanner`'s call signature, so the
    planner inference loop (:func:`dima_core.eval.planner_inference.run_planner`) runs every mode unchanged."""

    def __init__(self, joint: DimaJointModel, mode: Mode) -> None:
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if mode != "vision" and joint.teacher is None:
            raise ValueError(f"mode '{mode}' needs a stage-2 checkpoint loaded with its teacher")
        self.joint = joint
        self.mode = mode

    @property
    def config(self) -> ModelConfig:
        return self.joint.planner.config

    @property
    def backbone(self) -> nn.Module:  # history_bev reads the encoder parts of temporal planners
        return self.joint.planner.backbone

    @property
    def bev_encoder(self) -> nn.Module:
        return self.joint.planner.bev_encoder

    def forward(
        self,
        images: torch.Tensor,
        intrinsics: torch.Tensor,
        cam_to_ego: torch.Tensor,
        ego_status: torch.Tensor,
        command: torch.Tensor,
        prev_bev: torch.Tensor | None = None,
        ego_motion: torch.Tensor | None = None,
    ) -> PlannerOutput:
        return self.joint.plan(self.mode, images, intrinsics, cam_to_ego, ego_status, command, prev_bev, ego_motion)


# ---------------------------------------------------------------------------------------------------- loading
@dataclass
class LoadedDima:
    """A model restored by :func:`load_dima`.

    model: the joint model in eval mode (``teacher`` None in vision mode). model_config: the planner's config.
    mllm_config: the teacher's config (None for stage-1 checkpoints). train_config: the checkpoint's training
    config dict. checkpoint: file path. step: optimiser steps. stage: 1 or 2.
    """

    model: DimaJointModel
    model_config: ModelConfig
    mllm_config: Any
    train_config: dict[str, Any]
    checkpoint: str
    step: int
    stage: int


def joint_model_config(model_config: ModelConfig, mllm_config: Any, beam_tokens: Sequence[str]) -> dict[str, Any]:
    """The ``model_config`` a stage-2 checkpoint stores: planner and teacher configs (how to rebuild the LLM)."""
    from dima_core.config import config_to_dict

    return {
        "planner": config_to_dict(model_config),
        "mllm": config_to_dict(mllm_config),
        "beam_tokens": list(beam_tokens),
    }


def build_teacher(mllm_config: Any, llm: nn.Module | None = None, tokenizer: Any = None) -> nn.Module:
    """A :class:`DimaTeacher` for ``mllm_config``; ``llm``/``tokenizer`` reuse an already loaded base LLM."""
    from dima_core.models.mllm.teacher import DimaTeacher

    return DimaTeacher(mllm_config, llm=llm, tokenizer=tokenizer)


def load_dima(
    checkpoint: str | os.PathLike,
    mode: Mode = "vision",
    map_location: str | torch.device = "cpu",
    llm: nn.Module | None = None,
    tokenizer: Any = None,
) -> LoadedDima:
    """Restore a stage-1 or stage-2 checkpoint (file or run directory), or a planner weights file, for ``mode``.

    ``vision`` builds the planner only: the LLM is neither loaded nor constructed, and the teacher's weights in
    a stage-2 checkpoint are skipped. ``mllm``/``dual`` rebuild the teacher from the stored MLLM config (the frozen
    base from its source, offline; or ``llm``/``tokenizer`` when given) and load adapters, heads and LoRA.

    Raises:
        CheckpointError: unreadable checkpoint, or a stage-1 checkpoint asked for a teacher mode.
    """
    from dima_core.config import config_from_dict
    from dima_core.models.weights_file import is_weights_file, weights_as_checkpoint_state

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    # A weights file (safetensors, planner only, how planners ship: dima_core/models/weights_file.py) or a checkpoint.
    path = Path(checkpoint) if is_weights_file(checkpoint) else resolve_checkpoint(checkpoint)
    if is_weights_file(path):
        if mode != "vision":
            raise CheckpointError(
                f"{path} is a planner weights file (planner only): mode '{mode}' needs a stage-2 "
                "checkpoint with the MLLM teacher"
            )
        state = weights_as_checkpoint_state(path)
    else:
        state = load_checkpoint(path, map_location=map_location)
    stored = dict(state.get(KEY_MODEL_CONFIG) or {})
    weights: Mapping[str, torch.Tensor] = state[KEY_MODEL]
    if "planner" in stored and "mllm" in stored:  # stage 2
        model_config = config_from_dict(dict(stored["planner"]), ModelConfig, source=f"{path}:model_config.planner")
        planner_state = {k[len("planner.") :]: v for k, v in weights.items() if k.startswith("planner.")}
        stage = 2
    elif stored:
        model_config = config_from_dict(stored, ModelConfig, source=f"{path}:model_config")
        planner_state, stage = dict(weights), 1
    else:
        raise CheckpointError(f"checkpoint {path} stores no model_config")
    planner = VisionPlanner(model_config)
    mllm_config = None
    teacher = None
    beam_tokens: Sequence[str] = tuple(stored.get("beam_tokens") or TOKEN_ATTRS)
    if stage == 2:
        from dima_core.models.mllm.config import MllmConfig

        mllm_config = config_from_dict(dict(stored["mllm"]), MllmConfig, source=f"{path}:model_config.mllm")
    if mode != "vision":
        if mllm_config is None:
            raise CheckpointError(
                f"checkpoint {path} is a stage-1 (planner-only) checkpoint: mode '{mode}' needs "
                "a stage-2 checkpoint with the MLLM teacher"
            )
        teacher = build_teacher(mllm_config, llm, tokenizer)
    model = DimaJointModel(planner, teacher, beam_tokens)
    if teacher is None:
        check_model_state(planner_state, planner, str(path))
        planner.load_state_dict(planner_state)
    else:
        try:
            model.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"checkpoint {path} does not fit its own configs: {exc}") from exc
    model.eval()
    return LoadedDima(
        model,
        model_config,
        mllm_config,
        dict(state.get(KEY_CONFIG) or {}),
        str(path),
        int(state.get(KEY_STEP, 0)),
        stage,
    )


# ---------------------------------------------------------------------------------------------------- asking
def check_question(tokenizer: Any, question: str, max_tokens: int = DEFAULT_MAX_QUESTION_TOKENS) -> int:
    """Token count of ``question``; raises :class:`QuestionTooLongError` above ``max_tokens`` or when empty."""
    if not question or not question.strip():
        raise QuestionTooLongError("the question is empty")
    count = len(tokenizer(question, add_special_tokens=False)["input_ids"])
    if count > max_tokens:
        raise QuestionTooLongError(
            f"the question has {count} tokens; at most {max_tokens} are allowed (shorten it, or raise "
            "--max-question-tokens)"
        )
    return count


def _stop_when(should_stop: Callable[[], bool]) -> Any:
    """A ``StoppingCriteriaList`` that ends generation (after the current token) once ``should_stop()`` is true."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    class _CallbackStop(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            return torch.full((input_ids.shape[0],), bool(should_stop()), dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([_CallbackStop()])


def answer_question(
    model: DimaJointModel,
    sample_or_beam: Any,
    question: str,
    max_new_tokens: int = 64,
    max_question_tokens: int = DEFAULT_MAX_QUESTION_TOKENS,
    should_stop: Callable[[], bool] | None = None,
) -> tuple[str, float]:
    """``(answer, latency_ms)``: the teacher's greedy answer grounded on one sample's BEAM tokens.

    Args:
        model: a joint model with its teacher (:func:`load_dima` in ``mllm`` or ``dual`` mode).
        sample_or_beam: :class:`BeamTokens` of one sample (e.g. published by the planner node), or a batch dict
            of one sample from :func:`dima_core.data.dataset.collate` (images, intrinsics, cam_to_ego, ego_status,
            command), on which the planner's encoder runs first.
        question: the question; at most ``max_question_tokens`` tokens.
        max_new_tokens: generation budget.
        should_stop: polled after every generated token; when it returns True generation ends early and the
            partial answer is returned (the ROS MLLM node's timeout and shutdown).
    Returns:
        the answer text and the wall time in ms (encoder, when run, plus generation).
    """
    teacher = model._require_teacher("ask")
    check_question(teacher.tokenizer, question, max_question_tokens)
    if max_new_tokens < 1:
        raise ValueError("max_new_tokens must be >= 1")
    device = next(model.parameters()).device
    start = time.perf_counter()
    with torch.no_grad():
        if isinstance(sample_or_beam, BeamTokens):
            beam = sample_or_beam
        else:
            batch = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in sample_or_beam.items()}
            was_training = model.training
            model.eval()
            try:
                beam = model.planner(
                    batch["images"], batch["intrinsics"], batch["cam_to_ego"], batch["ego_status"], batch["command"]
                ).beam
            finally:
                model.train(was_training)
        if beam.bev.shape[0] != 1:
            raise ValueError(f"answer_question takes one sample, got a batch of {beam.bev.shape[0]}")
        answer = teacher.generate(
            model.teacher_view(beam),
            question,
            max_new_tokens=max_new_tokens,
            stopping_criteria=_stop_when(should_stop) if should_stop else None,
        )[0]
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return answer, 1000.0 * (time.perf_counter() - start)


__all__ = [
    "DEFAULT_MAX_QUESTION_TOKENS",
    "DimaJointModel",
    "JointOutput",
    "LoadedDima",
    "MODES",
    "ModePlanner",
    "QuestionTooLongError",
    "TOKEN_ATTRS",
    "TeacherInputs",
    "answer_question",
    "build_teacher",
    "check_question",
    "is_frozen_llm_key",
    "joint_model_config",
    "load_dima",
]
