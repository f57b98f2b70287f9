"""Rule-based DriveLM-style QA for any keyframe: ``write_qa_for_dataset(reader_or_samples, out_path)``.

Modules, one concept each: ``config`` (QAConfig), ``projection`` (where boxes are seen, c-tag pixels), ``describe``
(words), ``motion`` (agent/ego motion classes, ego path), ``actions`` (ego action rollouts), ``facts`` (key objects
and per-frame facts), ``perception``/``prediction``/``planning``/``behavior`` (question templates), ``generator``
(frames, scenes, files), ``scene_edits`` (stage 2's surrogate (e): a vehicle added or removed in the ground truth,
with the edited ego label and its QA).
"""

from dima_core.data.qa.config import QAConfig
from dima_core.data.qa.generator import generate_frame, generate_qa, write_qa_for_dataset
from dima_core.data.qa.projection import ObjectLocation, ProjectedBox, locate_objects, project_box

__all__ = [
    "ObjectLocation",
    "ProjectedBox",
    "QAConfig",
    "generate_frame",
    "generate_qa",
    "locate_objects",
    "project_box",
    "write_qa_for_dataset",
]
