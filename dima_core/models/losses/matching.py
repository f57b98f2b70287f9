"""Hungarian matching with ``scipy.optimize.linear_sum_assignment``."""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment


def hungarian_match(cost: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Minimum-cost one-to-one assignment of a ``(Nq, Ng)`` cost matrix.

    Returns ``(query_idx, gt_idx)`` int64 tensors of length ``min(Nq, Ng)`` on ``cost.device``, sorted by ``gt_idx``.
    Non-finite costs are replaced by a large finite value.
    """
    nq, ng = cost.shape
    device = cost.device
    if nq == 0 or ng == 0:
        empty = torch.zeros(0, dtype=torch.long, device=device)
        return empty, empty
    c = torch.nan_to_num(cost.detach().float(), nan=1e6, posinf=1e6, neginf=-1e6).cpu().numpy()
    rows, cols = linear_sum_assignment(c)
    order = np.argsort(cols)
    return (
        torch.as_tensor(rows[order], dtype=torch.long, device=device),
        torch.as_tensor(cols[order], dtype=torch.long, device=device),
    )
