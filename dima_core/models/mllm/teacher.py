"""``DimaTeacher``: BEAM adapters + LoRA LLM + task heads, i.e. DiMA's MLLM teacher.

One forward pass: the BEAM tokens go through their Q-former adapters (BEV tokens optionally masked first, agent
tokens optionally scene-edited), the adapter outputs and the learned ``<plan>`` query are spliced into the prompt's
embeddings, the LLM runs once, and the heads read its last hidden states:

- LM logits -> (a) VQA loss on the answer tokens;
- hidden at ``<plan>`` -> (b) planning head -> trajectories (B, M, T, 2) and penultimate feature (B, F);
- hidden at the BEV query positions -> (c) reconstruction of the masked BEV tokens;
- hidden at all scene positions (B, E, A, M, plan) -> (d) BEV tokens at t+1, t+2.

:meth:`DimaTeacher.losses` turns that (plus the planner's penultimate feature and an optional scene-edit pass) into
the weighted loss terms; :meth:`generate` answers questions; :meth:`plan` is the MLLM-only planning mode;
:meth:`dual_plan` the DiMA-Dual mode.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
import torch
from torch import nn

from dima_core.data.qa.scene_edits import SceneEdit
from dima_core.models.mllm.adapters import BeamAdapters
from dima_core.models.mllm.config import TOKEN_TYPES, MllmConfig
from dima_core.models.mllm.distill import FeatureDistiller, MultiTeacherDistiller, dual_mode_plan
from dima_core.models.mllm.heads import BevTokenDecoder, FutureBevHeads, PlanningHead
from dima_core.models.mllm.llm import add_lora, freeze, hidden_size, load_llm, lora_parameters
from dima_core.models.mllm.losses import (
    answer_token_loss,
    attention_distill_loss,
    future_loss,
    planning_l1,
    reconstruction_loss,
    scene_edit_loss,
    total_loss,
)
from dima_core.models.mllm.masking import BevMask, BevMasker, gather_tokens
from dima_core.models.mllm.prompt import (
    IGNORE_INDEX,
    SLOTS,
    PromptBatch,
    PromptBuilder,
    embed_prompt,
    splice_embeddings,
)
from dima_core.models.mllm.scene_editing import AddedAgentEncoder, apply_edits_to_tokens, edited_plan_targets


class BeamLike(Protocol):
    """What the teacher reads from :class:`dima_core.models.beam.BeamTokens`."""

    bev: torch.Tensor  # (B, H*W, C)
    ego: torch.Tensor  # (B, 1, C)
    agents: torch.Tensor  # (B, Na, C)
    map: torch.Tensor  # (B, Nm, C)
    agent_boxes: torch.Tensor  # (B, Na, 7)


@dataclass
class TeacherOutput:
    """Everything one teacher forward produces.

    Shapes: B batch, L prompt length (scene slots spliced in), D_llm the LLM's hidden size,
    M = ``heads.num_modes`` (one per driving command, VAD's order), T = ``heads.num_steps`` (6 at 0.5 s),
    F = ``heads.plan_feature_dim``, C = ``scene_dim`` (the BEAM token width), K masked BEV positions, K'
    future-queried BEV positions, H attention heads. Trajectories are positions in the current ego frame (x forward,
    y left, metres).
    """

    lm_loss: torch.Tensor | None  # () VQA cross-entropy on the answer tokens; None when no prompt has an answer
    hidden: torch.Tensor  # (B, L, D_llm) the LLM's last hidden states
    plan_trajectories: torch.Tensor  # (B, M, T, 2) the planning head's command-conditioned trajectories
    plan_feature: torch.Tensor  # (B, F) the planning head's penultimate feature (KL distillation, DiMA-Dual)
    bev_mask: BevMask | None = None  # the BEV masking applied (surrogate (c)); None when unmasked
    recon: torch.Tensor | None = None  # (B, K, C) reconstructed BEV tokens at bev_mask.positions
    recon_target: torch.Tensor | None = None  # (B, K, C) the unmasked BEV tokens at those positions
    future: dict[int, torch.Tensor] = field(default_factory=dict)  # {k: (B, K', C)} BEV tokens of keyframe t+k
    future_positions: torch.Tensor | None = None  # (B, K') long, the H*W grid positions ``future`` predicts
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer (B, H, L, L), when requested
    hidden_states: tuple[torch.Tensor, ...] | None = None  # per layer (B, L, D_llm), index 0 = the embeddings
    inputs_embeds: torch.Tensor | None = None  # (B, L, D_llm) the spliced prompt the LLM read


def _gather_positions(hidden: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(B, L, D), (B, K) -> (B, K, D)."""
    return torch.gather(hidden, 1, positions.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))


