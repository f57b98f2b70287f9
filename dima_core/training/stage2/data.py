"""The stage-2 dataset: driving samples plus future frames, QA pairs and the editable GT scene."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from dima_core.data.dataset import DrivingDataset, collate
from dima_core.data.index import SampleIndex
from dima_core.data.sample import DrivingSample
from dima_core.training.stage2.qa import QATable


class Stage2Dataset(DrivingDataset):
    """:class:`DrivingDataset` items plus what stage 2 needs.

    Extra keys: ``future_images_{k}`` / ``future_intrinsics_{k}`` / ``future_cam_to_ego_{k}`` (zeros when absent)
    and ``future_mask_{k}`` (bool) for each offset; ``qa`` (list of (question, answer)); ``edit_scene`` (an
    :class:`~dima_core.data.qa.scene_edits.EditableScene` of the GT, when scene editing is on).
    """

    def __init__(
        self, index: SampleIndex, cfg: Any, qa: QATable, future_offsets: Sequence[int] = (), with_scene: bool = True
    ) -> None:
        super().__init__(index, cfg)
        self.qa = qa
        self.future_offsets = tuple(future_offsets)
        self.with_scene = with_scene

    def future_sample(self, sample: DrivingSample, offset: int) -> DrivingSample | None:
        """Keyframe t+offset of the same scene (through ``next_token``), None past the scene end / the index."""
        current: DrivingSample | None = sample
        for _ in range(offset):
            nxt = current.next_token if current is not None else ""
            current = self.index.get(nxt) if nxt and nxt in self.index else None
        return current

    def __getitem__(self, i: int) -> dict[str, Any]:
        item = super().__getitem__(i)
        sample = self.index.get(self.tokens[i])
        for k in self.future_offsets:
            future = self.future_sample(sample, k)
            if future is not None:
                cams = self._cameras(future)
                item[f"future_images_{k}"] = torch.from_numpy(np.ascontiguousarray(cams["images"]))
                item[f"future_intrinsics_{k}"] = torch.from_numpy(cams["intrinsics"])
                item[f"future_cam_to_ego_{k}"] = torch.from_numpy(cams["cam_to_ego"])
            else:
                item[f"future_images_{k}"] = torch.zeros_like(item["images"])
                item[f"future_intrinsics_{k}"] = item["intrinsics"].clone()
                item[f"future_cam_to_ego_{k}"] = item["cam_to_ego"].clone()
            item[f"future_mask_{k}"] = torch.tensor(future is not None)
        item["qa"] = self.qa.for_sample(sample)
        if self.with_scene:
            from dima_core.data.qa.scene_edits import EditableScene

            item["edit_scene"] = EditableScene.from_sample(sample)
        return item


_OBJECT_KEYS = ("qa", "edit_scene")


def stage2_collate(items: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """:func:`collate` for the tensors; ``qa`` and ``edit_scene`` stay per-sample lists."""
    objects = {key: [item[key] for item in items] for key in _OBJECT_KEYS if key in items[0]}
    batch = collate([{k: v for k, v in item.items() if k not in _OBJECT_KEYS} for item in items])
    batch.update(objects)
    return batch


__all__ = ["Stage2Dataset", "stage2_collate"]
