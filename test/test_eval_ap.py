"""Detection AP (matching-based, through the devkit's accumulate/calc_ap) and map Chamfer AP on hand-made and
synthetic-world cases: perfect predictions score 1, far-away ones 0, shifted ones in between."""

from __future__ import annotations

import numpy as np
import pytest

from dima_core.constants import DETECTION_CLASSES, MAP_CLASSES
from dima_core.eval.detection_metrics import (
    DetectionFrame,
    decode_detections,
    gt_detections,
    matching_detection_ap,
    submission_boxes,
)
from dima_core.eval.map_metrics import (
    MapFrame,
    average_precision_area,
    chamfer_matrix,
    gt_map,
    map_ap,
    resample_polyline,
)


def _as_predictions(gt: dict[str, DetectionFrame], shift=(0.0, 0.0)) -> dict[str, DetectionFrame]:
    out = {}
    for token, frame in gt.items():
        boxes = frame.boxes.copy()
        boxes[:, :2] += np.asarray(shift)
        out[token] = DetectionFrame(
            boxes=boxes,
            labels=frame.labels.copy(),
            scores=np.linspace(1.0, 0.5, len(boxes)),
            velocities=np.nan_to_num(frame.velocities),
        )
    return out


def test_detection_ap_perfect_and_far_on_the_synthetic_world(samples) -> None:
    gt = {s.token: gt_detections(s) for s in samples}
    assert sum(len(f) for f in gt.values()) > 0
    perfect = matching_detection_ap(gt, _as_predictions(gt))
    assert perfect["mAP"] == pytest.approx(1.0)
    assert perfect["tp_errors"]["mATE"] == pytest.approx(0.0, abs=1e-9)
    assert perfect["tp_errors"]["mASE"] == pytest.approx(0.0, abs=1e-6)
    assert perfect["tp_errors"]["mAOE"] == pytest.approx(0.0, abs=1e-6)
    present = {DETECTION_CLASSES[int(l)] for f in gt.values() for l in f.labels}
    for name, entry in perfect["per_class"].items():
        assert (entry["ap_mean"] is not None) == (name in present)  # classes without GT stay out of the mean
    # 100 m away: nothing matches at any threshold (no range cut, so the boxes are scored, not dropped).
    far = matching_detection_ap(gt, _as_predictions(gt, shift=(100.0, 0.0)), restrict_predictions_to_range=False)
    assert far["mAP"] == 0.0 and far["num_predictions"] == perfect["num_predictions"]
    # 1.5 m off: matched at 2 and 4 m only, so every class AP is exactly the mean of two perfect thresholds.
    shifted = matching_detection_ap(gt, _as_predictions(gt, shift=(1.5, 0.0)), restrict_predictions_to_range=False)
    assert shifted["mAP"] == pytest.approx(0.5)
    assert shifted["tp_errors"]["mATE"] == pytest.approx(1.5)


def test_detection_ap_hand_case_and_decoding() -> None:
    car = [5.0, 0.0, 0.8, 1.9, 4.5, 1.6, 0.0]
    gt = {"a": DetectionFrame(boxes=np.array([car]), labels=np.array([0]), velocities=np.zeros((1, 2)))}
    # A confident false positive ranked above the true one: (recall, precision) goes (0, 0) -> (1, 0.5).
    preds = {
        "a": DetectionFrame(
            boxes=np.array([[20.0, 5.0, 0.8, 1.9, 4.5, 1.6, 0.0], car]),
            labels=np.array([0, 0]),
            scores=np.array([0.9, 0.8]),
            velocities=np.zeros((2, 2)),
        )
    }
    report = matching_detection_ap(gt, preds)
    # The devkit interpolates linearly, p(r) = r / 2 at r = i / 100; AP = sum_{i=11..100} max(i/200 - 0.1, 0) / 90
    # / 0.9 = (0.005 * sum_{i=20..100} i - 0.1 * 81) / 81 = 16.2 / 81 = 0.2 (same value at every threshold).
    assert report["mAP"] == pytest.approx(0.2)
    # The NMS-free decoding keeps the top (query, class) pairs of the flattened scores, best first.
    scores = np.zeros((3, len(DETECTION_CLASSES)))
    scores[0, 0], scores[1, 8], scores[2, 0] = 0.9, 0.7, 0.1
    frame = decode_detections(
        np.arange(21, dtype=float).reshape(3, 7), scores, np.zeros((3, 2)), top_k=3, score_threshold=0.2
    )
    assert frame.labels.tolist() == [0, 8] and frame.scores.tolist() == [0.9, 0.7]
    assert frame.boxes[:, 0].tolist() == [0.0, 7.0]


