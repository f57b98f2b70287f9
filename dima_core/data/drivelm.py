"""DriveLM-nuScenes v1.1 QA files: typed loading and writing, and the ``<c,CAM,x,y>`` object tags.

Training/annotation format (``v1_1_train_nus.json``; field names as in OpenDriveLab/DriveLM
``docs/data_prep_nus.md`` and ``challenge/data/train_sample.json``)::

    {scene_token: {"scene_description": str,
                   "key_frames": {frame_token: {
                       "key_object_infos": {"<c1,CAM_FRONT,1088.3,497.5>": {"Category": str, "Status": str | null,
                                                                             "Visual_description": str,
                                                                             "2d_bbox": [x_min, y_min, x_max, y_max]}},
                       "QA": {"perception" | "prediction" | "planning" | "behavior":
                                  [{"Q": str, "A": str, "C": null, "con_up": null, "con_down": null,
                                    "cluster": null, "layer": null, ("tag": [int, ...])}]},
                       "image_paths": {camera name: path relative to the JSON file's folder}}}}}

The challenge test file (``test.json``/``test_eval.json``) has the same nesting without ``scene_description`` and
``key_object_infos``, and each QA carries ``tag``: 0 accuracy, 1 GPT score, 2 language metrics, 3 match. Flat files
(``test_llama.json``: ``[{id, image, conversations}]``; predictions ``output.json``: ``[{id, question, answer,
gt_answer}]``) key each QA by ``"<scene_token>_<frame_token>_<i>"`` with ``i`` the index over the frame's
perception + prediction + planning + behavior list, in that order.

C-tags: ``<c{k},{camera},{x},{y}>`` with x, y pixels in the camera image (origin upper-left, x right, y down).
DriveLM's evaluator extracts coordinates with the regex ``\\d+\\.\\d+``, so they are always written with one decimal.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

QA_CATEGORIES: tuple[str, ...] = ("perception", "prediction", "planning", "behavior")

# Meaning of the per-QA ``tag`` list in DriveLM challenge files (challenge/evaluation.py).
TAG_ACCURACY = 0
TAG_GPT = 1
TAG_LANGUAGE = 2
TAG_MATCH = 3

# The graph-context fields every DriveLM-nuScenes QA carries (null for nuScenes; used by DriveLM-CARLA).
_CONTEXT_KEYS: tuple[str, ...] = ("C", "con_up", "con_down", "cluster", "layer")

_CTAG_RE = re.compile(r"<c(\d+),(CAM_[A-Z_]+),(-?\d+(?:\.\d+)?),(-?\d+(?:\.\d+)?)>")


class DriveLMFormatError(ValueError):
    """A malformed DriveLM file, located by file and key path (``scene.key_frames.frame.QA.planning[3].A``)."""

    def __init__(self, source: str, key_path: str, problem: str):
        self.source = source
        self.key_path = key_path
        self.problem = problem
        where = f" at '{key_path}'" if key_path else ""
        super().__init__(f"{source}{where}: {problem}")


# --------------------------------------------------------------------------------------------------------------- c-tags
@dataclass(frozen=True)
class CTag:
    """One DriveLM object reference ``<c{index},{camera},{x},{y}>``; x, y are image pixels of ``camera``."""

    index: int
    camera: str
    x: float
    y: float

    def __str__(self) -> str:
        return format_ctag(self.index, self.camera, self.x, self.y)

    @property
    def object_id(self) -> str:
        return f"c{self.index}"


def format_ctag(index: int, camera: str, x: float, y: float) -> str:
    """``<c{index},{camera},{x:.1f},{y:.1f}>``; one decimal because DriveLM's matcher requires ``\\d+\\.\\d+``."""
    if index < 0:
        raise ValueError(f"c-tag index must be >= 0, got {index}")
    if not camera.startswith("CAM_"):
        raise ValueError(f"c-tag camera must be a camera channel like CAM_FRONT, got {camera!r}")
    return f"<c{index},{camera},{x:.1f},{y:.1f}>"


