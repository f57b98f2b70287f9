"""Plain helpers of test_gradient_projection.py, kept apart so the DDP test's spawned processes import only torch
and the projection module (importing the test module would pull pytest and the fixtures into each child)."""

from __future__ import annotations

import os

import torch
from torch import nn

from dima_core.training.gradient_projection import GradientProjector


class TwoHeads(nn.Module):
    """A shared trunk (the 'student') and one private head per task."""

    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Linear(3, 4)
        self.head_a = nn.Linear(4, 1)
        self.head_b = nn.Linear(4, 1)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = torch.tanh(self.trunk(x))
        a = self.head_a(h).pow(2).mean()
        b = (1.0 - self.head_b(h)).pow(2).mean()
        rest = 0.1 * h.pow(2).mean()  # an unlisted term: plain gradient everywhere
        return {"a": a, "b": b, "rest": rest}


def ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    """One rank: TwoHeads under DDP, its own batch, the synced projection surrogate; saves its gradients."""
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        torch.manual_seed(0)  # identical replicas
        model = TwoHeads()
        ddp = DistributedDataParallel(model, find_unused_parameters=True)
        x = torch.randn(8, 3, generator=torch.Generator().manual_seed(100 + rank))  # each rank its own batch
        shared = list(model.trunk.parameters())
        losses = ddp(x)
        surrogate, _ = GradientProjector(["a", "b"], sync_ranks=True).surrogate(losses, shared, seed=9)
        (losses["a"] + losses["b"] + losses["rest"] + surrogate).backward()
        torch.save({n: p.grad for n, p in model.named_parameters()}, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()