def test_submission_boxes_round_trip_to_the_global_frame() -> None:
    """Ego-frame box -> global submission entry -> ego frame again (the devkit path's frame change)."""
    from pyquaternion import Quaternion

    yaw_ego = 0.7
    ego_to_global = np.eye(4)
    ego_to_global[:3, :3] = Quaternion(axis=[0, 0, 1], angle=yaw_ego).rotation_matrix
    ego_to_global[:3, 3] = [100.0, 50.0, 0.0]
    box = np.array([[10.0, 2.0, 0.9, 1.9, 4.5, 1.6, 0.3]])
    frame = DetectionFrame(boxes=box, labels=np.array([5]), scores=np.array([0.8]), velocities=np.array([[1.0, 0.0]]))
    (entry,) = submission_boxes(frame, "tok", ego_to_global)
    back = np.linalg.inv(ego_to_global) @ np.array([*entry["translation"], 1.0])
    np.testing.assert_allclose(back[:3], box[0, :3], atol=1e-9)
    assert Quaternion(entry["rotation"]).yaw_pitch_roll[0] == pytest.approx(yaw_ego + 0.3)
    np.testing.assert_allclose(entry["velocity"], [np.cos(yaw_ego), np.sin(yaw_ego)], atol=1e-9)
    assert entry["detection_name"] == "pedestrian" and entry["attribute_name"] == "pedestrian.moving"


def test_map_ap_gt_reversed_and_shifted(samples) -> None:
    gt = {s.token: gt_map(s) for s in samples}
    present = {MAP_CLASSES[int(l)] for f in gt.values() for l in f.labels}
    assert present, "the synthetic world has map vectors in range"

    def as_pred(shift: float, reverse: bool) -> dict[str, MapFrame]:
        out = {}
        for token, f in gt.items():
            lines = f.polylines[:, ::-1] if reverse else f.polylines
            out[token] = MapFrame(
                polylines=lines + np.array([0.0, shift]), labels=f.labels, scores=np.linspace(1.0, 0.5, len(f))
            )
        return out

    assert map_ap(gt, as_pred(0.0, False))["mAP"] == pytest.approx(1.0)
    assert map_ap(gt, as_pred(0.0, True))["mAP"] == pytest.approx(1.0)  # direction-invariant
    shifted = map_ap(gt, as_pred(0.8, False))
    assert 0.0 < shifted["mAP"] < 1.0
    assert map_ap(gt, as_pred(30.0, True))["mAP"] == 0.0
    for name, entry in shifted["per_class"].items():
        assert (entry["ap_mean"] is not None) == (name in present)


def test_chamfer_and_area_ap_hand_cases() -> None:
    line = resample_polyline(np.array([[0.0, 0.0], [10.0, 0.0]]), 11)
    np.testing.assert_allclose(line[:, 0], np.arange(11.0))
    # A parallel line 1 m to the side: every point is 1 m from the other line.
    other = line + np.array([0.0, 1.0])
    assert chamfer_matrix(line[None], other[None])[0, 0] == pytest.approx(1.0)
    assert chamfer_matrix(line[None], line[::-1][None])[0, 0] == pytest.approx(0.0)
    # VOC area AP: one TP then one FP with 1 GT -> 1.0; FP then TP -> 0.5.
    assert average_precision_area(np.array([1.0, 1.0]), np.array([1.0, 0.5])) == pytest.approx(1.0)
    assert average_precision_area(np.array([0.0, 1.0]), np.array([0.0, 0.5])) == pytest.approx(0.5)
