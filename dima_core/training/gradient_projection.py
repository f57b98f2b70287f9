"""Gradient projection between conflicting loss terms on a shared set of parameters (Drive-KD option).

In stage 2 the shared student (scene encoder + planner) is pulled by several objectives at once: its own imitation
loss, the KL from the MLLM planning head, the multi-teacher hint terms, the attention distillation, the teacher's
surrogate tasks through the BEAM tokens. When two of those gradients point in opposing directions (negative dot
product) their plain sum cancels, and the larger one wins. PCGrad (Yu et al., "Gradient Surgery for Multi-Task
Learning", NeurIPS 2020) removes the conflict: for each term i, visiting the other terms j in a random order,

    if <g_i, g_j> < 0:   g_i <- g_i - (<g_i, g_j> / |g_j|^2) g_j        (g_j the *original* gradient of j)

and the update is the sum of the projected g_i. Drive-KD's Asymmetric Gradient Projection adds an anchor-follower
step (an anchor's gradient is never altered, followers are projected off it); :func:`project_conflicting` offers it
with ``anchor``, applied after the symmetric step so the summed update never opposes the anchor to first order:
every projected follower then has ``<g_i', g_anchor> >= 0``.

How it enters a training step without touching the generic trainer (which calls ``scaler.scale(total).backward()``):
:meth:`GradientProjector.surrogate` computes each listed term's gradient with respect to the shared parameters with
``torch.autograd.grad`` (the graph is retained), projects them, and returns a scalar ``s`` whose value is exactly 0
and whose gradient with respect to each shared parameter is ``correction = sum_i projected g_i - sum_i g_i``. Adding
``s`` to the total loss makes the one ordinary ``backward`` deliver ``sum_i g_i + correction = sum_i projected g_i``
(+ the gradient of every unlisted term) to the shared parameters, and the plain summed gradient to every other
parameter, which never sees ``s``. Mixed precision works unchanged: the GradScaler multiplies ``s`` like the rest
of the loss, and the per-term gradients are taken on scaled losses so fp16 does not underflow.

DDP (why this is correct there): ``torch.autograd.grad`` fills no ``.grad`` and fires none of DDP's gradient-ready
hooks, so the per-term passes are invisible to DDP's reducer; the single ``backward`` of ``total + s`` then marks
every parameter ready exactly once and DDP all-reduces (averages) as usual. With ``sync_ranks`` (the default) the
per-term gradients are first averaged over ranks with one explicit all-reduce, every rank projects the *same*
global gradients with the *same* random order (seeded from the step), and each rank's correction is
``projected(global) - sum(local)``; DDP's average of ``local + correction`` is then exactly the projection of the
global batch's gradients (plus the average of the unlisted terms). Without it each rank projects its own local
gradients and DDP averages the projected results (cheaper, but conflicts are judged on 1/world of the batch).
FSDP shards parameters into flat buffers, so per-parameter ``autograd.grad`` does not apply: refused there.

Cost: one extra backward pass per listed term (through the part of the graph that reaches the shared parameters)
and ``K x N`` fp32 gradient copies for ``K`` terms and ``N`` shared parameters.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn


def project_conflicting(
    grads: torch.Tensor, generator: torch.Generator | None = None, anchor: int | None = None
) -> torch.Tensor:
    """PCGrad projection of ``K`` per-term gradients (module docstring for the rule).

    Args:
        grads: (K, N) one flattened gradient per term (rows of zeros for absent terms are never projected against,
            and stay zero).
        generator: CPU RNG of the per-term visiting order (seed it identically on every rank).
        anchor: row index whose gradient is kept unchanged; the other rows are projected among themselves
            symmetrically, then off the anchor where they still conflict with it. None: plain PCGrad.
    Returns:
        (K, N) projected gradients, same dtype and device; their sum is the update. Rows that conflict with no other
        row are returned unchanged, so without any conflict the sum equals ``grads.sum(0)``.
    """
    if grads.dim() != 2:
        raise ValueError(f"grads must be (K, N), got shape {tuple(grads.shape)}")
    k = grads.shape[0]
    if anchor is not None and not 0 <= anchor < k:
        raise ValueError(f"anchor {anchor} is not a row of the {k} gradients")
    norms2 = (grads * grads).sum(dim=1)  # (K,) |g_j|^2 of the *original* gradients
    followers = [i for i in range(k) if i != anchor]
    out = grads.clone()
    for i in followers:
        g = grads[i].clone()
        others = [followers[j] for j in torch.randperm(len(followers), generator=generator).tolist()]
        for j in others:
            if j == i:
                continue
            g = _project_off(g, grads[j], norms2[j])
        if anchor is not None:
            g = _project_off(g, grads[anchor], norms2[anchor])
        out[i] = g
    return out


def _project_off(g: torch.Tensor, other: torch.Tensor, other_norm2: torch.Tensor) -> torch.Tensor:
    """``g`` minus its component along ``other`` when ``<g, other> < 0``, else ``g``.

    Branch-free (no host sync on GPUs): the coefficient is ``min(<g, other>, 0) / |other|^2``, which is 0 both
    without conflict and for a zero ``other`` (then the dot product is 0 too).
    """
    dot = torch.dot(g, other)
    coef = dot.clamp(max=0.0) / other_norm2.clamp_min(torch.finfo(g.dtype).tiny)
    return g - coef * other


def combine(grads: torch.Tensor, generator: torch.Generator | None = None, anchor: int | None = None) -> torch.Tensor:
    """(K, N) -> (N,): the sum of :func:`project_conflicting`'s rows, i.e. the PCGrad update."""
    return project_conflicting(grads, generator, anchor).sum(dim=0)