def parse_ctag(text: str) -> CTag:
    """Parse exactly one c-tag (surrounding whitespace allowed); ValueError names the offending text."""
    match = _CTAG_RE.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"not a c-tag (expected '<c1,CAM_FRONT,1088.3,497.5>'): {text!r}")
    return CTag(int(match.group(1)), match.group(2), float(match.group(3)), float(match.group(4)))


def find_ctags(text: str) -> list[CTag]:
    """All c-tags in a question or answer, in order of appearance."""
    return [CTag(int(m.group(1)), m.group(2), float(m.group(3)), float(m.group(4))) for m in _CTAG_RE.finditer(text)]


# ---------------------------------------------------------------------------------------------------------- dataclasses
@dataclass
class QAPair:
    """One question/answer. ``category`` is one of QA_CATEGORIES; ``tags`` is the challenge ``tag`` list (or None)."""

    question: str
    answer: str
    category: str
    tags: list[int] | None = None
    # DriveLM's graph fields C, con_up, con_down, cluster, layer, kept verbatim so files round-trip.
    context: dict[str, Any] = field(default_factory=lambda: {k: None for k in _CONTEXT_KEYS})

    @property
    def ctags(self) -> list[CTag]:
        """C-tags in the question followed by those in the answer."""
        return find_ctags(self.question) + find_ctags(self.answer)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"Q": self.question, "A": self.answer}
        for key in _CONTEXT_KEYS:
            out[key] = self.context.get(key)
        if self.tags is not None:
            out["tag"] = list(self.tags)
        return out


@dataclass
class KeyObject:
    """One entry of ``key_object_infos``. ``bbox_2d`` is (x_min, y_min, x_max, y_max) pixels in ``tag.camera``."""

    tag: CTag
    category: str  # DriveLM "Category", e.g. "Vehicle", "Pedestrian", "Traffic element"
    status: str | None  # "Moving", "Stationary", or None for traffic elements
    visual_description: str
    bbox_2d: tuple[float, float, float, float]

    def to_json(self) -> dict[str, Any]:
        return {
            "Category": self.category,
            "Status": self.status,
            "Visual_description": self.visual_description,
            "2d_bbox": [round(float(v), 1) for v in self.bbox_2d],
        }


@dataclass
class DriveLMFrame:
    """One annotated keyframe; ``frame_token`` is the nuScenes sample token."""

    frame_token: str
    key_objects: list[KeyObject] = field(default_factory=list)
    qa: dict[str, list[QAPair]] = field(default_factory=lambda: {c: [] for c in QA_CATEGORIES})
    image_paths: dict[str, str] = field(default_factory=dict)  # camera -> path relative to the JSON's folder
    # Challenge test files omit key_object_infos; remembering that keeps load -> write an identity.
    has_key_object_infos: bool = True

    def all_qa(self) -> list[QAPair]:
        """perception + prediction + planning + behavior: the order DriveLM's ``_i`` QA ids index."""
        return [qa for category in QA_CATEGORIES for qa in self.qa.get(category, [])]

    def key_object(self, tag: CTag | str) -> KeyObject:
        wanted = parse_ctag(tag) if isinstance(tag, str) else tag
        for obj in self.key_objects:
            if obj.tag == wanted:
                return obj
        raise KeyError(f"frame {self.frame_token} has no key object {wanted}")

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.has_key_object_infos or self.key_objects:
            out["key_object_infos"] = {str(obj.tag): obj.to_json() for obj in self.key_objects}
        out["QA"] = {c: [qa.to_json() for qa in self.qa.get(c, [])] for c in QA_CATEGORIES}
        out["image_paths"] = dict(self.image_paths)
        return out


@dataclass
class DriveLMScene:
    scene_token: str
    description: str | None = None  # None in challenge test files, which omit it
    key_frames: dict[str, DriveLMFrame] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.description is not None:
            out["scene_description"] = self.description
        out["key_frames"] = {token: frame.to_json() for token, frame in self.key_frames.items()}
        return out


