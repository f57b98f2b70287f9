"""Gradient projection (Drive-KD option, PCGrad): the projection rule on constructed gradients, the anchor variant,
and the zero-valued surrogate that hands the projected gradient to the shared parameters and the plain sum to the
others through one ordinary backward, in one process and under two-process gloo DDP."""

from __future__ import annotations

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from dima_core.training.gradient_projection import (
    GradientProjector,
    combine,
    cosine_matrix,
    module_parameters,
    project_conflicting,
)
from gradproj_helpers import TwoHeads, ddp_worker
from training_fixtures import free_port


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_conflicting_pair_becomes_orthogonal_to_the_other_original() -> None:
    g = torch.tensor([[1.0, 0.0], [-1.0, 1.0]])  # <g0, g1> = -1: conflict
    out = project_conflicting(g, _gen())
    # PCGrad: g0 - (<g0,g1>/|g1|^2) g1 = [1,0] + 0.5 [-1,1] = [0.5, 0.5]; g1 + 1.0 [1,0] = [0, 1]
    assert torch.allclose(out[0], torch.tensor([0.5, 0.5]))
    assert torch.allclose(out[1], torch.tensor([0.0, 1.0]))
    assert torch.dot(out[0], g[1]).abs() < 1e-6 and torch.dot(out[1], g[0]).abs() < 1e-6
    assert torch.allclose(combine(g, _gen()), torch.tensor([0.5, 1.5]))
    # The projected pair no longer conflicts with each other.
    assert torch.dot(out[0], out[1]) >= 0


def test_non_conflicting_gradients_are_unchanged_and_sum_plainly() -> None:
    g = torch.randn(4, 50, generator=_gen(1)).abs()  # all-positive rows: every dot product > 0
    assert (cosine_matrix(g) > 0).all()
    out = project_conflicting(g, _gen())
    assert torch.equal(out, g)
    assert torch.allclose(combine(g, _gen()), g.sum(0))
    # A zero row (a term absent this step) is neither projected against nor changed.
    z = torch.cat([g[:2], torch.zeros(1, 50)])
    assert torch.equal(project_conflicting(z, _gen()), z)


def test_random_conflicts_are_removed_for_two_terms() -> None:
    for trial in range(20):
        g = torch.randn(2, 30, generator=_gen(trial))
        out = project_conflicting(g, _gen(trial))
        for i, j in ((0, 1), (1, 0)):
            assert torch.dot(out[i], g[j]) >= -1e-5  # projected off the other's original gradient
            if torch.dot(g[i], g[j]) >= 0:
                assert torch.equal(out[i], g[i])


def test_three_terms_only_the_conflicting_pair_moves() -> None:
    g = torch.tensor([[1.0, 0.0, 0.0], [-1.0, 1.0, 0.0], [0.0, 0.0, 2.0]])  # g2 orthogonal to both
    for seed in range(5):  # whatever the visiting order
        out = project_conflicting(g, _gen(seed))
        assert torch.allclose(out, torch.tensor([[0.5, 0.5, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))


def test_order_is_seeded_and_anchor_is_never_altered() -> None:
    g = torch.randn(4, 40, generator=_gen(7))
    a = project_conflicting(g, _gen(3))
    assert torch.equal(a, project_conflicting(g, _gen(3)))
    anchored = project_conflicting(g, _gen(3), anchor=0)
    assert torch.equal(anchored[0], g[0])
    for i in (1, 2, 3):
        assert float(torch.dot(anchored[i], g[0])) >= -1e-5
    assert float(torch.dot(anchored.sum(0), g[0])) >= float(g[0].dot(g[0])) - 1e-4
    with pytest.raises(ValueError, match="anchor 4"):
        project_conflicting(g, anchor=4)
    with pytest.raises(ValueError, match="at least two"):
        GradientProjector(["only"])


def _grads(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters()}


def _conflicting_model() -> tuple[TwoHeads, torch.Tensor]:
    """Seeds until the two task gradients conflict on the trunk (so the projection has something to do)."""
    for seed in range(100):
        torch.manual_seed(seed)
        model = TwoHeads()
        x = torch.randn(8, 3)
        losses = model(x)
        trunk = list(model.trunk.parameters())
        ga = torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses["a"], trunk, retain_graph=True)])
        gb = torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses["b"], trunk)])
        if torch.dot(ga, gb) < 0:
            return model, x
    raise AssertionError("no conflicting seed found")


