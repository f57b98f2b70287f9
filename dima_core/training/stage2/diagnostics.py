"""Training diagnostics of stage 2 (``joint.diagnostics``): why the teacher helps the planner or does not.

On a recorded step (the ``every``-th, ``2 every``-th, ... training step) :class:`Stage2Step` measures, before the
trainer's backward:

- ``diag/term/<name>`` and ``diag/weighted/<name>``: each loss term's raw value and its contribution to ``total``
  (weight x phase scale x value; ``planner`` is ``planner_loss_weight x planner_total``);
- ``diag/feature_l2``, ``diag/feature_cosine``, ``diag/feature_distill``: the planner's penultimate ego feature
  against the teacher's planning feature (projected to the planner's width, as the distillation sees it): mean
  Euclidean distance, mean cosine similarity, and the configured distillation distance, whether or not the
  distillation trains in this phase;
- with ``grad_cosine``, on the parameters of ``modules`` (the shared scene encoder by default), the gradients of
  three loss groups: ``planner`` (its weighted total), ``distill`` (the weighted distillation terms) and
  ``teacher`` (every other weighted teacher term, which reaches the encoder through the BEAM tokens):
  ``diag/grad_norm/<group>`` and ``diag/grad_cosine/<a>__<b>`` for each pair present. A group with no gradient
  path this step (the distillation in the warm-up; everything while the encoder is frozen) is left out.

:class:`Stage2Trainer` adds the phase, the distillation scale and both learning rates, averages the numbers over the
ranks and appends one JSON line ``{"step", "epoch", "diag/phase", ...}`` to ``metrics.jsonl`` (``step`` counts the
steps done, as the loss lines do). The gradients are taken with ``torch.autograd.grad`` on the retained graph: they
do not touch ``.grad``, the update, or any RNG, so a recorded run trains exactly as an unrecorded one and resume
stays exact.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

GRAD_GROUPS: tuple[str, ...] = ("planner", "distill", "teacher")


class FeatureTap:
    """Captures the teacher's planning-head feature of the step's first (main) pass with a forward hook.

    The teacher runs its planning head on the main pass first and, with scene edits, once more on the edited
    scene; the first output is the one the distillation reads. Use as a context manager around the forward.
    """

    def __init__(self, plan_head: nn.Module) -> None:
        self.plan_head = plan_head
        self.feature: torch.Tensor | None = None
        self._handle: Any = None

    def _hook(self, module: nn.Module, inputs: Any, output: Any) -> None:
        if self.feature is None:
            self.feature = output[1].detach()  # PlanningHead returns (trajectories, penultimate feature)

    def __enter__(self) -> FeatureTap:
        self.feature = None
        self._handle = self.plan_head.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._handle.remove()
        self._handle = None


@torch.no_grad()
def feature_distances(planner_feature: torch.Tensor, teacher_feature: torch.Tensor, distill: Any) -> dict[str, float]:
    """``{feature_l2, feature_cosine, feature_distill}`` between (B, C) features (module docstring).

    Args:
        planner_feature: (B, C_plan) the planner's penultimate ego feature.
        teacher_feature: (B, C_plan) the teacher's planning feature in the planner's width.
        distill: the teacher's :class:`~dima_core.models.mllm.config.DistillConfig` (kind, temperature, T^2).
    """
    from dima_core.models.mllm.distill import feature_distance

    s, t = planner_feature.detach().float(), teacher_feature.detach().float()
    values = torch.stack(
        [
            (s - t).norm(dim=-1).mean(),
            F.cosine_similarity(s, t, dim=-1, eps=1e-8).mean(),
            feature_distance(s, t, distill.kind, distill.temperature, distill.scale_by_t2),
        ]
    )
    l2, cosine, dist = values.cpu().tolist()
    return {"feature_l2": l2, "feature_cosine": cosine, "feature_distill": dist}


def gradient_statistics(groups: Mapping[str, torch.Tensor | None], params: Sequence[nn.Parameter]) -> dict[str, float]:
    """Norms and pairwise cosines of the groups' gradients on ``params`` (module docstring for the names).

    Args:
        groups: ``{group: () loss}``; None or a loss without a gradient path is skipped.
        params: the parameters (requires_grad) the gradients are taken on.
    Returns:
        ``{"grad_norm/<g>": ..., "grad_cosine/<a>__<b>": ...}``; a cosine involving a zero gradient is 0.
    """
    grads: dict[str, list[torch.Tensor]] = {}
    for name, loss in groups.items():
        if loss is None or not loss.requires_grad or not params:
            continue
        # retain_graph: the trainer's backward of the total runs on the same graph afterwards.
        got = torch.autograd.grad(loss, list(params), retain_graph=True, allow_unused=True)
        if all(g is None for g in got):
            continue
        grads[name] = [
            g.float() if g is not None else torch.zeros_like(p, dtype=torch.float32)
            for g, p in zip(got, params, strict=True)
        ]
    out: dict[str, float] = {}
    norms = {}
    for name, g in grads.items():
        norms[name] = math.sqrt(float(sum(x.square().sum() for x in g)))
        out[f"grad_norm/{name}"] = norms[name]
    names = [n for n in GRAD_GROUPS if n in grads]
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            dot = float(sum((x * y).sum() for x, y in zip(grads[a], grads[b], strict=True)))
            denom = norms[a] * norms[b]
            out[f"grad_cosine/{a}__{b}"] = dot / denom if denom > 0 else 0.0
    return out


__all__ = ["FeatureTap", "GRAD_GROUPS", "feature_distances", "gradient_statistics"]
