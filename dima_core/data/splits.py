"""Split membership and scenario tags of scenes and samples.

Sources, in order of precedence:

1. Synthetic worlds write ``synth_meta.json`` at the dataroot::

       {"splits": {"train": [scene names], "val": [...]},
        "scenes": {"<scene name>": {"scenario": "overtake", "tags": ["...", ...]}}}

   A scene's tags are its scenario followed by its tags (duplicates removed, order kept).
2. Real nuScenes: the official splits of the devkit's ``create_splits_scenes``, keyed by version
   (``v1.0-mini``: mini_train / mini_val -> train / val; ``v1.0-trainval``: train / val; ``v1.0-test``: test).
3. A devkit custom ``<dataroot>/<version>/splits.json`` ({"<split>": [scene names]}) for other versions.

Long-tail splits of real nuScenes (TOKEN / DiMA style) come as optional token-list files
``{"overtake": [sample tokens], "three_point_turn": [...], ...}``; each key becomes a tag of the listed samples.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SYNTH_META_FILENAME = "synth_meta.json"

# Official devkit split name -> our split name, per table version.
OFFICIAL_SPLITS: dict[str, dict[str, str]] = {
    "v1.0-mini": {"mini_train": "train", "mini_val": "val"},
    "v1.0-trainval": {"train": "train", "val": "val"},
    "v1.0-test": {"test": "test"},
}


class SplitFileError(ValueError):
    """A split or token-list file is missing pieces or malformed; the message names the file and the problem."""


@dataclass
class SceneSplits:
    """Scene -> split and scene/sample -> tags lookups for one dataset."""

    scene_split: dict[str, str] = field(default_factory=dict)
    scene_tags: dict[str, list[str]] = field(default_factory=dict)
    sample_tags: dict[str, list[str]] = field(default_factory=dict)
    source: str = ""

    def split_of(self, scene_name: str) -> str:
        """'train', 'val', 'test', another named split, or '' when the scene is in no split."""
        return self.scene_split.get(scene_name, "")

    def tags_of(self, scene_name: str, sample_token: str) -> list[str]:
        return _unique([*self.scene_tags.get(scene_name, []), *self.sample_tags.get(sample_token, [])])


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


def _read_json(path: Path) -> object:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise SplitFileError(f"{path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise SplitFileError(f"{path}: not valid JSON ({exc})") from None


def _string_list(value: object, path: Path, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SplitFileError(f"{path}: '{key}' must be a list of strings")
    return list(value)


def read_synth_meta(path: Path) -> SceneSplits:
    """Parse a synthetic world's ``synth_meta.json`` (format in the module docstring)."""
    data = _read_json(path)
    if not isinstance(data, dict) or not isinstance(data.get("splits"), dict):
        raise SplitFileError(f"{path}: needs a top-level 'splits' mapping of split name -> scene names")
    out = SceneSplits(source=str(path))
    for split, scenes in data["splits"].items():
        for scene in _string_list(scenes, path, f"splits.{split}"):
            if scene in out.scene_split and out.scene_split[scene] != split:
                raise SplitFileError(f"{path}: scene {scene} is in both '{out.scene_split[scene]}' and '{split}'")
            out.scene_split[scene] = split
    scenes_meta = data.get("scenes", {})
    if not isinstance(scenes_meta, dict):
        raise SplitFileError(f"{path}: 'scenes' must map scene names to {{'scenario': str, 'tags': [str]}}")
    for scene, meta in scenes_meta.items():
        if not isinstance(meta, dict):
            raise SplitFileError(f"{path}: scenes.{scene} must be a mapping")
        scenario = meta.get("scenario", "")
        if not isinstance(scenario, str):
            raise SplitFileError(f"{path}: scenes.{scene}.scenario must be a string")
        tags = _string_list(meta.get("tags", []), path, f"scenes.{scene}.tags")
        out.scene_tags[scene] = _unique([scenario, *tags])
    return out


def official_splits(version: str, dataroot: str) -> SceneSplits:
    """Official nuScenes splits for ``version``, or the devkit custom ``splits.json`` for any other version."""
    out = SceneSplits(source=f"nuscenes-devkit create_splits_scenes ({version})")
    mapping = OFFICIAL_SPLITS.get(version)
    if mapping is not None:
        # Imported here: the devkit's package import pulls in matplotlib and friends, which dataset workers
        # reading only the cached index never need.
        from nuscenes.utils.splits import create_splits_scenes

        scenes = create_splits_scenes()
        for devkit_name, ours in mapping.items():
            for scene in scenes[devkit_name]:
                out.scene_split[scene] = ours
        return out
    custom = Path(dataroot) / version / "splits.json"
    if custom.is_file():
        data = _read_json(custom)
        if not isinstance(data, dict):
            raise SplitFileError(f"{custom}: must map split names to scene names")
        out.source = str(custom)
        for split, scene_names in data.items():
            for scene in _string_list(scene_names, custom, split):
                out.scene_split[scene] = split
    return out


def read_token_lists(paths: Iterable[str | os.PathLike]) -> dict[str, list[str]]:
    """Sample token -> tags from long-tail token-list files ``{"<tag>": [sample tokens]}``."""
    sample_tags: dict[str, list[str]] = {}
    for raw in paths:
        path = Path(raw)
        data = _read_json(path)
        if not isinstance(data, dict):
            raise SplitFileError(f"{path}: must map split names to lists of sample tokens")
        for tag, tokens in data.items():
            for token in _string_list(tokens, path, tag):
                sample_tags.setdefault(token, [])
                if tag not in sample_tags[token]:
                    sample_tags[token].append(tag)
    return sample_tags


def load_scene_splits(
    dataroot: str | os.PathLike, version: str, token_list_files: Iterable[str | os.PathLike] | None = None
) -> SceneSplits:
    """Split membership and tags for a dataset: synthetic meta when present, else the official splits."""
    meta = Path(dataroot) / SYNTH_META_FILENAME
    splits = read_synth_meta(meta) if meta.is_file() else official_splits(version, str(dataroot))
    splits.sample_tags = read_token_lists(token_list_files or [])
    return splits


__all__ = [
    "OFFICIAL_SPLITS",
    "SYNTH_META_FILENAME",
    "SceneSplits",
    "SplitFileError",
    "load_scene_splits",
    "official_splits",
    "read_synth_meta",
    "read_token_lists",
]