@dataclass
class DriveLMDataset:
    """A whole DriveLM-nuScenes file: scene_token -> scene (insertion order kept, so writing is stable)."""

    scenes: dict[str, DriveLMScene] = field(default_factory=dict)

    def frames(self) -> Iterator[tuple[str, DriveLMFrame]]:
        """(scene_token, frame) for every keyframe."""
        for scene_token, scene in self.scenes.items():
            for frame in scene.key_frames.values():
                yield scene_token, frame

    def frame(self, frame_token: str) -> DriveLMFrame:
        for _, frame in self.frames():
            if frame.frame_token == frame_token:
                return frame
        raise KeyError(f"no DriveLM keyframe {frame_token}")

    @property
    def num_frames(self) -> int:
        return sum(len(s.key_frames) for s in self.scenes.values())

    @property
    def num_qa(self) -> int:
        return sum(len(frame.all_qa()) for _, frame in self.frames())

    def to_json(self) -> dict[str, Any]:
        return {token: scene.to_json() for token, scene in self.scenes.items()}


@dataclass
class FlatQA:
    """One QA of a flat DriveLM file (conversations or predictions), keyed by ``<scene>_<frame>_<i>``."""

    qa_id: str
    question: str  # without DriveLM's "<image>\n" prefix
    answer: str
    gt_answer: str | None = None  # predictions files only
    images: list[str] = field(default_factory=list)  # conversation files only

    @property
    def scene_token(self) -> str:
        return split_qa_id(self.qa_id)[0]

    @property
    def frame_token(self) -> str:
        return split_qa_id(self.qa_id)[1]

    @property
    def index(self) -> int:
        return split_qa_id(self.qa_id)[2]


def make_qa_id(scene_token: str, frame_token: str, index: int) -> str:
    return f"{scene_token}_{frame_token}_{index}"


def split_qa_id(qa_id: str) -> tuple[str, str, int]:
    """``"<scene>_<frame>_<i>"`` -> (scene, frame, i). nuScenes tokens are hex, so '_' only separates fields."""
    parts = qa_id.split("_")
    if len(parts) != 3 or not parts[2].isdigit():
        raise ValueError(f"not a DriveLM QA id '<scene_token>_<frame_token>_<index>': {qa_id!r}")
    return parts[0], parts[1], int(parts[2])


