"""``dima eval-vqa``: metrics equal pycocoevalcap on known strings, accuracy, c-tag match F1, final-score formula,
DriveLM's tag rule and graph gating, the CLI end to end, and clear errors for malformed prediction files."""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest

from dima_core import cli
from dima_core.data.drivelm import (
    CTag,
    DriveLMDataset,
    DriveLMFrame,
    DriveLMScene,
    KeyObject,
    QAPair,
    format_ctag,
    make_qa_id,
    to_flat,
    write_drivelm,
)
from dima_core.eval.vqa import (
    CallableJudge,
    GraphGate,
    VQAFormatError,
    accuracy,
    drivelm_final_score,
    drivelm_judge_prompt,
    drivelm_rule_tags,
    evaluate_vqa,
    exact_match,
    extract_points,
    language_aggregate,
    language_scores,
    load_ground_truth,
    load_predictions,
    match_answer,
    match_points,
    parse_judge_score,
    python_ptb_tokenize,
    renormalised_final_score,
    tokenize_captions,
)
from dima_core.eval.vqa.tokenize import java_available

# ------------------------------------------------------------------------------------------------ language metrics
# Lower case, no punctuation: the PTB tokenizer (and the fallback) leave these unchanged, so feeding the raw strings
# to pycocoevalcap's scorers is "calling pycocoevalcap directly".
PREDS = ["the car turns left", "a red truck is parked to the front of the ego car", "keep going at the same speed"]
GTS = ["the car goes left", "a red truck is parked to the front of the ego car", "decelerate gradually without braking"]


def _direct_pycocoevalcap(preds: list[str], gts: list[str]) -> dict[str, float]:
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    g = {i: [t] for i, t in enumerate(gts)}
    r = {i: [t] for i, t in enumerate(preds)}
    with contextlib.redirect_stdout(io.StringIO()):
        bleu, _ = Bleu(4).compute_score(g, r)
    out = {f"Bleu_{n + 1}": bleu[n] for n in range(4)}
    out["ROUGE_L"] = Rouge().compute_score(g, r)[0]
    out["CIDEr"] = Cider().compute_score(g, r)[0]
    return out


def test_language_metrics_equal_pycocoevalcap_called_directly() -> None:
    ours = language_scores(PREDS, GTS)
    assert ours is not None
    direct = _direct_pycocoevalcap(PREDS, GTS)
    assert set(ours.corpus) == set(direct)
    for key, value in direct.items():
        assert ours.corpus[key] == pytest.approx(value, abs=1e-12), key
    assert language_scores([], []) is None