class DimaTeacher(nn.Module):
    """DiMA's MLLM teacher.

    Args:
        cfg: the teacher config.
        llm: a loaded causal LM (frozen and LoRA-wrapped here unless it already is a peft model), or None to load
            ``cfg.llm`` (offline).
        tokenizer: its tokenizer (required with ``llm``).
    """

    def __init__(self, cfg: MllmConfig, llm: nn.Module | None = None, tokenizer=None):
        super().__init__()
        cfg.validate()  # configs built in code (tests, benchmarks) get the YAML loader's cross-field checks too
        self.cfg = cfg
        if llm is None:
            llm, tokenizer = load_llm(cfg.llm)
        elif tokenizer is None:
            raise ValueError("DimaTeacher: pass the tokenizer together with the llm")
        else:
            from peft import PeftModel

            if not isinstance(llm, PeftModel):
                freeze(llm)
                llm = add_lora(llm, cfg.llm)
        self.llm = llm
        self.tokenizer = tokenizer
        # A model passed in keeps the attention kernel it was loaded with; the config is what was validated (e.g.
        # eager for attention distillation), so make the model follow it. A no-op for models load_llm built.
        if attn_implementation(llm) != cfg.llm.attn_implementation:
            _language_model(llm).set_attn_implementation(cfg.llm.attn_implementation)
        d_llm = hidden_size(llm)
        h = cfg.heads
        self.prompts = PromptBuilder(
            tokenizer,
            cfg.adapters.queries,
            cfg.llm.system_prompt,
            cfg.llm.max_answer_tokens,
            use_chat_template=cfg.llm.prompt_format == "chat_template",
        )
        self.adapters = BeamAdapters(cfg.scene_dim, d_llm, cfg.adapters)
        self.plan_query = nn.Parameter(torch.randn(d_llm) * 0.02)
        self.masker = BevMasker(cfg.scene_dim, cfg.masking.ratio)
        self.plan_head = PlanningHead(d_llm, h.plan_hidden, h.plan_feature_dim, h.num_modes, h.num_steps)
        self.recon_head = BevTokenDecoder(
            d_llm, cfg.scene_dim, h.bev_tokens, h.decoder_dim, h.decoder_heads, h.mlp_hidden
        )
        self.future_heads = FutureBevHeads(
            h.future_offsets, d_llm, cfg.scene_dim, h.bev_tokens, h.decoder_dim, h.decoder_heads, h.mlp_hidden
        )
        self.agent_encoder = AddedAgentEncoder(cfg.scene_dim, h.num_steps)
        self.distiller = FeatureDistiller(cfg.planner_feature_dim, h.plan_feature_dim, cfg.distill)
        # Drive-KD multi-teacher option: None when off, so checkpoints of the default config keep their keys.
        self.multi_teacher: MultiTeacherDistiller | None = None
        if cfg.multi_teacher.enabled:
            layers = getattr(getattr(llm, "config", None), "num_hidden_layers", None)
            self.multi_teacher = MultiTeacherDistiller(
                cfg.planner_feature_dim,
                d_llm,
                cfg.multi_teacher.teachers,
                cfg.distill,
                num_hidden_states=layers + 1 if isinstance(layers, int) else None,
            )
        if cfg.attention_distill.enabled:
            self._check_attention_layers()

    # ------------------------------------------------------------------------------------------------ building

    @property
    def device(self) -> torch.device:
        return self.plan_query.device

    def encode_prompts(
        self, questions: Sequence[str], answers: Sequence[str] | None = None, padding_side: str = "right"
    ) -> PromptBatch:
        """Tokenized, labelled, padded prompts on the teacher's device (see :class:`PromptBuilder`)."""
        return self.prompts.encode(questions, answers, padding_side=padding_side).to(self.device)

    def scene_embeddings(
        self,
        beam: BeamLike,
        mask_bev: bool = False,
        agents: torch.Tensor | None = None,
        agent_valid: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[dict[str, torch.Tensor], BevMask | None]:
        """Adapter outputs ``{name: (B, Q_name, D_llm)}`` (+ ``plan`` (B, 1, D_llm)) and the BEV mask applied.

        Args:
            beam: BEAM tokens. mask_bev: mask ``cfg.masking.ratio`` of the BEV tokens first (surrogate (c)).
            agents / agent_valid: replacement agent tokens (B, Na', C) and validity (B, Na') (scene editing).
        """
        bev_mask = self.masker(beam.bev, generator=generator) if mask_bev else None
        tokens = {
            "bev": bev_mask.tokens if bev_mask is not None else beam.bev,
            "ego": beam.ego,
            "agent": beam.agents if agents is None else agents,
            "map": beam.map,
        }
        valid = {"agent": agent_valid} if agent_valid is not None else None
        values = self.adapters(tokens, valid)
        values["plan"] = self.plan_query.view(1, 1, -1).expand(beam.bev.shape[0], 1, -1)
        return values, bev_mask

    # ------------------------------------------------------------------------------------------------ forward

    def forward(
        self,
        beam: BeamLike,
        prompts: PromptBatch,
        mask_bev: bool = False,
        predict_future: bool = False,
        agents: torch.Tensor | None = None,
        agent_valid: torch.Tensor | None = None,
        output_attentions: bool = False,
        generator: torch.Generator | None = None,
    ) -> TeacherOutput:
        """Run adapters, LLM and heads.

        Args:
            beam: BEAM tokens (B samples). prompts: B prompts from :meth:`encode_prompts` (with answers for a loss).
            mask_bev: apply surrogate (c) masking and predict the masked tokens.
            predict_future: predict BEV tokens at the configured future offsets (surrogate (d)).
            agents / agent_valid: scene-edited agent tokens (see :func:`apply_edits_to_tokens`).
            output_attentions: return per-layer attention maps (needs ``llm.attn_implementation: eager``).
            generator: RNG for masking and future-position subsampling.
        """
        self.check_beam(beam)
        values, bev_mask = self.scene_embeddings(beam, mask_bev, agents, agent_valid, generator)
        embeds = embed_prompt(self.llm.get_input_embeddings(), prompts, self.prompts.placeholder_ids)
        embeds = splice_embeddings(embeds, prompts.positions, values)
        out = self.llm(
            inputs_embeds=embeds,
            attention_mask=prompts.attention_mask,
            output_hidden_states=True,
            output_attentions=output_attentions,
            use_cache=False,
            logits_to_keep=1,  # the answer tokens' logits are computed below, only where supervised
        )
        hidden = out.hidden_states[-1]
        head_dtype = self.plan_query.dtype
        plan_hidden = _gather_positions(hidden, prompts.positions["plan"]).squeeze(1).to(head_dtype)
        trajectories, feature = self.plan_head(plan_hidden)
        lm = (
            answer_token_loss(hidden, prompts.labels, self.llm.get_output_embeddings())
            if bool((prompts.labels != IGNORE_INDEX).any())
            else None
        )
        result = TeacherOutput(
            lm,
            hidden,
            trajectories,
            feature,
            bev_mask=bev_mask,
            attentions=out.attentions if output_attentions else None,
            hidden_states=out.hidden_states,
            inputs_embeds=embeds,
        )
        if bev_mask is not None:
            memory = _gather_positions(hidden, prompts.positions["bev"]).to(head_dtype)
            result.recon = self.recon_head(memory, bev_mask.positions)
            result.recon_target = gather_tokens(beam.bev, bev_mask.positions)
        if predict_future:
            scene_pos = torch.cat([prompts.positions[name] for name in SLOTS], dim=1)
            memory = _gather_positions(hidden, scene_pos).to(head_dtype)
            result.future_positions = self.future_positions(beam.bev.shape[0], generator)
            result.future = self.future_heads(memory, result.future_positions)
        return result

    def check_beam(self, beam: BeamLike) -> None:
        """Raise ValueError when the BEAM tokens do not have the widths / BEV size this teacher was built for."""
        c, n = self.cfg.scene_dim, self.cfg.heads.bev_tokens
        for name in ("bev", "ego", "agents", "map"):
            t = getattr(beam, name)
            if t.dim() != 3 or t.shape[-1] != c:
                raise ValueError(f"BeamTokens.{name} has shape {tuple(t.shape)}; the teacher expects (B, N, {c})")
        if beam.bev.shape[1] != n:
            raise ValueError(f"BeamTokens.bev holds {beam.bev.shape[1]} tokens; heads.bev_tokens is {n}")

    def future_positions(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """(B, K) BEV positions the future heads predict: all, or a random subset (``future_query_subsample``)."""
        n = self.cfg.heads.bev_tokens
        k = self.cfg.heads.future_query_subsample
        if k is None or k >= n:
            return torch.arange(n, device=self.device).unsqueeze(0).expand(batch, -1)
        return torch.rand(batch, n, generator=generator).argsort(dim=1)[:, :k].to(self.device)

    # ------------------------------------------------------------------------------------------------ losses

    def losses(
        self,
        beam: BeamLike,
        prompts: PromptBatch,
        command: torch.Tensor,
        plan_gt: torch.Tensor,
        plan_mask: torch.Tensor,
        planner_feature: torch.Tensor | None = None,
        future_bev: dict[int, torch.Tensor] | None = None,
        future_valid: dict[int, torch.Tensor] | None = None,
        edits: Sequence[SceneEdit | None] | None = None,
        edit_prompts: PromptBatch | None = None,
        reference_attentions: Sequence[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor], TeacherOutput]:
        """All enabled DiMA loss terms and their weighted sum.

        Args:
            beam: BEAM tokens from the (trainable) scene encoder. prompts: QA prompts with answers.
            command: (B,) driving command. plan_gt: (B, T, 2) GT ego future. plan_mask: (B, T) bool.
            planner_feature: (B, C_plan) the planner's penultimate ego feature -> (f) when given, and the
                multi-teacher terms ``distill_<name>`` when that option is on.
            future_bev: ``{k: (B, H*W, C)}`` the encoder's BEV tokens of frame t+k -> (d) when given (detached here).
            future_valid: ``{k: (B,) bool}`` which samples have frame t+k.
            edits / edit_prompts: per-sample scene edits (None = unedited) and :meth:`edit_qa_prompts` -> (e).
            reference_attentions: per-layer (B, H, L, L) attention maps of a reference LLM on the same prompts for
                the Drive-KD attention term. None (what stage 2 passes) computes them here with
                :meth:`reference_attention_maps` when ``attention_distill.enabled``.
        Returns:
            (total, ``{term: value}``, the main pass's :class:`TeacherOutput`).
        """
        use_attn = self.cfg.attention_distill.enabled
        if use_attn and attn_implementation(self.llm) != "eager":
            raise RuntimeError(
                "attention_distill needs the LLM's eager attention (llm.attn_implementation: eager), but the model "
                f"runs {attn_implementation(self.llm)!r}: it was switched after the teacher was built"
            )
        main = self(
            beam,
            prompts,
            mask_bev=self.cfg.masking.ratio > 0,
            predict_future=future_bev is not None,
            output_attentions=use_attn,
            generator=generator,
        )
        terms: dict[str, torch.Tensor] = {}
        if main.lm_loss is not None:
            terms["vqa"] = main.lm_loss
        terms["plan"] = planning_l1(main.plan_trajectories, command, plan_gt, plan_mask)
        if main.recon is not None:
            terms["recon"] = reconstruction_loss(main.recon, main.recon_target, self.cfg.masking.detach_target)
        if future_bev is not None:
            targets = {k: gather_tokens(v, main.future_positions) for k, v in future_bev.items()}
            terms["future"] = future_loss(main.future, targets, future_valid)
        if planner_feature is not None:
            terms["distill"] = self.distiller(planner_feature, main.plan_feature)
            if self.multi_teacher is not None:
                extra = self.multi_teacher(planner_feature, main.hidden_states, prompts.positions["plan"])
                terms.update({f"distill_{name}": value for name, value in extra.items()})
        if edits is not None and any(e is not None for e in edits):
            if edit_prompts is None:
                raise ValueError("scene edits need edit_prompts (the prompts of their QA pairs)")
            terms["scene_edit"] = self.scene_edit_terms(beam, edits, edit_prompts, command)
        if use_attn:
            pairs = self.cfg.attention_distill.layers
            if reference_attentions is None:
                reference_attentions = self.reference_attention_maps(
                    main.inputs_embeds, prompts.attention_mask, [r for _, r in pairs]
                )
            text_mask, vision_mask = self.attention_masks(prompts)
            terms["attention_distill"] = attention_distill_loss(
                main.attentions, reference_attentions, pairs, text_mask, vision_mask
            )
        return total_loss(terms, self.cfg.weights, self.cfg.extra_term_weights()), terms, main

    def reference_attention_maps(
        self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor, layers: Sequence[int]
    ) -> list[torch.Tensor | None]:
        """The attention distillation's reference: per decoder layer (B, H, L, L) attention maps of the frozen base
        LLM (LoRA disabled) on the same spliced prompt, without gradients; None at layers not in ``layers``.

        Why the teacher's own base and not Drive-KD's larger teacher: the reference must read the same prompt
        layout (tokenizer, BEAM slots) through adapters that understand our BEAM tokens, and a second, larger LLM
        trained for that does not exist here. The pretrained base on the same ``inputs_embeds`` is available for
        free (same weights, no extra memory), and matching it keeps LoRA from drifting away from how the pretrained
        model spreads its text->vision attention. At a fresh LoRA (B = 0) student and reference agree exactly.

        Args:
            inputs_embeds: (B, L, D_llm) the main pass's spliced prompt (detached here: the reference is a target).
            attention_mask: (B, L) the prompts' padding mask.
            layers: the reference layer indices the loss reads (negative = from the end); other maps are dropped
                at once instead of living until the loss is computed.
        """
        from peft import PeftModel

        if not isinstance(self.llm, PeftModel):
            raise RuntimeError("attention distillation against the base LLM needs LoRA (llm.lora.enabled)")
        # peft's disable_adapter() sets requires_grad False on every LoRA matrix on entry and True on exit, which
        # would unfreeze LoRA during the two-stage schedule's align stage and, mid-step, would stop autograd from
        # accumulating into it. Restore each flag exactly as it was.
        flags = [(p, p.requires_grad) for p in lora_parameters(self.llm)]
        try:
            # The decoder stack without the LM head: the logits (B, L, vocab) are not needed for the maps.
            with torch.no_grad(), self.llm.disable_adapter():
                out = _language_model(self.llm).get_decoder()(
                    inputs_embeds=inputs_embeds.detach(),
                    attention_mask=attention_mask,
                    output_attentions=True,
                    use_cache=False,
                )
        finally:
            for p, flag in flags:
                p.requires_grad_(flag)
        maps = out.attentions
        n = len(maps)
        keep = {i % n for i in layers}
        return [a if i in keep else None for i, a in enumerate(maps)]

    def _check_attention_layers(self) -> None:
        """Refuse attention-distillation layer indices the LLM does not have (at build time, not mid-training)."""
        n = getattr(getattr(self.llm, "config", None), "num_hidden_layers", None)
        if not isinstance(n, int):
            return
        bad = [pair for pair in self.cfg.attention_distill.layers if not all(-n <= i < n for i in pair)]
        if bad:
            raise ValueError(f"attention_distill.layers {bad}: this LLM has {n} decoder layers (indices {-n}..{n - 1})")

    def scene_edit_terms(
        self,
        beam: BeamLike,
        edits: Sequence[SceneEdit | None],
        edit_prompts: PromptBatch,
        command: torch.Tensor,
    ) -> torch.Tensor:
        """(e) One pass on the edited scene: CE on the edit QA + L1 to the edited ego label + collision hinge.

        ``edit_prompts`` holds one prompt per sample (:meth:`edit_qa_prompts`); rows of unedited samples are not
        supervised (their labels are ignored and their ego targets masked).
        """
        unedited = torch.tensor([e is None for e in edits], device=edit_prompts.labels.device)
        labels = edit_prompts.labels.masked_fill(unedited.unsqueeze(1), IGNORE_INDEX)
        edit_prompts = dataclasses.replace(edit_prompts, labels=labels)
        agents, valid = apply_edits_to_tokens(
            beam.agents,
            edits,
            self.agent_encoder,
            getattr(beam, "agent_boxes", None),
            self.cfg.scene_edit.remove_match_radius_m,
        )
        out = self(beam, edit_prompts, agents=agents, agent_valid=valid)
        targets = edited_plan_targets(edits, self.device)
        loss = scene_edit_loss(out.plan_trajectories, command, targets, self.cfg.scene_edit.collision_margin_m)
        return loss + out.lm_loss if out.lm_loss is not None else loss

    def edit_qa_prompts(self, edits: Sequence[SceneEdit | None], seed: int = 0) -> PromptBatch:
        """One QA pair per sample for :meth:`scene_edit_terms`: a seeded choice among each edit's pairs (an empty,
        unsupervised prompt for unedited samples)."""
        rng = np.random.default_rng(seed)
        questions, answers = [], []
        for e in edits:
            q, a = e.qa[int(rng.integers(len(e.qa)))] if e is not None and e.qa else ("", "")
            questions.append(q)
            answers.append(a)
        return self.encode_prompts(questions, answers)

    def attention_masks(self, prompts: PromptBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """(text rows, vision columns) as (B, L) bool: tokens after ``<plan>`` that are real, and BEAM slots."""
        b, length = prompts.input_ids.shape
        idx = torch.arange(length, device=prompts.input_ids.device).unsqueeze(0).expand(b, -1)
        text = (idx > prompts.positions["plan"]) & prompts.attention_mask.bool()
        vision = torch.zeros(b, length, dtype=torch.bool, device=idx.device)
        for name in TOKEN_TYPES:
            vision.scatter_(1, prompts.positions[name], True)
        return text, vision

    # ------------------------------------------------------------------------------------------------ inference

    @torch.no_grad()
    def plan(self, beam: BeamLike) -> tuple[torch.Tensor, torch.Tensor]:
        """MLLM-only planning: (B, M, T, 2) trajectories and (B, F) penultimate feature (no question needed)."""
        prompts = self.encode_prompts([""] * beam.bev.shape[0])
        was_training = self.training
        self.eval()  # no LoRA / Q-former dropout at inference
        try:
            out = self(beam, prompts)
        finally:
            self.train(was_training)
        return out.plan_trajectories, out.plan_feature

    def dual_plan(
        self,
        planner_feature: torch.Tensor,
        mllm_feature: torch.Tensor,
        final_head: Callable[[torch.Tensor], torch.Tensor],
    ) -> torch.Tensor:
        """DiMA-Dual: ``final_head(max(planner_feature, project(mllm_feature)))``, e.g. with
        ``PlanningTransformer.decode`` as the head. Features (B, C_plan) and (B, F)."""
        return dual_mode_plan(planner_feature, mllm_feature, final_head, self.distiller.project)

    @torch.no_grad()
    def generate(
        self, beam: BeamLike, question: str | Sequence[str], max_new_tokens: int = 64, stopping_criteria: Any = None
    ) -> list[str]:
        """Greedy answers grounded on the BEAM tokens, one per sample (a single question is asked of each).

        ``stopping_criteria``: an optional ``transformers.StoppingCriteriaList`` checked after every token (the ROS
        MLLM node stops a generation whose request timed out or whose node is shutting down)."""
        b = beam.bev.shape[0]
        questions = [question] * b if isinstance(question, str) else list(question)
        prompts = self.encode_prompts(questions, padding_side="left")
        was_training = self.training
        self.eval()  # no LoRA / Q-former dropout at inference
        try:
            self.check_beam(beam)
            values, _ = self.scene_embeddings(beam)
            embeds = embed_prompt(self.llm.get_input_embeddings(), prompts, self.prompts.placeholder_ids)
            embeds = splice_embeddings(embeds, prompts.positions, values)
            out = self.llm.generate(
                inputs_embeds=embeds,
                attention_mask=prompts.attention_mask,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=self.prompts.pad_id,
                eos_token_id=self.prompts.end_of_turn_id,
                stopping_criteria=stopping_criteria,
            )
        finally:
            self.train(was_training)
        # With inputs_embeds, decoder-only generate returns only the new tokens.
        return [t.strip() for t in self.tokenizer.batch_decode(out, skip_special_tokens=True)]

    # ------------------------------------------------------------------------------------------------ training

    def set_stage(self, stage: Literal["align", "finetune"]) -> None:
        """DriVLM two-stage schedule: ``align`` trains adapters and heads only (LoRA frozen), ``finetune`` adds LoRA.
        The LLM base stays frozen in both."""
        for p in lora_parameters(self.llm):
            p.requires_grad_(stage == "finetune")

    def stage_for_step(self, step: int) -> Literal["align", "finetune"]:
        """The schedule's stage at optimizer step ``step`` (always ``finetune`` when the option is off)."""
        ts = self.cfg.two_stage
        return "align" if ts.enabled and step < ts.align_steps else "finetune"

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Everything but the frozen LLM base: adapters, heads, queries and LoRA (what a stage-2 checkpoint needs)."""
        return {name: t for name, t in self.state_dict().items() if not name.startswith("llm.") or "lora_" in name}


def _language_model(llm: nn.Module) -> nn.Module:
    """The transformers causal LM inside a (possibly peft-wrapped) LLM (LoRA layers are injected into it)."""
    from peft import PeftModel

    return llm.get_base_model() if isinstance(llm, PeftModel) else llm


def attn_implementation(llm: nn.Module) -> str | None:
    """The attention kernel the (possibly peft-wrapped) LLM runs: 'eager', 'sdpa', ..."""
    return getattr(_language_model(llm).config, "_attn_implementation", None)


__all__ = ["BeamLike", "DimaTeacher", "TeacherOutput", "attn_implementation"]
