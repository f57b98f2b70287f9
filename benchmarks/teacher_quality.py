"""The teacher's own quality in ``dima bench distill``: how good is what the planner is distilled from?

For a stage-2 checkpoint (at the handover from the teacher warm-up, and at the end of the run):

- planning: the MLLM-only mode (``dima eval --mode mllm``'s code path: :func:`load_planner_for_mode` in mode
  ``mllm``, :func:`run_planner`, :func:`evaluate_planners`), L2 and collision in both conventions, overall and per
  long-tail split;
- VQA: DriveLM-style scores (``dima eval-vqa``'s :func:`evaluate_vqa`, rule tags, graph gating, the pure-Python
  caption tokenizer, no judge) of the teacher's greedy answers (:func:`answer_question`, grounded on each frame's
  BEAM tokens) to the rule-based DriveLM questions of ``frames`` evenly spaced frames of the split.

"Better than chance" needs a reference that has no scene: :func:`blind_vqa` answers each question with the most
frequent training answer to the same question text (the most frequent training answer overall when the question
never occurs in training), scored the same way; the constant-velocity plan is the planning reference
(:func:`constant_velocity_planning`).
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

VQA_KEYS = ("accuracy", "language_score", "match", "final_score_without_gpt")


def planning_metrics(report: dict) -> dict[str, float | None]:
    """Flat ``{group/convention/metric: value}`` of one planning report (overall and every split) + sample counts."""
    out: dict[str, float | None] = {}
    groups = {"overall": report, **report.get("splits", {})}
    for group, rep in groups.items():
        for conv in ("vad", "uniad"):
            for metric in ("l2", "collision"):
                out[f"{group}/{conv}/{metric}"] = rep[conv][metric]["avg"]
        out[f"{group}/n"] = float(rep.get("num_samples", 0))
    return out


def evaluate_mode(
    checkpoint: str | Path,
    index: Any,
    split: str,
    device: str,
    mode: str = "vision",
    llm: Any = None,
    tokenizer: Any = None,
) -> dict[str, float | None]:
    """Open-loop planning metrics of ``checkpoint`` in ``mode`` on ``split`` (the ``dima eval --mode`` path)."""
    from dima_core.eval.dima_modes import load_planner_for_mode
    from dima_core.eval.evaluate import evaluate_planners
    from dima_core.eval.planner_inference import inference_dataset, run_planner

    loaded = load_planner_for_mode(checkpoint, mode, llm=llm, tokenizer=tokenizer)
    dataset = inference_dataset(loaded, index, split)
    plans = run_planner(loaded.model, dataset, device=device).trajectories
    samples = [index.get(t) for t in dataset.tokens]
    return planning_metrics(evaluate_planners(samples, {"model": lambda s: plans[s.token]})["model"])


def constant_velocity_planning(index: Any, split: str) -> dict[str, float | None]:
    """The constant-velocity baseline's planning metrics on ``split`` (a plan that reads no camera)."""
    from dima_core.eval.baselines import ConstantVelocityBaseline
    from dima_core.eval.evaluate import evaluate_planners

    samples = [s for s in index if s.split == split]
    return planning_metrics(evaluate_planners(samples, {"cv": ConstantVelocityBaseline().plan})["cv"])


def spaced(items: Sequence[Any], count: int) -> list[Any]:
    """``count`` evenly spaced items of ``items`` (all of them when there are fewer)."""
    if count <= 0 or count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def vqa_ground_truth(samples: Sequence[Any], path: Path) -> Any:
    """The rule-based DriveLM QA of ``samples`` written to ``path`` and read back as tagged ground truth."""
    from dima_core.data.qa.generator import write_qa_for_dataset
    from dima_core.eval.vqa import load_ground_truth

    write_qa_for_dataset(samples, path)
    return load_ground_truth(path, tags="rule")


def _vqa_scores(gt: Any, answers: dict[str, str], source: str) -> dict[str, float | None]:
    from dima_core.eval.vqa import Prediction, evaluate_vqa

    predictions = {qa_id: Prediction(qa_id, answer) for qa_id, answer in answers.items()}
    report = evaluate_vqa(gt, predictions, pred_source=source, tokenizer="python")
    out: dict[str, float | None] = {key: getattr(report, key) for key in VQA_KEYS}
    out["n_questions"] = float(len(gt.items()))
    out["n_frames"] = float(len(gt.frames))
    return out


