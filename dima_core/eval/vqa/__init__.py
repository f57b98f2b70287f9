"""DriveLM-style VQA scoring (``dima eval-vqa``), matching OpenDriveLab/DriveLM ``challenge/evaluation.py``.

Each ground-truth QA carries a ``tag`` list naming its metrics: 0 accuracy (:mod:`.accuracy`), 1 judge "GPT" score
(:mod:`.judge`, optional and local), 2 BLEU-1..4 / ROUGE-L / CIDEr through pycocoevalcap (:mod:`.language`,
:mod:`.tokenize`), 3 c-tag match F1 within 16 px (:mod:`.match`). :mod:`.tagging` assigns tags as DriveLM's
extraction does when a file has none, :mod:`.formats` reads the files, :mod:`.evaluate` applies graph gating and
computes every metric, :mod:`.score` holds the final-score formula and its GPT-free variant.
"""

from dima_core.eval.vqa.accuracy import accuracy, exact_match
from dima_core.eval.vqa.evaluate import VQAReport, evaluate_vqa
from dima_core.eval.vqa.formats import (
    GroundTruth,
    GTItem,
    Prediction,
    VQAFormatError,
    load_ground_truth,
    load_predictions,
)
from dima_core.eval.vqa.judge import (
    CallableJudge,
    HFCausalLMJudge,
    Judge,
    drivelm_judge_messages,
    drivelm_judge_prompt,
    parse_judge_score,
)
from dima_core.eval.vqa.language import LANGUAGE_KEYS, LanguageScores, language_aggregate, language_scores
from dima_core.eval.vqa.match import (
    MATCH_THRESHOLD_PX,
    GraphGate,
    MatchResult,
    extract_points,
    match_answer,
    match_points,
)
from dima_core.eval.vqa.score import drivelm_final_score, renormalised_final_score
from dima_core.eval.vqa.tagging import drivelm_rule_tags
from dima_core.eval.vqa.tokenize import python_ptb_tokenize, tokenize_captions

__all__ = [
    "LANGUAGE_KEYS",
    "MATCH_THRESHOLD_PX",
    "CallableJudge",
    "GTItem",
    "GraphGate",
    "GroundTruth",
    "HFCausalLMJudge",
    "Judge",
    "LanguageScores",
    "MatchResult",
    "Prediction",
    "VQAFormatError",
    "VQAReport",
    "accuracy",
    "drivelm_final_score",
    "drivelm_judge_messages",
    "drivelm_judge_prompt",
    "drivelm_rule_tags",
    "evaluate_vqa",
    "exact_match",
    "extract_points",
    "language_aggregate",
    "language_scores",
    "load_ground_truth",
    "load_predictions",
    "match_answer",
    "match_points",
    "parse_judge_score",
    "python_ptb_tokenize",
    "renormalised_final_score",
    "tokenize_captions",
]
