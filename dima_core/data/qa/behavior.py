"""Behavior QA: the ego's upcoming steering and speed in DriveLM's fixed vocabulary (the accuracy-scored answer)."""

from __future__ import annotations

from dima_core.data.drivelm import QAPair
from dima_core.data.qa.facts import FrameFacts

Q_BEHAVIOR = "Predict the behavior of the ego vehicle."


def behavior_qa(facts: FrameFacts) -> list[QAPair]:
    return [QAPair(question=Q_BEHAVIOR, answer=facts.behaviour.answer, category="behavior")]


__all__ = ["Q_BEHAVIOR", "behavior_qa"]
