"""A DistributedSampler that can start an epoch part-way through, so a resumed run sees the same batches.

``torch.utils.data.DistributedSampler`` already makes each epoch's order a pure function of ``(seed, epoch)`` and
gives every rank a disjoint, equally long shard. What it lacks is a position: after resuming at step k of an epoch
we must skip the samples this rank already consumed rather than replay the epoch from its start. Used for a single
process too (``num_replicas=1, rank=0`` needs no process group), so there is one data-order code path.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler


class ResumableDistributedSampler(DistributedSampler):
    """``DistributedSampler`` plus :meth:`set_epoch` ``(epoch, start_index)``: skip this rank's first samples."""

    def __init__(
        self,
        dataset: Sized,
        num_replicas: int,
        rank: int,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=shuffle, seed=seed, drop_last=drop_last)  # type: ignore[arg-type]
        self.start_index = 0

    def set_epoch(self, epoch: int, start_index: int = 0) -> None:
        """Select the epoch's order and skip the first ``start_index`` samples of this rank's shard."""
        if start_index < 0 or start_index > self.num_samples:
            raise ValueError(f"start_index {start_index} outside this rank's epoch of {self.num_samples} samples")
        super().set_epoch(epoch)
        self.start_index = start_index

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start_index :])

    def __len__(self) -> int:
        return self.num_samples - self.start_index


__all__ = ["ResumableDistributedSampler"]