def test_surrogate_gives_projected_shared_gradient_and_plain_others() -> None:
    model, x = _conflicting_model()
    shared = [p for _, p in module_parameters(model, ["trunk"])]
    projector = GradientProjector(["a", "b"])

    losses = model(x)
    total = losses["a"] + losses["b"] + losses["rest"]
    surrogate, stats = projector.surrogate(losses, shared, seed=5)
    assert surrogate.item() == 0.0 and stats.conflicts == 1 and stats.present == 2 and stats.min_cosine < 0
    (total + surrogate).backward()
    got = _grads(model)

    # Reference: per-task trunk gradients, PCGrad by hand, plus the unlisted term's gradient.
    model.zero_grad(set_to_none=True)
    losses = model(x)
    per_task = projector.term_gradients(losses, shared)
    rest = torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses["rest"], shared, retain_graph=True)])
    expected_trunk = combine(per_task, torch.Generator().manual_seed(5)) + rest
    (losses["a"] + losses["b"] + losses["rest"]).backward()
    plain = _grads(model)
    got_trunk = torch.cat([got["trunk.weight"].reshape(-1), got["trunk.bias"].reshape(-1)])
    assert torch.allclose(got_trunk, expected_trunk, atol=1e-6)
    assert not torch.allclose(got["trunk.weight"], plain["trunk.weight"]), "the conflict changed the trunk gradient"
    for name in ("head_a.weight", "head_a.bias", "head_b.weight", "head_b.bias"):
        assert torch.equal(got[name], plain[name]), f"{name} must get the plain gradient"

    # The grad scaler's scale cancels out (the per-term gradients are taken on scaled losses and unscaled).
    model.zero_grad(set_to_none=True)
    losses = model(x)
    assert torch.allclose(projector.term_gradients(losses, shared, grad_scale=1024.0), per_task, atol=1e-7)


def test_module_parameters_names_the_problem() -> None:
    model = TwoHeads()
    assert [n for n, _ in module_parameters(model, ["trunk", "head_a.weight"])] == [
        "trunk.weight",
        "trunk.bias",
        "head_a.weight",
    ]
    with pytest.raises(ValueError, match="'trunkk' holds no trainable parameter.*head_a"):
        module_parameters(model, ["trunkk"])
    model.trunk.requires_grad_(False)
    with pytest.raises(ValueError, match="'trunk'"):
        module_parameters(model, ["trunk"])


@pytest.mark.timeout(120)
def test_ddp_sync_projects_the_global_gradients(tmp_path) -> None:
    """Two gloo ranks: identical gradients on both, equal to projecting the rank-averaged per-term gradients."""
    mp.spawn(ddp_worker, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    grads = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-7), name

    torch.manual_seed(0)
    model = TwoHeads()
    shared = list(model.trunk.parameters())
    projector = GradientProjector(["a", "b"])
    per_rank, rest, plain = [], [], []
    for rank in range(2):
        model.zero_grad(set_to_none=True)
        losses = model(torch.randn(8, 3, generator=torch.Generator().manual_seed(100 + rank)))
        per_rank.append(projector.term_gradients(losses, shared))
        rest.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(losses["rest"], shared, retain_graph=True)]))
        (losses["a"] + losses["b"] + losses["rest"]).backward()
        plain.append({n: p.grad.clone() for n, p in model.named_parameters()})
    expected = combine((per_rank[0] + per_rank[1]) / 2, torch.Generator().manual_seed(9)) + (rest[0] + rest[1]) / 2
    got = torch.cat([grads[0]["trunk.weight"].reshape(-1), grads[0]["trunk.bias"].reshape(-1)])
    assert torch.allclose(got, expected, atol=1e-6)
    for name in ("head_a.weight", "head_b.bias"):  # private parameters: DDP's plain average
        assert torch.allclose(grads[0][name], (plain[0][name] + plain[1][name]) / 2, atol=1e-7)