def teacher_vqa(joint: Any, dataset: Any, gt: Any, device: str, max_new_tokens: int) -> dict[str, float | None]:
    """The teacher's answers to every ground-truth question, scored (module docstring).

    Args:
        joint: a :class:`~dima_core.models.dima.DimaJointModel` with its teacher (eval mode).
        dataset: the split's :class:`DrivingDataset` (the frames' inputs).
        gt: :func:`vqa_ground_truth` of some of its frames.
    """
    import torch

    from dima_core.data.dataset import collate
    from dima_core.data.drivelm import split_qa_id
    from dima_core.io.batch import move_to_device
    from dima_core.models.dima import answer_question

    position = {token: i for i, token in enumerate(dataset.tokens)}
    joint.to(device).eval()
    answers: dict[str, str] = {}
    for frame in gt.frames:
        token = split_qa_id(frame[0].qa_id)[1]
        batch = move_to_device(collate([dataset[position[token]]]), torch.device(device))
        with torch.no_grad():
            beam = joint.planner(
                batch["images"], batch["intrinsics"], batch["cam_to_ego"], batch["ego_status"], batch["command"]
            ).beam
        for item in frame:
            answers[item.qa_id], _ = answer_question(
                joint, beam, item.question, max_new_tokens, max_question_tokens=4096
            )
    return _vqa_scores(gt, answers, "teacher answers")


def blind_vqa(gt: Any, train_samples: Sequence[Any]) -> dict[str, float | None]:
    """The scene-blind reference answerer (module docstring), scored on ``gt``."""
    from dima_core.data.qa.generator import generate_qa

    by_question: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    overall: collections.Counter = collections.Counter()
    for _, frame in generate_qa(train_samples).frames():
        for qa in frame.all_qa():
            by_question[qa.question.strip()][qa.answer] += 1
            overall[qa.answer] += 1
    fallback = overall.most_common(1)[0][0] if overall else ""
    answers = {}
    for item in gt.items():
        counts = by_question.get(item.question.strip())
        answers[item.qa_id] = counts.most_common(1)[0][0] if counts else fallback
    return _vqa_scores(gt, answers, "blind answers (most frequent training answer)")


def teacher_quality(
    checkpoint: str | Path,
    index: Any,
    split: str,
    device: str,
    gt: Any,
    max_new_tokens: int = 48,
    llm: Any = None,
    tokenizer: Any = None,
    plan_frames: int = 0,
) -> dict[str, Any]:
    """``{"planning": MLLM-only planning metrics, "vqa": VQA scores}`` of a stage-2 checkpoint's teacher.

    ``plan_frames`` > 0 scores the MLLM-only planning on that many evenly spaced frames of ``split`` (an LLM pass per
    frame is the expensive part on a CPU); 0 scores every frame. The VQA frames are ``gt``'s."""
    from dima_core.eval.dima_modes import load_planner_for_mode
    from dima_core.eval.evaluate import evaluate_planners
    from dima_core.eval.planner_inference import inference_dataset, run_planner

    loaded = load_planner_for_mode(checkpoint, "mllm", llm=llm, tokenizer=tokenizer)
    dataset = inference_dataset(loaded, index, split)
    planned = dataset
    if plan_frames > 0:
        # A sub-index of the chosen frames only (a temporal planner finds no history in it: scene start).
        chosen = spaced([s for s in index if s.split == split], plan_frames)
        planned = inference_dataset(loaded, dataclasses.replace(index, samples=chosen), split)
    plans = run_planner(loaded.model, planned, device=device).trajectories
    samples = [index.get(t) for t in planned.tokens]
    planning = planning_metrics(evaluate_planners(samples, {"mllm": lambda s: plans[s.token]})["mllm"])
    vqa = teacher_vqa(loaded.model.joint, dataset, gt, device, max_new_tokens)
    log.info(
        "teacher of %s: MLLM-only L2 (VAD) %s m, VQA accuracy %s, final (no GPT) %s",
        checkpoint,
        planning.get("overall/vad/l2"),
        vqa.get("accuracy"),
        vqa.get("final_score_without_gpt"),
    )
    return {"planning": planning, "vqa": vqa}


__all__ = [
    "VQA_KEYS",
    "blind_vqa",
    "constant_velocity_planning",
    "evaluate_mode",
    "planning_metrics",
    "spaced",
    "teacher_quality",
    "teacher_vqa",
    "vqa_ground_truth",
]
