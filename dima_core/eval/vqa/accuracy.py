"""DriveLM's accuracy: exact string equality between prediction and ground truth, averaged.

DriveLM's ``challenge/evaluation.py`` (``eval_acc``) compares the raw strings with ``==``: no case folding, no
whitespace or punctuation stripping. The challenge makes this workable by turning the free-text accuracy questions
into multiple choice (answer ``"A"``..``"D"``, ``challenge/convert_data.py``) or yes/no. We apply the same (absent)
normalisation so scores stay comparable with DriveLM's; a model that answers ``"D."`` for ``"D"`` scores 0 there too.
"""

from __future__ import annotations

from collections.abc import Sequence


def exact_match(predicted: str, ground_truth: str) -> float:
    """1.0 when the two strings are identical, else 0.0."""
    return 1.0 if predicted == ground_truth else 0.0


def accuracy(predicted: Sequence[str], ground_truth: Sequence[str]) -> float | None:
    """Mean exact match over aligned lists; None when there is nothing to score (DriveLM would divide by zero)."""
    if len(predicted) != len(ground_truth):
        raise ValueError(f"accuracy needs aligned lists, got {len(predicted)} predictions, {len(ground_truth)} answers")
    if not predicted:
        return None
    return sum(exact_match(p, g) for p, g in zip(predicted, ground_truth, strict=True)) / len(predicted)


__all__ = ["accuracy", "exact_match"]
