"""COCO caption metrics for DriveLM's language questions (tag 2): BLEU-1..4, ROUGE-L and CIDEr via pycocoevalcap.

DriveLM calls ``language_evaluation.CocoEvaluator(coco_types=["BLEU", "ROUGE_L", "CIDEr"]).run_evaluation(answers,
GTs)``, which numbers the pairs 0..n-1, replaces ``_UNK`` in the references by ``_UNKNOWN``, PTB-tokenises both sides
and runs the pycocoevalcap scorers ``Bleu(4)`` (corpus-level, ``closest`` reference length), ``Rouge()`` (mean
sentence ROUGE-L, beta 1.2) and ``Cider()`` (CIDEr-D with document frequencies from these references). We do the same
with the pycocoevalcap classes themselves, so the numbers equal calling them directly on the tokenised strings.
Note CIDEr's idf comes from the scored set: a single identical pair scores CIDEr 0, not 10.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from dataclasses import dataclass

from dima_core.eval.vqa.tokenize import TokenizerName, resolve_tokenizer, tokenize_captions

LANGUAGE_KEYS: tuple[str, ...] = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4", "ROUGE_L", "CIDEr")

# language_evaluation's CocoEvaluator rewrites this token in the references before scoring.
_UNK_TOKEN = "_UNK"


@dataclass(frozen=True)
class LanguageScores:
    """Corpus scores (keys LANGUAGE_KEYS), per-pair scores in input order, and the tokenizer used."""

    corpus: dict[str, float]
    per_pair: list[dict[str, float]]
    tokenizer: str


def language_scores(
    predicted: Sequence[str], ground_truth: Sequence[str], tokenizer: TokenizerName = "auto"
) -> LanguageScores | None:
    """BLEU-1..4, ROUGE-L, CIDEr of aligned ``predicted``/``ground_truth`` answers; None when the lists are empty."""
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    if len(predicted) != len(ground_truth):
        raise ValueError(f"language metrics need aligned lists, got {len(predicted)} and {len(ground_truth)}")
    if not predicted:
        return None
    chosen = resolve_tokenizer(tokenizer)
    # One tokenizer call for both sides: the Java tokenizer costs a JVM start per call.
    raw: dict[object, list[str]] = {}
    for i, (p, g) in enumerate(zip(predicted, ground_truth, strict=True)):
        raw[("gt", i)] = [g.replace(_UNK_TOKEN, "_UNKNOWN")]
        raw[("res", i)] = [p]
    tokens = tokenize_captions(raw, chosen)
    gts = {i: tokens[("gt", i)] for i in range(len(predicted))}
    res = {i: tokens[("res", i)] for i in range(len(predicted))}

    corpus: dict[str, float] = {}
    per_pair: list[dict[str, float]] = [{} for _ in predicted]
    # BleuScorer prints its length statistics to stdout; keep the CLI's table clean.
    with contextlib.redirect_stdout(io.StringIO()):
        bleu, bleu_each = Bleu(4).compute_score(gts, res)
    for n in range(4):
        corpus[f"Bleu_{n + 1}"] = float(bleu[n])
        for i, value in enumerate(bleu_each[n]):
            per_pair[i][f"Bleu_{n + 1}"] = float(value)
    for key, scorer in (("ROUGE_L", Rouge()), ("CIDEr", Cider())):
        score, each = scorer.compute_score(gts, res)
        corpus[key] = float(score)
        for i, value in enumerate(each):
            per_pair[i][key] = float(value)
    return LanguageScores(corpus=corpus, per_pair=per_pair, tokenizer=chosen)


def language_aggregate(corpus: dict[str, float]) -> float:
    """DriveLM's language term: ``(B1+B2+B3+B4)/4/3 + ROUGE_L/3 + CIDEr/10/3``."""
    bleu = sum(corpus[f"Bleu_{n}"] for n in range(1, 5))
    return bleu / 4.0 / 3.0 + corpus["ROUGE_L"] / 3.0 + corpus["CIDEr"] / 10.0 / 3.0


__all__ = ["LANGUAGE_KEYS", "LanguageScores", "language_aggregate", "language_scores"]
