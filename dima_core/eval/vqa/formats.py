"""Reading ground truth and predictions for ``dima eval-vqa``, with errors that name the file and the QA id.

Ground truth (``load_ground_truth``):

* nested DriveLM files (v1.0/v1.1 train layout, or the challenge ``test_eval.json`` with a ``tag`` list per QA),
  read with :func:`dima_core.data.drivelm.drivelm_from_json`; QA ids are ``<scene>_<frame>_<i>`` with ``i`` the
  index over perception + prediction + planning + behavior, as DriveLM numbers them;
* flat files: a JSON list of ``{"id", "question", "answer" | "gt_answer", "tag"}`` (``gt_answer`` wins when both are
  present, so DriveLM's ``output.json`` with tags added works as ground truth). Flat files must carry tags.

Tags (``tags=``): ``"file"`` uses the file's ``tag`` lists (QAs without one are not scored); ``"rule"`` assigns them
with DriveLM's extraction rule (:mod:`dima_core.eval.vqa.tagging`, nested files only, needs ``key_object_infos``);
``"auto"`` uses the file's tags when any QA has one and the rule otherwise (e.g. our rule-based
``drivelm_synth.json``).

Predictions (``load_predictions``): DriveLM's challenge output (a list of ``{"id", "question", "answer"}``, extra
keys such as ``gt_answer`` ignored), a submission file wrapping that list in ``"results"``, or a nested train-layout
file whose ``A`` fields hold the predicted answers.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from dima_core.data.drivelm import DriveLMFormatError, drivelm_from_json, make_qa_id, split_qa_id, to_flat
from dima_core.eval.vqa.tagging import drivelm_rule_tags

TagPolicy = Literal["auto", "file", "rule"]

_IMAGE_PREFIX = "<image>\n"


class VQAFormatError(ValueError):
    """A malformed or mismatched VQA file; the message starts with the file and names the QA id when known."""

    def __init__(self, source: str, problem: str, qa_id: str | None = None, where: str = ""):
        self.source = source
        self.qa_id = qa_id
        self.problem = problem
        location = where
        if qa_id is not None:
            location = f"{where} (id '{qa_id}')" if where else f"id '{qa_id}'"
        super().__init__(f"{source}: {location}: {problem}" if location else f"{source}: {problem}")


@dataclass(frozen=True)
class GTItem:
    """One ground-truth QA to score; ``tags`` is non-empty."""

    qa_id: str
    question: str
    answer: str
    tags: tuple[int, ...]
    category: str | None = None


@dataclass
class GroundTruth:
    """Tagged ground-truth QAs grouped by keyframe, each frame in scoring order (DriveLM's challenge-file order)."""

    source: str
    frames: list[list[GTItem]] = field(default_factory=list)
    num_qa: int = 0  # every QA in the file, tagged or not
    tag_source: str = "file"  # "file" or "rule"

    def items(self) -> list[GTItem]:
        return [item for frame in self.frames for item in frame]


@dataclass(frozen=True)
class Prediction:
    qa_id: str
    answer: str
    question: str | None = None  # as written in the file, without DriveLM's "<image>\n" prefix


def _read_json(path: str | os.PathLike[str], what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise VQAFormatError(str(path), f"not valid JSON: {exc}") from None


def _strip_prefix(text: str) -> str:
    return text[len(_IMAGE_PREFIX) :] if text.startswith(_IMAGE_PREFIX) else text


# ------------------------------------------------------------------------------------------------------ ground truth
def _nested_ground_truth(data: dict[str, Any], source: str, tags: TagPolicy) -> GroundTruth:
    try:
        dataset = drivelm_from_json(data, source)
    except DriveLMFormatError as exc:
        raise VQAFormatError(source, f"not a DriveLM QA file: {exc.problem}", where=exc.key_path) from None
    any_tags = any(qa.tags for _, frame in dataset.frames() for qa in frame.all_qa())
    if tags == "file" and not any_tags:
        raise VQAFormatError(source, "no QA has a 'tag' list; use the rule (--tags rule or auto) to assign them")
    use_rule = tags == "rule" or (tags == "auto" and not any_tags)
    gt = GroundTruth(source=source, num_qa=dataset.num_qa, tag_source="rule" if use_rule else "file")
    for scene_token, frame in dataset.frames():
        qas = frame.all_qa()
        if use_rule:
            chosen = drivelm_rule_tags(frame)
        else:
            chosen = [(i, list(qa.tags)) for i, qa in enumerate(qas) if qa.tags]
        items = [
            GTItem(
                make_qa_id(scene_token, frame.frame_token, i), qas[i].question, qas[i].answer, tuple(t), qas[i].category
            )
            for i, t in chosen
        ]
        if items:
            gt.frames.append(items)
    return gt


def _flat_ground_truth(data: list[Any], source: str, tags: TagPolicy) -> GroundTruth:
    if tags == "rule":
        raise VQAFormatError(source, "the tag rule needs key_object_infos, which flat files lack; pass a nested file")
    frames: dict[tuple[str, str], list[tuple[int, GTItem]]] = {}
    seen: set[str] = set()
    for i, raw in enumerate(data):
        where = f"ground truth [{i}]"
        if not isinstance(raw, dict):
            raise VQAFormatError(source, f"expected an object, got {type(raw).__name__}", where=where)
        qa_id = raw.get("id")
        if not isinstance(qa_id, str):
            raise VQAFormatError(source, f"'id' must be a string, got {qa_id!r}", where=where)
        try:
            scene, frame, index = split_qa_id(qa_id)
        except ValueError as exc:
            raise VQAFormatError(source, str(exc), where=where) from None
        if qa_id in seen:
            raise VQAFormatError(source, "duplicate id", qa_id=qa_id, where=where)
        seen.add(qa_id)
        answer = raw.get("gt_answer", raw.get("answer"))
        question = raw.get("question")
        tag = raw.get("tag")
        if not isinstance(answer, str):
            raise VQAFormatError(source, f"'answer' (or 'gt_answer') must be a string, got {answer!r}", qa_id, where)
        if not isinstance(question, str):
            raise VQAFormatError(source, f"'question' must be a string, got {question!r}", qa_id, where)
        if tag is None:
            raise VQAFormatError(
                source,
                "no 'tag' list: flat ground truth must say which metric scores each QA "
                "(0 accuracy, 1 GPT, 2 language, 3 match)",
                qa_id,
                where,
            )
        if not isinstance(tag, list) or not all(isinstance(t, int) and not isinstance(t, bool) for t in tag):
            raise VQAFormatError(source, f"'tag' must be a list of integers, got {tag!r}", qa_id, where)
        if tag:
            item = GTItem(qa_id, _strip_prefix(question), answer, tuple(tag))
            frames.setdefault((scene, frame), []).append((index, item))
    gt = GroundTruth(source=source, num_qa=len(data), tag_source="file")
    # DriveLM walks each frame's QAs in index order; a flat file may list them in any order.
    gt.frames = [[item for _, item in sorted(items, key=lambda p: p[0])] for items in frames.values()]
    return gt


def load_ground_truth(path: str | os.PathLike[str], tags: TagPolicy = "auto") -> GroundTruth:
    """Tagged ground-truth QAs of a nested DriveLM file or a flat tagged list (see the module docstring)."""
    source = str(path)
    data = _read_json(path, "ground-truth")
    if isinstance(data, list):
        gt = _flat_ground_truth(data, source, tags)
    elif isinstance(data, dict):
        gt = _nested_ground_truth(data, source, tags)
    else:
        raise VQAFormatError(source, f"expected a DriveLM object or a list of QAs, got {type(data).__name__}")
    if not gt.frames:
        raise VQAFormatError(source, "no question to score: no QA carries a tag")
    return gt


# ------------------------------------------------------------------------------------------------------- predictions
def _flat_predictions(items: list[Any], source: str, prefix: str) -> dict[str, Prediction]:
    out: dict[str, Prediction] = {}
    first_seen: dict[str, int] = {}
    for i, raw in enumerate(items):
        where = f"prediction {prefix}[{i}]"
        if not isinstance(raw, dict):
            raise VQAFormatError(
                source, f"expected an object {{id, question, answer}}, got {type(raw).__name__}", where=where
            )
        qa_id = raw.get("id")
        if not isinstance(qa_id, str):
            raise VQAFormatError(source, f"'id' must be a string, got {qa_id!r}", where=where)
        try:
            split_qa_id(qa_id)
        except ValueError as exc:
            raise VQAFormatError(source, str(exc), where=where) from None
        if qa_id in first_seen:
            raise VQAFormatError(source, f"duplicate id (first at [{first_seen[qa_id]}])", qa_id, where)
        first_seen[qa_id] = i
        if "answer" not in raw:
            raise VQAFormatError(
                source, f"missing 'answer' (has: {', '.join(map(str, raw)) or 'nothing'})", qa_id, where
            )
        answer = raw["answer"]
        if not isinstance(answer, str):
            raise VQAFormatError(source, f"'answer' must be a string, got {answer!r}", qa_id, where)
        question = raw.get("question")
        if question is not None and not isinstance(question, str):
            raise VQAFormatError(source, f"'question' must be a string, got {question!r}", qa_id, where)
        out[qa_id] = Prediction(qa_id, answer, _strip_prefix(question) if question is not None else None)
    return out


def load_predictions(path: str | os.PathLike[str]) -> dict[str, Prediction]:
    """Predicted answers by QA id from a challenge output list, a submission, or a nested train-layout file."""
    source = str(path)
    data = _read_json(path, "predictions")
    if isinstance(data, list):
        return _flat_predictions(data, source, "")
    if isinstance(data, dict) and "results" in data:
        if not isinstance(data["results"], list):
            raise VQAFormatError(source, f"'results' must be a list, got {type(data['results']).__name__}")
        return _flat_predictions(data["results"], source, "results")
    if isinstance(data, dict):
        try:
            dataset = drivelm_from_json(data, source)
        except DriveLMFormatError as exc:
            raise VQAFormatError(
                source, f"not a prediction list nor a DriveLM QA file: {exc.problem}", where=exc.key_path
            ) from None
        return {qa.qa_id: Prediction(qa.qa_id, qa.answer, qa.question) for qa in to_flat(dataset)}
    raise VQAFormatError(source, f"expected a list of predictions or a DriveLM object, got {type(data).__name__}")


__all__ = [
    "GTItem",
    "GroundTruth",
    "Prediction",
    "TagPolicy",
    "VQAFormatError",
    "load_ground_truth",
    "load_predictions",
]
