"""Stage 2: DiMA joint training of the vision planner and its MLLM teacher (``dima train --stage 2``).

    dima train --stage 2 --config config/train/stage2_dima_tiny.yaml --init runs/stage1/latest --dataroot data/synth

What trains: the scene encoder, the planner, the Q-former adapters, the teacher's heads and queries and the LoRA
weights; the LLM base is frozen (and never stored in checkpoints: :class:`~dima_core.models.dima.DimaJointModel`).
``--init`` accepts a stage-1 checkpoint (planner weights) or a stage-2 one (everything but the frozen base).

The package, one concern per module:

- :mod:`.config`: the typed ``joint:`` section (:class:`JointConfig`) on top of :class:`TrainConfig`, the teacher
  config with the task switches applied, the names of the terms;
- :mod:`.qa` / :mod:`.data`: the QA pairs per keyframe and the dataset with future frames and editable scenes;
- :mod:`.phases`: teacher warm-up (planner frozen), distillation ramp and joint training as functions of the step;
- :mod:`.lr`: the two AdamW param groups (teacher, planner) and the planner's own lr schedule;
- :mod:`.step`: one step (:class:`Stage2Step`): QA, future targets, scene edits, the joint forward and the losses;
- :mod:`.diagnostics`: loss-term sizes, gradient cosines on the shared encoder, feature distances;
- :mod:`.trainer`: :class:`Stage2Trainer` and :func:`build_stage2_trainer`;
- :mod:`.control`: the compute-matched planner-only arm of ``dima bench distill``.

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

Checkpoints, resume, precision, TensorBoard, DDP/FSDP and determinism come from the generic Trainer; every phase and
learning-rate factor is a function of the step, so resume stays exact. It runs with ``find_unused_parameters: true``
because a step without scene edits (or with an absent task, or in the warm-up) leaves parameters without gradient.
The 7B configuration (config/train/stage2_llava7b.yaml) shards the LLM's decoder layers with FSDP
(``distributed.strategy: fsdp``, dima_core/training/fsdp.py), bf16 weights and gradient checkpointing
(training/README.md).
"""

from dima_core.training.stage2.config import (
    TEACHER_TERMS,
    WARMUP_TERMS,
    DiagnosticsConfig,
    JointConfig,
    PlannerLrConfig,
    Stage2TrainConfig,
    TaskSwitches,
    TeacherWarmupConfig,
    describe_config,
    enabled_terms,
    is_distill_term,
    teacher_config,
)
from dima_core.training.stage2.control import PlannerOnlyTrainer, build_planner_only_trainer, planner_only_config
from dima_core.training.stage2.data import Stage2Dataset, stage2_collate
from dima_core.training.stage2.diagnostics import FeatureTap, feature_distances, gradient_statistics
from dima_core.training.stage2.lr import (
    build_stage2_optimizer,
    build_stage2_scheduler,
    check_planner_lr,
    planner_lr_factor,
    planner_parameters,
)
from dima_core.training.stage2.phases import Phase, PlannerFreeze, Stage2Phases
from dima_core.training.stage2.qa import SYNTH_QA_FILE, QATable
from dima_core.training.stage2.step import Stage2Step
from dima_core.training.stage2.trainer import Stage2Trainer, build_stage2_trainer, check_warmup_terms

__all__ = [
    "DiagnosticsConfig",
    "FeatureTap",
    "JointConfig",
    "Phase",
    "PlannerFreeze",
    "PlannerLrConfig",
    "PlannerOnlyTrainer",
    "QATable",
    "SYNTH_QA_FILE",
    "Stage2Dataset",
    "Stage2Phases",
    "Stage2Step",
    "Stage2TrainConfig",
    "Stage2Trainer",
    "TEACHER_TERMS",
    "TaskSwitches",
    "TeacherWarmupConfig",
    "WARMUP_TERMS",
    "build_planner_only_trainer",
    "build_stage2_optimizer",
    "build_stage2_scheduler",
    "build_stage2_trainer",
    "check_planner_lr",
    "check_warmup_terms",
    "describe_config",
    "enabled_terms",
    "feature_distances",
    "gradient_statistics",
    "is_distill_term",
    "planner_lr_factor",
    "planner_only_config",
    "planner_parameters",
    "stage2_collate",
    "teacher_config",
]
