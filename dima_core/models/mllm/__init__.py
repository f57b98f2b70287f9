"""DiMA's MLLM teacher: BEAM Q-former adapters, a LoRA-tuned causal LM, task heads, surrogate tasks, distillation.

Modules (one concept each): ``config`` (MllmConfig), ``llm`` (offline loading, freezing, LoRA), ``adapters``
(Q-formers), ``prompt`` (placeholders, splicing, labels), ``heads`` (planning, BEV decoders), ``masking`` (c),
``scene_editing`` (e), ``distill`` (f and DiMA-Dual), ``losses`` (a-f, Drive-KD option), ``teacher`` (DimaTeacher).

Heavy imports (transformers, peft) happen when a model is built, not on import.
"""

from dima_core.models.mllm.config import MllmConfig, load_mllm_config
from dima_core.models.mllm.distill import FeatureDistiller, dual_mode_feature, dual_mode_plan, kl_divergence
from dima_core.models.mllm.teacher import DimaTeacher, TeacherOutput

__all__ = [
    "DimaTeacher",
    "FeatureDistiller",
    "MllmConfig",
    "TeacherOutput",
    "dual_mode_feature",
    "dual_mode_plan",
    "kl_divergence",
    "load_mllm_config",
]
