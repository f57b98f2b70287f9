"""Score predictions against tagged DriveLM ground truth: which QAs are scored, every metric, the final scores.

Procedure (DriveLM ``challenge/evaluation.py``): walk each keyframe's tagged QAs in order. The first one is always
scored and sets the frame's graph (:class:`~dima_core.eval.vqa.match.GraphGate`); each later one is scored only if
the coordinates in its question were matched in that first answer (``graph_gating=False`` scores everything). A
scored QA contributes to every metric in its tag list: 0 accuracy, 1 judge ("GPT") score, 2 language metrics,
3 match F1 and the judge score of the match term. Each metric is the mean over the QAs that carry its tag
(language metrics are corpus-level). Then :mod:`dima_core.eval.vqa.score` combines them.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from dima_core.data.drivelm import TAG_ACCURACY, TAG_GPT, TAG_LANGUAGE, TAG_MATCH
from dima_core.eval.vqa.accuracy import exact_match
from dima_core.eval.vqa.formats import GroundTruth, GTItem, Prediction, VQAFormatError
from dima_core.eval.vqa.judge import Judge
from dima_core.eval.vqa.language import LANGUAGE_KEYS, language_aggregate, language_scores
from dima_core.eval.vqa.match import MATCH_THRESHOLD_PX, GraphGate, match_answer
from dima_core.eval.vqa.score import (
    FORMULA_DRIVELM,
    FORMULA_WITHOUT_GPT,
    drivelm_final_score,
    renormalised_final_score,
)
from dima_core.eval.vqa.tokenize import TokenizerName

logger = logging.getLogger(__name__)

_EXAMPLES = 5  # ids quoted in warnings and errors


@dataclass
class VQAReport:
    """Everything ``dima eval-vqa`` prints and writes. Metric fields are None when not computed."""

    gt_source: str
    pred_source: str
    settings: dict[str, Any]
    counts: dict[str, Any]
    accuracy: float | None = None  # 0-1
    chatgpt: float | None = None  # 0-100, judge mean over tag-1 QAs
    language: dict[str, float] | None = None  # LANGUAGE_KEYS
    language_score: float | None = None  # DriveLM's Lang aggregate
    match_f1: float | None = None  # 0-100, mean F1 x 100 over tag-3 QAs
    match_gpt: float | None = None  # 0-100, judge mean over tag-3 QAs
    match: float | None = None  # 0-100, (match_f1 + match_gpt)/2
    final_score: float | None = None  # DriveLM's formula, all four terms
    final_score_without_gpt: float | None = None
    final_score_without_gpt_included: tuple[str, ...] = ()
    not_computed: dict[str, str] = field(default_factory=dict)
    per_question: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "ground_truth": self.gt_source,
            "predictions": self.pred_source,
            "settings": self.settings,
            "counts": self.counts,
            "metrics": {
                "accuracy": self.accuracy,
                "chatgpt": self.chatgpt,
                "language": self.language,
                "language_score": self.language_score,
                "match_f1": self.match_f1,
                "match_gpt": self.match_gpt,
                "match": self.match,
            },
            "final_score": {
                "drivelm": self.final_score,
                "drivelm_formula": FORMULA_DRIVELM,
                "without_gpt": self.final_score_without_gpt,
                "without_gpt_formula": FORMULA_WITHOUT_GPT,
                "without_gpt_components": list(self.final_score_without_gpt_included),
            },
            "not_computed": self.not_computed,
            "per_question": self.per_question,
        }

    def format_table(self) -> str:
        """A plain-text table for the terminal."""

        def fmt(value: float | None, digits: int = 4) -> str:
            return f"{value:.{digits}f}" if value is not None else "not computed"

        c = self.counts
        by_tag = c["scored_by_tag"]
        rows: list[tuple[str, str, str]] = [
            ("accuracy (exact match, 0-1)", fmt(self.accuracy), str(by_tag["accuracy"])),
            ("GPT score (judge, 0-100)", fmt(self.chatgpt, 2), str(by_tag["chatgpt"])),
        ]
        for key in LANGUAGE_KEYS:
            value = None if self.language is None else self.language[key]
            rows.append((f"  {key}", fmt(value), str(by_tag["language"])))
        rows += [
            ("language score (Lang)", fmt(self.language_score), str(by_tag["language"])),
            ("match F1 x100 (16 px)", fmt(self.match_f1, 2), str(by_tag["match"])),
            ("match GPT half (judge)", fmt(self.match_gpt, 2), str(by_tag["match"])),
            ("match ((F1 + GPT)/2)", fmt(self.match, 2), str(by_tag["match"])),
            ("final score (DriveLM)", fmt(self.final_score), ""),
            ("final score without GPT", fmt(self.final_score_without_gpt), ""),
        ]
        width = max(len(r[0]) for r in rows)
        lines = [
            f"DriveLM VQA: {self.pred_source} vs {self.gt_source}",
            f"  {c['gt_qa']} QAs in the ground truth, {c['tagged']} tagged ({self.settings['tags']}), "
            f"{c['scored']} scored, {c['gated_out']} skipped by graph gating; "
            f"tokenizer {self.settings['tokenizer']}, judge {self.settings['judge'] or 'none'}",
            f"  {'metric':<{width}}  {'value':<12}  n",
        ]
        lines += [f"  {name:<{width}}  {value:<12}  {n}".rstrip() for name, value, n in rows]
        lines.append(f"  without GPT = {FORMULA_WITHOUT_GPT} over {', '.join(self.final_score_without_gpt_included)}")
        reasons: dict[str, list[str]] = {}
        for key, why in self.not_computed.items():
            reasons.setdefault(why, []).append(key)
        lines += [f"  not computed: {', '.join(keys)}: {why}" for why, keys in reasons.items()]
        return "\n".join(lines)


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _judge_all(judge: Judge, pairs: list[tuple[str, str]], label: str, counts: dict[str, Any]) -> list[float]:
    """Judge scores for (answer, GT) pairs; unreadable replies score 0 and are counted."""
    scores: list[float] = []
    start = time.perf_counter()
    for i, (answer, gt) in enumerate(pairs):
        value = judge.score(answer, gt)
        if value is None:
            counts["judge_unparsed"] += 1
            value = 0.0
        scores.append(value)
        if (i + 1) % 50 == 0:
            logger.info("judge (%s): %d/%d pairs, %.1f s", label, i + 1, len(pairs), time.perf_counter() - start)
    return scores


def evaluate_vqa(
    gt: GroundTruth,
    predictions: dict[str, Prediction],
    *,
    pred_source: str = "<predictions>",
    judge: Judge | None = None,
    graph_gating: bool = True,
    tokenizer: TokenizerName = "auto",
    allow_missing: bool = False,
) -> VQAReport:
    """Score ``predictions`` on ``gt`` as DriveLM does (see the module docstring).

    Every tagged GT QA needs a prediction: a missing one raises :class:`VQAFormatError` naming the prediction file
    and the first missing ids, unless ``allow_missing`` (then it is scored as the empty answer and counted).
    """
    items = gt.items()
    gt_ids = {item.qa_id for item in items}
    missing = [item.qa_id for item in items if item.qa_id not in predictions]
    if missing and not allow_missing:
        raise VQAFormatError(
            pred_source,
            f"no prediction for {len(missing)} of {len(items)} scored questions of {gt.source} "
            f"(first: {', '.join(missing[:_EXAMPLES])}); pass --allow-missing to score them as empty answers",
        )
    extra = [qa_id for qa_id in predictions if qa_id not in gt_ids]
    mismatched = [
        item.qa_id
        for item in items
        if item.qa_id in predictions
        and predictions[item.qa_id].question is not None
        and predictions[item.qa_id].question.strip() != item.question.strip()  # type: ignore[union-attr]
    ]
    if mismatched:
        # DriveLM does not check this either, but a differing question usually means the ids are misaligned.
        logger.warning(
            "%d predictions quote a different question than the ground truth (first: %s)",
            len(mismatched),
            ", ".join(mismatched[:_EXAMPLES]),
        )

    def answer_for(item: GTItem) -> str:
        pred = predictions.get(item.qa_id)
        return pred.answer if pred is not None else ""

    scored: list[GTItem] = []
    per_question: dict[str, dict[str, Any]] = {}
    gated_out = 0
    for frame in gt.frames:
        gate = GraphGate(answer_for(frame[0]), frame[0].answer) if graph_gating else None
        for position, item in enumerate(frame):
            admitted = gate is None or position == 0 or gate.admits(item.question)
            per_question[item.qa_id] = {"id": item.qa_id, "tags": list(item.tags), "scored": admitted}
            if admitted:
                scored.append(item)
            else:
                gated_out += 1

    def with_tag(tag: int) -> list[GTItem]:
        return [item for item in scored if tag in item.tags]

    acc_items, gpt_items = with_tag(TAG_ACCURACY), with_tag(TAG_GPT)
    lang_items, match_items = with_tag(TAG_LANGUAGE), with_tag(TAG_MATCH)
    counts: dict[str, Any] = {
        "gt_qa": gt.num_qa,
        "tagged": len(items),
        "scored": len(scored),
        "gated_out": gated_out,
        "scored_by_tag": {
            "accuracy": len(acc_items),
            "chatgpt": len(gpt_items),
            "language": len(lang_items),
            "match": len(match_items),
        },
        "missing_predictions": len(missing),
        "missing_prediction_ids": missing[:_EXAMPLES],
        "extra_predictions": len(extra),
        "question_mismatches": len(mismatched),
        "question_mismatch_ids": mismatched[:_EXAMPLES],
        "judge_unparsed": 0,
    }
    report = VQAReport(
        gt_source=gt.source,
        pred_source=pred_source,
        settings={
            "tags": gt.tag_source,
            "graph_gating": graph_gating,
            "tokenizer": tokenizer,
            "judge": getattr(judge, "name", None) if judge is not None else None,
            "match_threshold_px": MATCH_THRESHOLD_PX,
        },
        counts=counts,
    )

    acc_values = [exact_match(answer_for(i), i.answer) for i in acc_items]
    report.accuracy = _mean(acc_values)
    for item, value in zip(acc_items, acc_values, strict=True):
        per_question[item.qa_id]["accuracy"] = value

    f1_values = [match_answer(answer_for(i), i.answer).f1 * 100.0 for i in match_items]
    report.match_f1 = _mean(f1_values)
    for item, value in zip(match_items, f1_values, strict=True):
        per_question[item.qa_id]["match_f1"] = value

    lang = language_scores([answer_for(i) for i in lang_items], [i.answer for i in lang_items], tokenizer)
    if lang is not None:
        report.language = lang.corpus
        report.language_score = language_aggregate(lang.corpus)
        report.settings["tokenizer"] = lang.tokenizer
        for item, values in zip(lang_items, lang.per_pair, strict=True):
            per_question[item.qa_id]["language"] = values

    if judge is None:
        for key in ("chatgpt", "match_gpt", "match", "final_score"):
            report.not_computed[key] = "no judge; pass --judge-model or a judge to evaluate_vqa"
    else:
        gpt_values = _judge_all(judge, [(answer_for(i), i.answer) for i in gpt_items], "GPT questions", counts)
        match_gpt_values = _judge_all(judge, [(answer_for(i), i.answer) for i in match_items], "match", counts)
        report.chatgpt = _mean(gpt_values)
        report.match_gpt = _mean(match_gpt_values)
        for item, value in zip(gpt_items, gpt_values, strict=True):
            per_question[item.qa_id]["judge"] = value
        for item, value in zip(match_items, match_gpt_values, strict=True):
            per_question[item.qa_id]["match_judge"] = value
        if report.match_f1 is not None and report.match_gpt is not None:
            report.match = (report.match_f1 + report.match_gpt) / 2.0
        if counts["judge_unparsed"]:
            logger.warning("%d judge replies held no number and scored 0", counts["judge_unparsed"])

    components = {
        "chatgpt": report.chatgpt,
        "language": report.language_score,
        "match": report.match,
        "accuracy": report.accuracy,
    }
    for key, value, tag in (
        ("accuracy", report.accuracy, TAG_ACCURACY),
        ("language", report.language_score, TAG_LANGUAGE),
        ("match_f1", report.match_f1, TAG_MATCH),
    ):
        if value is None:
            report.not_computed[key] = f"no scored question carries tag {tag}"
    if report.chatgpt is None and judge is not None:
        report.not_computed["chatgpt"] = "no scored question carries tag 1"
    if all(v is not None for v in components.values()):
        report.final_score = drivelm_final_score(**components)  # type: ignore[arg-type]
    else:
        report.not_computed.setdefault(
            "final_score", "missing " + ", ".join(k for k, v in components.items() if v is None)
        )
    partial = renormalised_final_score(language=report.language_score, match=report.match_f1, accuracy=report.accuracy)
    report.final_score_without_gpt = partial.value
    report.final_score_without_gpt_included = partial.included
    report.per_question = list(per_question.values())
    return report


__all__ = ["VQAReport", "evaluate_vqa"]
