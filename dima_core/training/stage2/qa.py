"""Per-keyframe (question, answer) pairs for stage 2: a DriveLM file where it covers the frame, else rule-based."""

from __future__ import annotations

import zlib
from pathlib import Path

from dima_core.data.sample import DrivingSample
from dima_core.training.stage2.config import JointConfig

SYNTH_QA_FILE = "drivelm_synth.json"  # written by `dima data synth` next to the tables


def stable_hash(text: str) -> int:
    """CRC-32 of ``text``: the same on every process and run (Python's ``hash`` of a str is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


class QATable:
    """Per-keyframe (question, answer) pairs: from a DriveLM file when it covers the frame, else rule-based."""

    def __init__(self, pairs: dict[str, list[tuple[str, str]]] | None = None, source: str = "rule_based") -> None:
        self.pairs = pairs or {}
        self.source = source
        self._generated: dict[str, list[tuple[str, str]]] = {}

    @classmethod
    def from_drivelm(cls, path: str | Path) -> QATable:
        from dima_core.data.drivelm import load_drivelm

        data = load_drivelm(path)
        pairs = {frame.frame_token: [(qa.question, qa.answer) for qa in frame.all_qa()] for _, frame in data.frames()}
        return cls({k: v for k, v in pairs.items() if v}, source=str(path))

    @classmethod
    def from_config(cls, joint: JointConfig, dataroot: str) -> QATable:
        from dima_core.training.stage1 import resolve_repo_path

        if joint.qa_source == "rule_based":
            return cls()
        if joint.drivelm_path:
            return cls.from_drivelm(resolve_repo_path(joint.drivelm_path))
        synth = Path(dataroot) / SYNTH_QA_FILE
        if synth.is_file():
            return cls.from_drivelm(synth)
        if joint.qa_source == "drivelm":
            raise FileNotFoundError(f"joint.qa_source is 'drivelm' but no drivelm_path is set and {synth} is absent")
        return cls()

    def for_sample(self, sample: DrivingSample) -> list[tuple[str, str]]:
        """The frame's pairs; the rule-based generator's (cached) where the file has none."""
        found = self.pairs.get(sample.token)
        if found:
            return found
        if sample.token not in self._generated:
            from dima_core.data.qa.generator import generate_frame

            frame, _ = generate_frame(sample)
            self._generated[sample.token] = [(qa.question, qa.answer) for qa in frame.all_qa()]
        return self._generated[sample.token]


__all__ = ["QATable", "SYNTH_QA_FILE", "stable_hash"]
