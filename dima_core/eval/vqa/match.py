"""DriveLM's match score: coordinate F1 between a predicted and a ground-truth answer, and its graph gating.

Behaviour follows OpenDriveLab/DriveLM ``challenge/evaluation.py`` (``match_result``, ``set_graph``, ``eval_graph``):

* Coordinates are every ``\\d+\\.\\d+`` number in the text, taken in pairs ``(x, y)``. In DriveLM answers these are
  the c-tag pixels ``<c1,CAM_FRONT,1088.3,497.5>`` (written with one decimal, see
  :func:`dima_core.data.drivelm.format_ctag`); integers and signs are not part of the pattern, so
  ``<c1,CAM_FRONT,1088,497>`` contributes nothing. A trailing unpaired number is dropped (DriveLM drops it from
  predictions; it would crash on an odd ground truth, which we treat the same way instead).
* Greedy one-to-one matching in prediction order: each predicted point takes the nearest remaining ground-truth point
  by L1 distance (the first one on ties); it is a true positive when that distance is strictly below 16 px, and the
  ground-truth point is then used up. Otherwise it is a false positive. Unused ground-truth points are false negatives.
* F1 keeps DriveLM's 1e-8 terms, so a perfect answer scores 0.99999999..., not exactly 1, and no points at all scores 0.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# DriveLM's coordinate pattern: the x, y of a c-tag are always written with a decimal point.
_COORDINATE_RE = re.compile(r"\d+\.\d+")

MATCH_THRESHOLD_PX = 16.0
_EPS = 1e-8  # DriveLM's smoothing terms in precision, recall and F1

Point = tuple[float, float]


def extract_points(text: str) -> list[Point]:
    """The ``(x, y)`` pairs DriveLM reads: consecutive ``\\d+\\.\\d+`` numbers in ``text``, an odd last one dropped."""
    numbers = [float(n) for n in _COORDINATE_RE.findall(text)]
    if len(numbers) % 2:
        numbers = numbers[:-1]
    return [(numbers[i], numbers[i + 1]) for i in range(0, len(numbers), 2)]


@dataclass(frozen=True)
class MatchResult:
    """Outcome of matching one predicted answer's points against the ground truth's."""

    true_positives: int
    false_positives: int
    false_negatives: int
    f1: float  # in [0, 1), DriveLM's smoothed F1
    matched_gt: list[Point] = field(default_factory=list)  # ground-truth points that were hit, in match order


def match_points(
    predicted: list[Point], ground_truth: list[Point], threshold: float = MATCH_THRESHOLD_PX
) -> MatchResult:
    """Greedy nearest-neighbour matching (L1 < ``threshold``) of ``predicted`` onto ``ground_truth``, with F1."""
    remaining = list(ground_truth)
    matched: list[Point] = []
    tp = fp = 0
    for px, py in predicted:
        best_i = -1
        best_d = float("inf")
        for i, (gx, gy) in enumerate(remaining):
            d = abs(px - gx) + abs(py - gy)
            if d < best_d:  # strict: the earliest remaining point wins ties, as DriveLM's loop does
                best_d, best_i = d, i
        if best_d < threshold:
            tp += 1
            matched.append(remaining.pop(best_i))
        else:
            fp += 1
    fn = len(ground_truth) - tp
    precision = tp / (tp + fp + _EPS)
    recall = tp / (tp + fn + _EPS)
    f1 = 2 * precision * recall / (precision + recall + _EPS)
    return MatchResult(tp, fp, fn, f1, matched)


def match_answer(predicted: str, ground_truth: str, threshold: float = MATCH_THRESHOLD_PX) -> MatchResult:
    """:func:`match_points` on the coordinates extracted from two answer strings."""
    return match_points(extract_points(predicted), extract_points(ground_truth), threshold)


class GraphGate:
    """DriveLM's graph gating within one keyframe.

    The frame's first scored QA sets the graph: the ground-truth points its prediction matched. Every later QA of the
    frame is scored only if each coordinate pair in its *question* is one of those points (exact equality; questions
    quote the ground-truth c-tags verbatim). Questions without coordinates always pass. The intent is that questions
    about an object are only scored when the model found that object in the first answer.
    """

    def __init__(self, first_prediction: str, first_ground_truth: str, threshold: float = MATCH_THRESHOLD_PX):
        self.graph: list[Point] = match_answer(first_prediction, first_ground_truth, threshold).matched_gt

    def admits(self, question: str) -> bool:
        """True when every coordinate pair in ``question`` was matched in the frame's first answer."""
        return all(point in self.graph for point in extract_points(question))


__all__ = ["MATCH_THRESHOLD_PX", "GraphGate", "MatchResult", "Point", "extract_points", "match_answer", "match_points"]
