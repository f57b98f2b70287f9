"""DriveLM's final score and its GPT-free variant.

DriveLM (``challenge/evaluation.py``)::

    final = 0.4 * GPT/100 + 0.2 * Lang + 0.2 * Match/100 + 0.2 * Acc
    Lang  = (B1 + B2 + B3 + B4)/4/3 + ROUGE_L/3 + CIDEr/10/3
    Match = (mean F1 x 100 over tag-3 QAs + mean GPT score over the same QAs) / 2

with GPT the mean judge score (0-100) over tag-1 QAs and Acc the exact-match rate over tag-0 QAs.

Without a judge the GPT term cannot be computed. We then report the formula with that term excluded and the weights
renormalised, and Match reduced to its F1 half (its GPT half is the same missing judge)::

    final_without_gpt = (0.2 * Lang + 0.2 * F1x100/100 + 0.2 * Acc) / 0.6

More generally, any component with no QA to score (e.g. a file without tag-3 questions) is dropped the same way:
``sum(w_i * s_i) / sum(w_i)`` over the computed components; the report lists what was included.
"""

from __future__ import annotations

from dataclasses import dataclass

WEIGHTS: dict[str, float] = {"chatgpt": 0.4, "language": 0.2, "match": 0.2, "accuracy": 0.2}

FORMULA_DRIVELM = "0.4*GPT/100 + 0.2*Lang + 0.2*Match/100 + 0.2*Acc, Match = (F1x100 + GPT_match)/2"
FORMULA_WITHOUT_GPT = "(0.2*Lang + 0.2*F1x100/100 + 0.2*Acc) / 0.6"


def drivelm_final_score(chatgpt: float, language: float, match: float, accuracy: float) -> float:
    """DriveLM's weighted sum; ``chatgpt`` and ``match`` on 0-100, ``language`` and ``accuracy`` on 0-1."""
    return (
        WEIGHTS["chatgpt"] * chatgpt / 100.0
        + WEIGHTS["language"] * language
        + WEIGHTS["match"] * match / 100.0
        + WEIGHTS["accuracy"] * accuracy
    )


@dataclass(frozen=True)
class PartialScore:
    """A final score over the components that could be computed, weights renormalised to sum to 1."""

    value: float | None  # None when no component was computed
    included: tuple[str, ...]
    excluded: tuple[str, ...]


def renormalised_final_score(
    chatgpt: float | None = None,
    language: float | None = None,
    match: float | None = None,
    accuracy: float | None = None,
) -> PartialScore:
    """``sum(w_i * s_i) / sum(w_i)`` over the non-None components (scales as in :func:`drivelm_final_score`).

    With all four given this equals :func:`drivelm_final_score` (the weights sum to 1).
    """
    normalised = {
        "chatgpt": None if chatgpt is None else chatgpt / 100.0,
        "language": language,
        "match": None if match is None else match / 100.0,
        "accuracy": accuracy,
    }
    included = tuple(k for k, v in normalised.items() if v is not None)
    excluded = tuple(k for k, v in normalised.items() if v is None)
    if not included:
        return PartialScore(None, included, excluded)
    total_weight = sum(WEIGHTS[k] for k in included)
    value = sum(WEIGHTS[k] * normalised[k] for k in included) / total_weight  # type: ignore[operator]
    return PartialScore(value, included, excluded)


__all__ = [
    "FORMULA_DRIVELM",
    "FORMULA_WITHOUT_GPT",
    "WEIGHTS",
    "PartialScore",
    "drivelm_final_score",
    "renormalised_final_score",
]