def cosine_matrix(grads: torch.Tensor) -> torch.Tensor:
    """(K, N) -> (K, K) pairwise cosine similarities (0 where a row is zero)."""
    norms = grads.norm(dim=1).clamp_min(torch.finfo(grads.dtype).tiny)
    return (grads @ grads.T) / (norms[:, None] * norms[None, :])


@dataclass
class ProjectionStats:
    """What one projection saw (logged per step).

    present: terms with a non-zero gradient on the shared parameters. conflicts: pairs of them with a negative
    cosine (before projection). min_cosine: the smallest pairwise cosine (1.0 with fewer than two terms).
    skipped: the gradients were not finite (fp16 overflow): no projection this step; the GradScaler sees the same
    overflow in the ordinary backward and skips the optimiser step.
    """

    present: int
    conflicts: int
    min_cosine: float
    skipped: bool = False


def module_parameters(model: nn.Module, modules: Sequence[str]) -> list[tuple[str, nn.Parameter]]:
    """Trainable ``(name, parameter)`` pairs of ``model`` under the dotted submodule names ``modules``.

    Raises:
        ValueError: a name matches no trainable parameter (typo, or a frozen module), listing the top-level modules.
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    chosen: dict[str, nn.Parameter] = {}
    for prefix in modules:
        hits = [(n, p) for n, p in named if n == prefix or n.startswith(prefix + ".")]
        if not hits:
            tops = sorted({n.split(".")[0] for n, _ in named})
            raise ValueError(
                f"gradient_projection.modules: '{prefix}' holds no trainable parameter of the model "
                f"(trainable top-level modules: {tops})"
            )
        chosen.update(hits)
    return list(chosen.items())


def _is_sharded(params: Sequence[nn.Parameter]) -> bool:
    """Whether any parameter is an FSDP flat parameter or a DTensor shard (FSDP1 / FSDP2)."""
    for p in params:
        if type(p).__name__ in ("FlatParameter", "DTensor") or getattr(p, "_is_flat_param", False):
            return True
    return False


def is_sharded_model(model: nn.Module) -> bool:
    """Whether ``model`` (as the training step receives it) is FSDP-wrapped anywhere or holds sharded parameters.

    FSDP with ``use_orig_params`` exposes plain-looking parameters that are views of a flat buffer: the gradient
    reaches the flat buffer, not them, so ``autograd.grad`` on them would silently return nothing.
    """
    try:
        from torch.distributed.fsdp import FSDPModule, FullyShardedDataParallel
    except ImportError:  # a torch build without distributed support cannot shard either
        return False
    # FSDP2 (fully_shard, our `distributed.strategy: fsdp`) marks every wrapped module, the root included, whatever
    # its sharding; FSDP1 wraps modules in FullyShardedDataParallel.
    if any(isinstance(m, (FSDPModule, FullyShardedDataParallel)) for m in model.modules()):
        return True
    return _is_sharded(list(model.parameters()))


class GradientProjector:
    """Projected gradients of named loss terms on one parameter group, as a zero-valued surrogate loss.

    Args:
        terms: the term names, in a fixed order (the rows of the projection; every rank must use the same list).
        anchor: one of ``terms`` kept unaltered (Drive-KD's anchor-follower step), or None.
        sync_ranks: under an initialised process group with more than one rank, average the per-term gradients
            over ranks before projecting (module docstring).
        process_group: the group to average over (None = the default group).
    """

    def __init__(
        self,
        terms: Sequence[str],
        anchor: str | None = None,
        sync_ranks: bool = True,
        process_group: object | None = None,
    ) -> None:
        self.terms = list(terms)
        if len(set(self.terms)) != len(self.terms) or len(self.terms) < 2:
            raise ValueError(f"gradient projection needs at least two distinct terms, got {self.terms}")
        if anchor is not None and anchor not in self.terms:
            raise ValueError(f"anchor {anchor!r} is not one of the terms {self.terms}")
        self.anchor = anchor
        self.sync_ranks = sync_ranks
        self.process_group = process_group

    def _world_size(self) -> int:
        import torch.distributed as dist

        if not (self.sync_ranks and dist.is_available() and dist.is_initialized()):
            return 1
        return dist.get_world_size(self.process_group)

    def term_gradients(
        self, losses: Mapping[str, torch.Tensor], params: Sequence[nn.Parameter], grad_scale: float = 1.0
    ) -> torch.Tensor:
        """(K, N) fp32: row k is d(losses[terms[k]]) / d(params), flattened; zeros for an absent term or one that
        does not reach the parameters. The graph is kept for the ordinary backward that follows.

        ``grad_scale``: the losses are multiplied by it before differentiation and the gradients divided by it
        afterwards (the GradScaler's scale: keeps fp16 activation gradients from underflowing).
        """
        n = sum(p.numel() for p in params)
        device = params[0].device
        rows = torch.zeros(len(self.terms), n, dtype=torch.float32, device=device)
        for k, name in enumerate(self.terms):
            loss = losses.get(name)
            if loss is None or not loss.requires_grad:
                continue
            grads = torch.autograd.grad(loss * grad_scale, list(params), retain_graph=True, allow_unused=True)
            offset = 0
            for p, g in zip(params, grads, strict=True):
                if g is not None:
                    rows[k, offset : offset + p.numel()] = g.reshape(-1).float()
                offset += p.numel()
        if grad_scale != 1.0:
            rows /= grad_scale
        return rows

    def surrogate(
        self, losses: Mapping[str, torch.Tensor], params: Sequence[nn.Parameter], seed: int, grad_scale: float = 1.0
    ) -> tuple[torch.Tensor, ProjectionStats]:
        """The zero-valued scalar to add to the total loss, and what the projection saw.

        Args:
            losses: ``{term: () weighted contribution to the total loss}``; terms not in ``self.terms`` are ignored
                (they keep their plain gradient), listed terms may be missing (then they contribute nothing).
            params: the shared parameters (:func:`module_parameters`), identical on every rank.
            seed: seeds the visiting order; derive it from the step so every rank draws the same order.
            grad_scale: the GradScaler's current scale (1.0 without one).
        Returns:
            ``(s, stats)``: ``s`` has value 0 and gradient ``projected sum - plain sum`` on ``params``.
        """
        if not params:
            raise ValueError("gradient projection: no shared parameters")
        if _is_sharded(params):
            raise RuntimeError(
                "gradient projection needs unsharded parameters (single process or DDP); the shared "
                "student is FSDP-sharded here"
            )
        local = self.term_gradients(losses, params, grad_scale)
        local_sum = local.sum(dim=0)
        grads = local
        world = self._world_size()
        if world > 1:
            import torch.distributed as dist

            grads = local.clone()
            dist.all_reduce(grads, group=self.process_group)  # every rank calls this at the same point of the step
            grads /= world
        present = int((grads.abs().sum(dim=1) > 0).sum())
        if not bool(torch.isfinite(grads).all()):
            zero = torch.zeros((), dtype=torch.float32, device=params[0].device)
            return zero, ProjectionStats(present=present, conflicts=0, min_cosine=float("nan"), skipped=True)
        cos = cosine_matrix(grads)
        nonzero = grads.abs().sum(dim=1) > 0
        pair = nonzero[:, None] & nonzero[None, :] & ~torch.eye(len(self.terms), dtype=torch.bool, device=grads.device)
        conflicts = int(((cos < 0) & pair).sum()) // 2
        min_cos = float(cos[pair].min()) if bool(pair.any()) else 1.0
        generator = torch.Generator().manual_seed(int(seed) % (2**63))
        anchor = self.terms.index(self.anchor) if self.anchor is not None else None
        correction = combine(grads, generator, anchor) - local_sum  # (N,)
        s = torch.zeros((), dtype=torch.float32, device=params[0].device)
        offset = 0
        for p in params:
            c = correction[offset : offset + p.numel()].view_as(p).to(p.dtype)
            s = s + (p * c).sum().float()
            offset += p.numel()
        # Value exactly 0 (the logged total is unchanged), gradient `correction` on each shared parameter.
        return s - s.detach(), ProjectionStats(present=present, conflicts=conflicts, min_cosine=min_cos)


__all__ = [
    "GradientProjector",
    "ProjectionStats",
    "combine",
    "cosine_matrix",
    "is_sharded_model",
    "module_parameters",
    "project_conflicting",
]
