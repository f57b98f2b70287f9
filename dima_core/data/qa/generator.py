"""Rule-based DriveLM-format QA for any :class:`DrivingSample` (real nuScenes or synthetic).

DiMA trains its MLLM teacher on DriveLM plus rule-based QA for the frames DriveLM does not cover; this module is
that rule-based part. Every keyframe gets DriveLM-style questions in the four categories, answered from the
annotations (boxes, velocities, futures, ego future, command, vector map), with ``<c,CAM,x,y>`` tags at the pixel
where each key object is rendered. Deterministic: no randomness anywhere.

    from dima_core.data.qa import write_qa_for_dataset
    write_qa_for_dataset(reader, "drivelm_synth.json")           # a NuScenesReader: every keyframe
    write_qa_for_dataset(reader, "val_qa.json", split="val")     # one split
    write_qa_for_dataset([sample_a, sample_b], "qa.json")        # DrivingSample objects
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from dima_core.data.drivelm import DriveLMDataset, DriveLMFrame, DriveLMScene, write_drivelm
from dima_core.data.qa.behavior import behavior_qa
from dima_core.data.qa.config import QAConfig
from dima_core.data.qa.facts import FrameFacts, analyse
from dima_core.data.qa.perception import perception_qa
from dima_core.data.qa.planning import planning_qa
from dima_core.data.qa.prediction import prediction_qa
from dima_core.data.sample import DrivingSample

logger = logging.getLogger(__name__)

_BUILDERS = {
    "perception": perception_qa,
    "prediction": prediction_qa,
    "planning": planning_qa,
    "behavior": behavior_qa,
}


@runtime_checkable
class SampleSource(Protocol):
    """What :func:`write_qa_for_dataset` needs from a reader (``NuScenesReader`` satisfies it)."""

    def sample_tokens(self, split: str | None = None) -> list[str]: ...

    def build_sample(self, token: str) -> DrivingSample: ...


def _image_path(path: str, base_dir: Path | None) -> str:
    """Relative to the QA file's folder when it lies below it (DriveLM stores paths relative to the JSON)."""
    if base_dir is None:
        return path
    try:
        return os.path.relpath(path, base_dir)
    except ValueError:  # different drive (Windows): keep absolute
        return path


def generate_frame(
    sample: DrivingSample, cfg: QAConfig | None = None, base_dir: str | os.PathLike | None = None
) -> tuple[DriveLMFrame, FrameFacts]:
    """QA of one keyframe. ``base_dir``: folder image paths are written relative to (None keeps them absolute)."""
    cfg = cfg or QAConfig()
    facts = analyse(sample, cfg)
    frame = DriveLMFrame(frame_token=sample.token)
    frame.key_objects = [obj.key_object() for obj in facts.key_objects]
    for category, build in _BUILDERS.items():
        frame.qa[category] = build(facts) if category in cfg.categories else []
    base = Path(base_dir).resolve() if base_dir is not None else None
    frame.image_paths = {cam.name: _image_path(cam.image_path, base) for cam in sample.cameras}
    return frame, facts


def _yaw(ego_to_global: np.ndarray) -> float:
    return math.atan2(float(ego_to_global[1, 0]), float(ego_to_global[0, 0]))


def describe_scene(samples: list[DrivingSample], facts: list[FrameFacts]) -> str:
    """One sentence about the ego's drive through the scene (DriveLM's ``scene_description``)."""
    if not samples:
        return "The ego vehicle drives along the road."
    turn = math.degrees(
        (_yaw(samples[-1].ego_to_global) - _yaw(samples[0].ego_to_global) + math.pi) % (2 * math.pi) - math.pi
    )
    if abs(turn) >= 150.0:
        route = "turns around"
    elif abs(turn) >= 45.0:
        route = f"turns {'left' if turn > 0 else 'right'}"
    else:
        route = "proceeds along the current road"
    stopped = [f.behaviour.mean_speed < f.cfg.speed_bins_mps[0] for f in facts]
    if all(stopped):
        text = "The ego vehicle stays stationary"
    else:
        text = f"The ego vehicle {route}"
        if stopped[-1] and not stopped[0]:
            text += " and comes to a stop"
        elif stopped[0]:
            text += " after starting from a stop"
        elif any(stopped):
            text += " and resumes driving after a stop"
    tags = sorted({t for s in samples for t in s.tags})
    if tags:
        text += f" (scenario: {', '.join(t.replace('_', ' ') for t in tags)})"
    return text + "."


def _iter_samples(source: SampleSource | Iterable[DrivingSample], split: str | None) -> Iterator[DrivingSample]:
    if isinstance(source, SampleSource):
        for token in source.sample_tokens(split):
            yield source.build_sample(token)
    else:
        for sample in source:
            if split is None or sample.split == split:
                yield sample


def generate_qa(
    source: SampleSource | Iterable[DrivingSample],
    cfg: QAConfig | None = None,
    split: str | None = None,
    base_dir: str | os.PathLike | None = None,
) -> DriveLMDataset:
    """DriveLM dataset covering every keyframe of ``source`` (a reader, or DrivingSample objects), grouped by scene
    in the order the keyframes come."""
    cfg = cfg or QAConfig()
    dataset = DriveLMDataset()
    per_scene: dict[str, tuple[list[DrivingSample], list[FrameFacts]]] = {}
    for sample in _iter_samples(source, split):
        frame, facts = generate_frame(sample, cfg, base_dir)
        scene = dataset.scenes.setdefault(sample.scene_token, DriveLMScene(sample.scene_token, None))
        scene.key_frames[sample.token] = frame
        # Keep only what the scene description needs, not the images' worth of per-frame facts.
        samples, facts_list = per_scene.setdefault(sample.scene_token, ([], []))
        samples.append(sample)
        facts_list.append(facts)
    for token, scene in dataset.scenes.items():
        scene.description = describe_scene(*per_scene[token])
    return dataset


def write_qa_for_dataset(
    reader_or_samples: SampleSource | Iterable[DrivingSample],
    out_path: str | os.PathLike,
    cfg: QAConfig | None = None,
    split: str | None = None,
) -> DriveLMDataset:
    """Write DriveLM-nuScenes-format QA (v1.1 train layout) for every keyframe to ``out_path`` and return it.

    Args:
        reader_or_samples: a ``NuScenesReader`` (anything with ``sample_tokens(split)`` and ``build_sample(token)``)
            or an iterable of ``DrivingSample``.
        out_path: JSON file to write; image paths inside are relative to its folder, as in DriveLM.
        cfg: generator options (defaults: ``QAConfig()``).
        split: only keyframes of this split ("train", "val", ...); None for all.
    """
    out_path = Path(out_path)
    dataset = generate_qa(reader_or_samples, cfg, split, base_dir=out_path.resolve().parent)
    write_drivelm(dataset, out_path)
    logger.info("wrote %d QA pairs for %d keyframes to %s", dataset.num_qa, dataset.num_frames, out_path)
    return dataset


__all__ = ["SampleSource", "describe_scene", "generate_frame", "generate_qa", "write_qa_for_dataset"]