def test_language_identical_and_hand_checked_partial_match() -> None:
    same = language_scores(["the ego car keeps going straight ahead"], ["the ego car keeps going straight ahead"])
    assert same is not None
    assert same.corpus["Bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert same.corpus["ROUGE_L"] == pytest.approx(1.0)
    # "the car turns left" vs "the car goes left": unigrams 3/4 match; bigrams 1/3 ("the car"); same length, so no
    # brevity penalty: BLEU-1 = 3/4, BLEU-2 = sqrt(3/4 * 1/3) = 1/2. LCS "the car left" = 3 -> P = R = 3/4.
    partial = language_scores(["the car turns left"], ["the car goes left"])
    assert partial is not None
    assert partial.corpus["Bleu_1"] == pytest.approx(0.75, rel=1e-6)
    assert partial.corpus["Bleu_2"] == pytest.approx(0.5, rel=1e-6)
    assert partial.corpus["ROUGE_L"] == pytest.approx(0.75, rel=1e-9)
    assert partial.per_pair[0]["ROUGE_L"] == pytest.approx(0.75, rel=1e-9)


def test_python_tokenizer_matches_ptb_on_drivelm_text() -> None:
    texts = [
        "There is a brown SUV to the back of the ego vehicle. "
        "The IDs are <c1,CAM_BACK,1088.3,497.5>, and <c3,CAM_FRONT,1043.2,82.2>.",
        "What's the probability? It isn't high: [(traffic light, green, 674.86, -0.49)] \"quoted\" 1,000 cars",
        "Please select the correct answer from the following options: A. Going ahead. B. The car stops.",
        "The ego vehicle should stop.2. Then it can't go; e.g. wait for 5.5m",
    ]
    assert python_ptb_tokenize(texts[0]) == (
        "there is a brown suv to the back of the ego vehicle the ids are < c1 cam_back ,1088.3,497.5 > "
        "and < c3 cam_front ,1043.2,82.2 >"
    )
    if not java_available():
        pytest.skip("no java: the PTB comparison needs the Stanford tokenizer")
    ptb = tokenize_captions({i: [t] for i, t in enumerate(texts)}, "ptb")
    for i, text in enumerate(texts):
        assert python_ptb_tokenize(text) == ptb[i][0], text


# ---------------------------------------------------------------------------------------------------------- accuracy
def test_accuracy_is_exact_string_equality() -> None:
    assert exact_match("D", "D") == 1.0
    for pred in ("D.", " D", "d", "D. Turn left."):
        assert exact_match(pred, "D") == 0.0  # DriveLM compares raw strings: no normalisation
    assert accuracy(["Yes.", "No.", "yes.", "B"], ["Yes.", "No.", "Yes.", "C"]) == pytest.approx(0.5)
    assert accuracy([], []) is None
    with pytest.raises(ValueError):
        accuracy(["a"], [])


# ------------------------------------------------------------------------------------------------------------- match
def test_match_threshold_16px_and_f1() -> None:
    gt = f"Notice {format_ctag(1, 'CAM_FRONT', 100, 200)} then {format_ctag(2, 'CAM_BACK', 500, 300)}."
    assert extract_points(gt) == [(100.0, 200.0), (500.0, 300.0)]
    # c1 off by L1 = 10 + 5 = 15 < 16: true positive; c2 off by 10 + 6 = 16: not (the test is strict).
    pred = f"Notice {format_ctag(1, 'CAM_FRONT', 110, 205)} then {format_ctag(2, 'CAM_BACK', 510, 306)}."
    result = match_answer(pred, gt)
    assert (result.true_positives, result.false_positives, result.false_negatives) == (1, 1, 1)
    assert result.f1 == pytest.approx(0.5, abs=1e-7)
    assert result.matched_gt == [(100.0, 200.0)]
    assert match_answer(gt, gt).f1 == pytest.approx(1.0, abs=1e-7)
    assert match_answer("no objects", gt).f1 == 0.0
    assert match_answer("", "").f1 == 0.0
    # DriveLM's regex needs a decimal point: integer coordinates are not read; an odd trailing number is dropped.
    assert extract_points("<c1,CAM_FRONT,100,200>") == []
    assert extract_points("1.5 2.5 3.5") == [(1.5, 2.5)]


def test_match_is_greedy_and_one_to_one() -> None:
    # Two predictions near one GT point: only the first can take it.
    r = match_points([(101.0, 100.0), (102.0, 100.0)], [(100.0, 100.0)])
    assert (r.true_positives, r.false_positives, r.false_negatives) == (1, 1, 0)
    assert r.f1 == pytest.approx(2 / 3, abs=1e-7)
    # Greedy in prediction order: the first prediction takes its nearest point even if the second needed it more.
    r = match_points([(106.0, 100.0), (95.0, 100.0)], [(100.0, 100.0), (110.0, 100.0)])
    assert r.matched_gt == [(110.0, 100.0), (100.0, 100.0)] and r.true_positives == 2
    r = match_points([(112.0, 100.0), (98.0, 100.0)], [(100.0, 100.0)])  # 12 px: TP, then 2 px but used up: FP
    assert (r.true_positives, r.false_positives) == (1, 1)
    # Ties go to the earlier GT point.
    assert match_points([(105.0, 100.0)], [(100.0, 100.0), (110.0, 100.0)]).matched_gt == [(100.0, 100.0)]


def test_graph_gate_admits_only_matched_objects() -> None:
    c1, c2 = format_ctag(1, "CAM_FRONT", 100, 200), format_ctag(2, "CAM_BACK", 500, 300)
    gate = GraphGate(f"I see {format_ctag(1, 'CAM_FRONT', 103, 201)}.", f"The IDs are {c1} and {c2}.")
    assert gate.admits(f"What is the moving status of object {c1}?")
    assert not gate.admits(f"What is the moving status of object {c2}?")
    assert not gate.admits(f"Will {c1} be in the moving direction of {c2}?")
    assert gate.admits("Predict the behavior of the ego vehicle.")


# ------------------------------------------------------------------------------------------------------- final score
def test_final_score_formula_on_known_components() -> None:
    # 0.4 * 60/100 + 0.2 * 0.5 + 0.2 * 40/100 + 0.2 * 0.8 = 0.24 + 0.10 + 0.08 + 0.16
    assert drivelm_final_score(chatgpt=60.0, language=0.5, match=40.0, accuracy=0.8) == pytest.approx(0.58)
    lang = {"Bleu_1": 0.8, "Bleu_2": 0.6, "Bleu_3": 0.4, "Bleu_4": 0.2, "ROUGE_L": 0.6, "CIDEr": 3.0}
    assert language_aggregate(lang) == pytest.approx(2.0 / 4 / 3 + 0.6 / 3 + 3.0 / 10 / 3)
    full = renormalised_final_score(chatgpt=60.0, language=0.5, match=40.0, accuracy=0.8)
    assert full.value == pytest.approx(0.58) and full.excluded == ()
    no_gpt = renormalised_final_score(language=0.5, match=40.0, accuracy=0.8)
    assert no_gpt.value == pytest.approx((0.2 * 0.5 + 0.2 * 0.4 + 0.2 * 0.8) / 0.6)
    assert no_gpt.excluded == ("chatgpt",)
    assert renormalised_final_score().value is None


def test_judge_prompt_and_reply_parsing() -> None:
    prompt = drivelm_judge_prompt("Go.", "Stop.")
    assert prompt.startswith("Rate my answer based on the correct answer out of 100")
    # DriveLM concatenates without separators; keep it byte for byte.
    assert prompt.endswith("Output the number onlyThis is the correct answer: Stop.This is my answer: Go.")
    assert parse_judge_score("78") == 78.0
    assert parse_judge_score("Score: 41.5/100") == 41.5
    assert parse_judge_score("150") == 100.0
    assert parse_judge_score("no idea") is None
    assert CallableJudge(lambda a, g: "62").score("a", "b") == 62.0
    assert CallableJudge(lambda a, g: -5).score("a", "b") == 0.0


# ------------------------------------------------------------------------------------------- files and the command
SCENE, FRAME = "a" * 32, "b" * 32
C1, C2 = CTag(1, "CAM_FRONT", 800.0, 450.0), CTag(2, "CAM_BACK", 300.5, 500.0)


def _dataset() -> DriveLMDataset:
    """One keyframe with a question for every DriveLM extraction rule, plus distractors the rule must skip."""
    qa = {
        "perception": [
            QAPair("What are objects to the front of the ego car?", "There is one car to the front.", "perception"),
            QAPair(
                "What are the important objects in the current scene? Those objects will be considered for the "
                "future reasoning and driving decision.",
                f"There is a white sedan to the front of the ego vehicle and a pedestrian to the back of the ego "
                f"vehicle. The IDs of these objects are {C1} and {C2}.",
                "perception",
            ),
            QAPair(f"What is the moving status of object {C1}?", "Going ahead.", "perception"),
            QAPair(f"What is the moving status of object {C2}?", "Stopped.", "perception"),
        ],
        # The yes/no QA comes first: DriveLM's yes/no test is a substring test, and "notice" contains "no", so the
        # match QA listed first would also be taken as the yes/no QA (and end up with tag 0, as in DriveLM).
        "prediction": [
            QAPair(f"Would {C2} be in the moving direction of the ego vehicle?", "Yes.", "prediction"),
            QAPair(f"What is the future state of {C1}?", "Keep going straight.", "prediction"),
            QAPair(
                "What object should the ego vehicle notice first when the ego vehicle is getting to the next "
                "possible location?",
                f"Firstly notice that {C1}. Secondly notice that {C2}.",
                "prediction",
            ),
        ],
        "planning": [
            QAPair(
                f"What actions could the ego vehicle take based on {C2}? Why take this action and what's the "
                "probability?",
                "The action is to slow down. The reason is to yield, which has a high probability.",
                "planning",
            ),
            QAPair(
                f"What actions taken by the ego vehicle can lead to a collision with {C1}?", "Accelerate.", "planning"
            ),
            QAPair(
                "In this scenario, what are safe actions to take for the ego vehicle?",
                "Keep going at the same speed.",
                "planning",
            ),
        ],
        "behavior": [
            QAPair(
                "Predict the behavior of the ego vehicle.",
                "The ego vehicle is going straight. The ego vehicle is driving slowly.",
                "behavior",
            ),
        ],
    }
    frame = DriveLMFrame(
        frame_token=FRAME,
        key_objects=[
            KeyObject(C1, "Vehicle", "Moving", "White sedan.", (700.0, 400.0, 900.0, 500.0)),
            KeyObject(C2, "Pedestrian", "Stationary", "Pedestrian.", (280.0, 420.0, 320.0, 560.0)),
        ],
        qa=qa,
        image_paths={"CAM_FRONT": "samples/CAM_FRONT/x.jpg"},
    )
    scene = DriveLMScene(SCENE, "A test scene.", {FRAME: frame})
    return DriveLMDataset({SCENE: scene})


def _write_predictions(path: Path, dataset: DriveLMDataset, edit: dict[int, str] | None = None) -> Path:
    """DriveLM challenge output: [{id, question, answer}], answers = GT unless ``edit`` replaces them by index."""
    rows = []
    for flat in to_flat(dataset):
        answer = (edit or {}).get(flat.index, flat.answer)
        rows.append({"id": flat.qa_id, "question": "<image>\n" + flat.question, "answer": answer})
    path.write_text(json.dumps(rows))
    return path


def _run_cli(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    rc = cli.main(args)
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def test_rule_tags_follow_drivelm_extraction() -> None:
    frame = _dataset().scenes[SCENE].key_frames[FRAME]
    # all_qa indices: perception 0-3, prediction 4-6, planning 7-9, behavior 10. Challenge-file order: perception
    # language, perception accuracy, prediction match, prediction yes/no, three planning, behavior.
    assert drivelm_rule_tags(frame) == [(1, [2]), (2, [0]), (6, [3]), (4, [0]), (7, [1]), (8, [1]), (9, [1]), (10, [0])]


def test_cli_gt_answers_as_predictions_score_perfectly(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = _dataset()
    gt_path = tmp_path / "gt.json"
    write_drivelm(dataset, gt_path)  # no tag lists: the command must assign them by DriveLM's rule
    pred_path = _write_predictions(tmp_path / "pred.json", dataset)
    out = tmp_path / "report.json"
    rc, stdout, _ = _run_cli(["eval-vqa", "--pred", str(pred_path), "--gt", str(gt_path), "--out", str(out)], capsys)
    assert rc == 0
    assert "final score without GPT" in stdout and "not computed" in stdout
    report = json.loads(out.read_text())
    m = report["metrics"]
    assert report["settings"]["tags"] == "rule"
    assert report["counts"]["tagged"] == 8 and report["counts"]["scored"] == 8 and report["counts"]["gated_out"] == 0
    assert m["accuracy"] == 1.0
    assert m["match_f1"] == pytest.approx(100.0, abs=1e-5)
    assert m["language"]["Bleu_4"] == pytest.approx(1.0, abs=1e-6)
    assert m["language"]["ROUGE_L"] == pytest.approx(1.0)
    assert m["chatgpt"] is None and m["match"] is None
    assert report["final_score"]["drivelm"] is None
    # Lang = 1/3 + 1/3 + CIDEr/30, and a single identical pair has CIDEr 0 (idf from one document).
    lang = 2 / 3 + m["language"]["CIDEr"] / 30
    assert report["final_score"]["without_gpt"] == pytest.approx((0.2 * lang + 0.2 * 1.0 + 0.2 * 1.0) / 0.6, abs=1e-6)


def test_judge_completes_the_drivelm_score_and_graph_gating(tmp_path: Path) -> None:
    dataset = _dataset()
    gt_path = tmp_path / "gt.json"
    write_drivelm(dataset, gt_path)
    gt = load_ground_truth(gt_path)
    judge = CallableJudge(lambda answer, truth: 100.0 if answer == truth else 20.0, name="exact")
    perfect = evaluate_vqa(gt, load_predictions(_write_predictions(tmp_path / "p.json", dataset)), judge=judge)
    assert perfect.chatgpt == 100.0 and perfect.match == pytest.approx(100.0, abs=1e-5)
    lang = perfect.language_score
    assert lang is not None
    assert perfect.final_score == pytest.approx(0.4 + 0.2 * lang + 0.2 + 0.2, abs=1e-6)

    # The first answer (index 1) now misses C2: QAs whose question mentions C2 are skipped (graph gating),
    # the behavior question (no coordinates) and C1 questions are still scored.
    first = f"There is a white sedan to the front of the ego vehicle. The ID of this object is {C1}."
    preds = load_predictions(_write_predictions(tmp_path / "p2.json", dataset, {1: first, 8: "Turn left."}))
    gated = evaluate_vqa(gt, preds, judge=judge)
    skipped = {q["id"] for q in gated.per_question if not q["scored"]}
    assert skipped == {make_qa_id(SCENE, FRAME, 4), make_qa_id(SCENE, FRAME, 7)}
    assert gated.counts["gated_out"] == 2
    assert gated.chatgpt == pytest.approx((20.0 + 100.0) / 2)  # index 8 wrong, index 9 right; index 7 skipped
    ungated = evaluate_vqa(gt, preds, judge=judge, graph_gating=False)
    assert ungated.counts["gated_out"] == 0 and ungated.counts["scored"] == 8


def test_flat_tagged_ground_truth(tmp_path: Path) -> None:
    ids = [make_qa_id(SCENE, FRAME, i) for i in range(3)]
    gt_rows = [
        {"id": ids[2], "question": "Predict the behavior of the ego vehicle.", "answer": "B", "tag": [0]},
        {"id": ids[0], "question": "Is it safe?", "answer": "Yes.", "tag": [0]},
        {"id": ids[1], "question": "Anything else?", "answer": "No.", "tag": []},  # untagged: not scored
    ]
    gt_path = tmp_path / "gt_flat.json"
    gt_path.write_text(json.dumps(gt_rows))
    gt = load_ground_truth(gt_path)
    assert [item.qa_id for item in gt.items()] == [ids[0], ids[2]]  # index order within the frame
    pred_path = tmp_path / "pred.json"
    pred_path.write_text(json.dumps({"results": [{"id": ids[0], "answer": "Yes."}, {"id": ids[2], "answer": "B."}]}))
    report = evaluate_vqa(gt, load_predictions(pred_path))
    assert report.accuracy == 0.5 and report.language is None and report.match_f1 is None
    assert report.final_score_without_gpt == pytest.approx(0.5)  # accuracy alone, renormalised
    del gt_rows[0]["tag"]
    gt_path.write_text(json.dumps(gt_rows))
    with pytest.raises(VQAFormatError, match=f"gt_flat.json: ground truth \\[0\\] \\(id '{ids[2]}'\\): no 'tag'"):
        load_ground_truth(gt_path)


@pytest.mark.parametrize(
    ("rows", "expected"),
    [
        ([{"id": "ID", "question": "q", "answer": None}], r"prediction \[0\] \(id 'ID'\): 'answer' must be a string"),
        ([{"id": "ID", "question": "q"}], r"prediction \[0\] \(id 'ID'\): missing 'answer'"),
        ([{"id": "ID", "answer": "a"}, {"id": "ID", "answer": "b"}], r"prediction \[1\] \(id 'ID'\): duplicate id"),
        ([{"id": "not-an-id", "answer": "a"}], r"prediction \[0\]: not a DriveLM QA id"),
        ([["ID", "a"]], r"prediction \[0\]: expected an object"),
    ],
)
def test_malformed_predictions_name_file_and_id(tmp_path: Path, rows: list, expected: str) -> None:
    qa_id = make_qa_id(SCENE, FRAME, 0)
    path = tmp_path / "bad_pred.json"
    path.write_text(json.dumps(rows).replace('"ID"', json.dumps(qa_id)))
    with pytest.raises(VQAFormatError, match=r"bad_pred\.json: " + expected.replace("ID", qa_id)):
        load_predictions(path)


def test_cli_reports_missing_and_broken_predictions(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dataset = _dataset()
    gt_path = tmp_path / "gt.json"
    write_drivelm(dataset, gt_path)
    rows = json.loads(_write_predictions(tmp_path / "pred.json", dataset).read_text())
    missing_id = make_qa_id(SCENE, FRAME, 6)
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps([r for r in rows if r["id"] != missing_id]))
    rc, _, err = _run_cli(["eval-vqa", "--pred", str(partial), "--gt", str(gt_path)], capsys)
    assert rc == 2 and "partial.json" in err and missing_id in err and "--allow-missing" in err
    rc, stdout, _ = _run_cli(["eval-vqa", "--pred", str(partial), "--gt", str(gt_path), "--allow-missing"], capsys)
    assert rc == 0 and "match F1" in stdout

    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": ')
    rc, _, err = _run_cli(["eval-vqa", "--pred", str(broken), "--gt", str(gt_path)], capsys)
    assert rc == 2 and "broken.json" in err and "not valid JSON" in err
    rc, _, err = _run_cli(["eval-vqa", "--pred", str(tmp_path / "nope.json"), "--gt", str(gt_path)], capsys)
    assert rc == 2 and "nope.json" in err


def test_nested_prediction_file_with_answers_replaced(tmp_path: Path) -> None:
    dataset = _dataset()
    gt_path = tmp_path / "gt.json"
    write_drivelm(dataset, gt_path)
    dataset.scenes[SCENE].key_frames[FRAME].qa["behavior"][0].answer = "The ego vehicle is stopped."
    pred_path = tmp_path / "pred_nested.json"
    write_drivelm(dataset, pred_path)
    report = evaluate_vqa(load_ground_truth(gt_path), load_predictions(pred_path))
    # Tag-0 QAs: moving status, yes/no, behavior; only behavior is wrong.
    assert report.accuracy == pytest.approx(2 / 3)
    assert math.isclose(report.match_f1 or 0.0, 100.0, abs_tol=1e-5)