# -------------------------------------------------------------------------------------------------------------- parsing
class _Reader:
    """Type-checked access to the parsed JSON that reports the file and key path of any problem."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, problem: str) -> DriveLMFormatError:
        return DriveLMFormatError(self.source, path, problem)

    def mapping(self, value: Any, path: str) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, f"expected an object, got {type(value).__name__}")
        return value

    def sequence(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list):
            raise self.fail(path, f"expected a list, got {type(value).__name__}")
        return value

    def required(self, obj: Mapping[str, Any], key: str, path: str) -> Any:
        if key not in obj:
            raise self.fail(path, f"missing required key '{key}' (has: {', '.join(map(str, obj)) or 'nothing'})")
        return obj[key]

    def string(self, value: Any, path: str, nullable: bool = False) -> str | None:
        if value is None and nullable:
            return None
        if not isinstance(value, str):
            raise self.fail(path, f"expected a string, got {type(value).__name__} {value!r}")
        return value


def _parse_qa(r: _Reader, raw: Any, category: str, path: str) -> QAPair:
    obj = r.mapping(raw, path)
    question = r.string(r.required(obj, "Q", path), f"{path}.Q")
    answer = r.string(r.required(obj, "A", path), f"{path}.A")
    tags = None
    if "tag" in obj:
        tags = r.sequence(obj["tag"], f"{path}.tag")
        for i, t in enumerate(tags):
            if isinstance(t, bool) or not isinstance(t, int):
                raise r.fail(f"{path}.tag[{i}]", f"expected an integer tag (0-3), got {t!r}")
    context = {key: obj.get(key) for key in _CONTEXT_KEYS}
    assert question is not None and answer is not None
    return QAPair(question=question, answer=answer, category=category, tags=tags, context=context)


def _parse_key_object(r: _Reader, tag_text: str, raw: Any, path: str) -> KeyObject:
    try:
        tag = parse_ctag(tag_text)
    except ValueError as exc:
        raise r.fail(path, str(exc)) from None
    obj = r.mapping(raw, path)
    bbox_raw = r.sequence(r.required(obj, "2d_bbox", path), f"{path}.2d_bbox")
    if len(bbox_raw) != 4 or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in bbox_raw):
        raise r.fail(f"{path}.2d_bbox", f"expected 4 numbers [x_min, y_min, x_max, y_max], got {bbox_raw!r}")
    category = r.string(r.required(obj, "Category", path), f"{path}.Category")
    # DriveLM writes the status of traffic elements both as null and as the string "None".
    status = r.string(r.required(obj, "Status", path), f"{path}.Status", nullable=True)
    description = r.string(r.required(obj, "Visual_description", path), f"{path}.Visual_description")
    assert category is not None and description is not None
    bbox = (float(bbox_raw[0]), float(bbox_raw[1]), float(bbox_raw[2]), float(bbox_raw[3]))
    return KeyObject(tag=tag, category=category, status=status, visual_description=description, bbox_2d=bbox)


def _parse_frame(r: _Reader, frame_token: str, raw: Any, path: str) -> DriveLMFrame:
    obj = r.mapping(raw, path)
    key_objects = []
    if "key_object_infos" in obj:  # absent in challenge test files
        infos = r.mapping(obj["key_object_infos"], f"{path}.key_object_infos")
        for tag_text, info in infos.items():
            key_objects.append(_parse_key_object(r, tag_text, info, f"{path}.key_object_infos.{tag_text}"))
    qa_raw = r.mapping(r.required(obj, "QA", path), f"{path}.QA")
    for category in qa_raw:
        if category not in QA_CATEGORIES:
            raise r.fail(f"{path}.QA.{category}", f"unknown QA category (known: {', '.join(QA_CATEGORIES)})")
    qa: dict[str, list[QAPair]] = {}
    for category in QA_CATEGORIES:
        items = r.sequence(qa_raw.get(category, []), f"{path}.QA.{category}")
        qa[category] = [_parse_qa(r, item, category, f"{path}.QA.{category}[{i}]") for i, item in enumerate(items)]
    image_paths: dict[str, str] = {}
    if "image_paths" in obj:
        paths = r.mapping(obj["image_paths"], f"{path}.image_paths")
        for cam, p in paths.items():
            value = r.string(p, f"{path}.image_paths.{cam}")
            assert value is not None
            image_paths[cam] = value
    return DriveLMFrame(
        frame_token=frame_token,
        key_objects=key_objects,
        qa=qa,
        image_paths=image_paths,
        has_key_object_infos="key_object_infos" in obj,
    )


def drivelm_from_json(data: Any, source: str = "<json>") -> DriveLMDataset:
    """Build a dataset from parsed DriveLM JSON (train or challenge-test layout); errors name ``source``."""
    r = _Reader(source)
    top = r.mapping(data, "")
    dataset = DriveLMDataset()
    for scene_token, scene_raw in top.items():
        scene_obj = r.mapping(scene_raw, scene_token)
        description = None
        if "scene_description" in scene_obj:
            description = r.string(scene_obj["scene_description"], f"{scene_token}.scene_description", nullable=True)
        frames_raw = r.mapping(r.required(scene_obj, "key_frames", scene_token), f"{scene_token}.key_frames")
        scene = DriveLMScene(scene_token=scene_token, description=description)
        for frame_token, frame_raw in frames_raw.items():
            scene.key_frames[frame_token] = _parse_frame(
                r, frame_token, frame_raw, f"{scene_token}.key_frames.{frame_token}"
            )
        dataset.scenes[scene_token] = scene
    return dataset


def _read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DriveLM file not found: {path}")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DriveLMFormatError(str(path), "", f"not valid JSON: {exc}") from None


def load_drivelm(path: str | os.PathLike) -> DriveLMDataset:
    """Load a DriveLM-nuScenes QA file (v1.0/v1.1 train layout, or the challenge test layout with ``tag`` lists)."""
    return drivelm_from_json(_read_json(path), str(path))


def write_drivelm(dataset: DriveLMDataset, path: str | os.PathLike, indent: int | None = 4) -> None:
    """Write ``dataset`` in the layout it was loaded from (``tag`` lists only where QAs have them)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    # Write-then-rename so a crash never leaves a truncated QA file that later loads half-way.
    tmp.write_text(json.dumps(dataset.to_json(), indent=indent, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------- flat files
_IMAGE_PREFIX = "<image>\n"


def _strip_image_prefix(text: str) -> str:
    return text[len(_IMAGE_PREFIX) :] if text.startswith(_IMAGE_PREFIX) else text


def load_drivelm_flat(path: str | os.PathLike) -> list[FlatQA]:
    """Load a flat DriveLM file keyed by QA id: ``test_llama.json`` (id, image, conversations human/gpt) or a
    predictions file (id, question, answer[, gt_answer]) such as ``output.json`` or a submission's ``results``."""
    source = str(path)
    r = _Reader(source)
    data = _read_json(path)
    if isinstance(data, dict) and "results" in data:  # submission.json wraps the predictions
        items = r.sequence(data["results"], "results")
        prefix = "results"
    else:
        items = r.sequence(data, "")
        prefix = ""
    out: list[FlatQA] = []
    for i, raw in enumerate(items):
        path_i = f"{prefix}[{i}]"
        obj = r.mapping(raw, path_i)
        qa_id = r.string(r.required(obj, "id", path_i), f"{path_i}.id")
        assert qa_id is not None
        try:
            split_qa_id(qa_id)
        except ValueError as exc:
            raise r.fail(f"{path_i}.id", str(exc)) from None
        if "conversations" in obj:
            turns = r.sequence(obj["conversations"], f"{path_i}.conversations")
            texts: dict[str, str] = {}
            for j, turn in enumerate(turns):
                t = r.mapping(turn, f"{path_i}.conversations[{j}]")
                who = r.string(
                    r.required(t, "from", f"{path_i}.conversations[{j}]"), f"{path_i}.conversations[{j}].from"
                )
                value = r.string(
                    r.required(t, "value", f"{path_i}.conversations[{j}]"), f"{path_i}.conversations[{j}].value"
                )
                assert who is not None and value is not None
                texts.setdefault(who, value)
            if "human" not in texts or "gpt" not in texts:
                raise r.fail(f"{path_i}.conversations", "expected one 'human' and one 'gpt' turn")
            images = [str(p) for p in r.sequence(obj.get("image", []), f"{path_i}.image")]
            out.append(FlatQA(qa_id, _strip_image_prefix(texts["human"]), texts["gpt"], None, images))
        else:
            question = r.string(r.required(obj, "question", path_i), f"{path_i}.question")
            answer = r.string(r.required(obj, "answer", path_i), f"{path_i}.answer")
            gt = r.string(obj.get("gt_answer"), f"{path_i}.gt_answer", nullable=True)
            assert question is not None and answer is not None
            out.append(FlatQA(qa_id, _strip_image_prefix(question), answer, gt))
    return out


def to_flat(dataset: DriveLMDataset) -> list[FlatQA]:
    """Every QA of ``dataset`` as a flat record with DriveLM's ``<scene>_<frame>_<i>`` id (conversation layout)."""
    out = []
    for scene_token, frame in dataset.frames():
        images = [frame.image_paths[c] for c in frame.image_paths]
        for i, qa in enumerate(frame.all_qa()):
            out.append(FlatQA(make_qa_id(scene_token, frame.frame_token, i), qa.question, qa.answer, None, images))
    return out


__all__ = [
    "QA_CATEGORIES",
    "TAG_ACCURACY",
    "TAG_GPT",
    "TAG_LANGUAGE",
    "TAG_MATCH",
    "CTag",
    "DriveLMDataset",
    "DriveLMFormatError",
    "DriveLMFrame",
    "DriveLMScene",
    "FlatQA",
    "KeyObject",
    "QAPair",
    "drivelm_from_json",
    "find_ctags",
    "format_ctag",
    "load_drivelm",
    "load_drivelm_flat",
    "make_qa_id",
    "parse_ctag",
    "split_qa_id",
    "to_flat",
    "write_drivelm",
]
