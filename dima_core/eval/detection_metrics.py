"""Detection quality of the BEAM agent head: nuScenes mAP / NDS.

Two paths, chosen by :func:`devkit_split_name`:

1. **nuScenes devkit** (real nuScenes, official split): the predictions go to the devkit's own ``DetectionEval``
   (``detection_cvpr_2019`` config) in the nuScenes submission format, in the GLOBAL frame, with the devkit's class
   ranges, GT filtering and NDS. Attributes, which our head does not predict, are filled from the class and speed as
   mmdet3d does for camera detectors.
2. **Matching-based AP** (synthetic worlds and any split the devkit cannot name; a synthetic world's scene names
   collide with official split names but not its membership): the devkit's own ``accumulate`` / ``calc_ap`` /
   ``calc_tp`` on ``EvalBoxes`` of ``DetectionBox`` built in the ego frame, without its split machinery. Formula
   (:data:`MATCHING_FORMULA`): per class c and threshold d in {0.5, 1, 2, 4} m, predictions sorted by score are
   greedily matched to the nearest unmatched GT of class c by BEV centre distance, a match when < d; precision is
   interpolated at 101 recall points and AP = mean over recall > 0.1 of max(precision - 0.1, 0) / 0.9
   (nuScenes' min_recall = min_precision = 0.1); AP_c = mean over d; mAP = mean of AP_c over the classes with GT
   in the evaluated samples. TP errors (ATE, ASE, AOE, AVE) at d = 2 m as the devkit computes them;
   NDS = (5 mAP + sum over the 4 TP errors of (1 - min(1, mTP))) / 9: nuScenes' NDS without the attribute term.
   Evaluated boxes: GT agents with >= 1 lidar point inside the perception range (x in [-30, 30], y in [-15, 15] m,
   what the head is trained to detect), predictions inside the same range.

Shapes: boxes ``(N, 7)`` x, y, z, w, l, h, yaw in the sample's ego frame (x forward, y left, metres); labels
``(N,)`` indices of ``constants.DETECTION_CLASSES`` (the nuScenes detection names); scores ``(N,)``; velocities
``(N, 2)`` vx, vy in the ego frame, m/s (NaN where unknown).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dima_core.constants import DETECTION_CLASSES, PERCEPTION_X_RANGE, PERCEPTION_Y_RANGE
from dima_core.data.sample import DrivingSample

DISTANCE_THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)  # metres, nuScenes detection config
TP_THRESHOLD = 2.0  # metres, nuScenes dist_th_tp
MIN_RECALL = 0.1
MIN_PRECISION = 0.1
TP_METRICS: tuple[str, ...] = ("trans_err", "scale_err", "orient_err", "vel_err")

MATCHING_FORMULA = (
    "matching-based detection AP (nuscenes-devkit accumulate/calc_ap/calc_tp on ego-frame boxes, no split "
    "machinery): per class c and BEV centre-distance threshold d in {0.5, 1, 2, 4} m, predictions sorted by score "
    "are greedily matched to the nearest unmatched GT of class c (match when distance < d); precision interpolated "
    "at 101 recall points; AP = mean over recall > 0.1 of max(precision - 0.1, 0) / 0.9; AP_c = mean over d; "
    "mAP = mean of AP_c over classes with GT in the evaluated samples. TP errors ATE/ASE/AOE/AVE at d = 2 m as the "
    "devkit (AOE period pi for barrier; no AOE/AVE for traffic_cone, no AVE for barrier). "
    "NDS = (5 mAP + sum over ATE, ASE, AOE, AVE of (1 - min(1, mTP))) / 9 (nuScenes NDS without the attribute term: "
    "the head predicts no attributes). Evaluated: GT boxes with >= 1 lidar point and centres in the perception range "
    "x in [-30, 30] m, y in [-15, 15] m (ego frame); predictions with centres in the same range."
)
DEVKIT_FORMULA = (
    "nuscenes-devkit DetectionEval (detection_cvpr_2019 config) on the official split: mAP over the 10 classes at "
    "centre distances {0.5, 1, 2, 4} m, NDS = (5 mAP + sum over 5 TP errors of (1 - min(1, mTP))) / 10; "
    "predictions submitted in the global frame; attributes filled from class and speed (mmdet3d's rule)."
)

# mmdet3d's default attribute per class, used when a box is (nearly) static; the head predicts no attributes.
_DEFAULT_ATTRIBUTE = {
    "car": "vehicle.parked",
    "truck": "vehicle.parked",
    "bus": "vehicle.moving",
    "trailer": "vehicle.parked",
    "construction_vehicle": "vehicle.parked",
    "pedestrian": "pedestrian.standing",
    "motorcycle": "cycle.without_rider",
    "bicycle": "cycle.without_rider",
    "barrier": "",
    "traffic_cone": "",
}
_MOVING_ATTRIBUTE = {
    "car": "vehicle.moving",
    "truck": "vehicle.moving",
    "bus": "vehicle.moving",
    "trailer": "vehicle.moving",
    "construction_vehicle": "vehicle.moving",
    "pedestrian": "pedestrian.moving",
    "motorcycle": "cycle.with_rider",
    "bicycle": "cycle.with_rider",
    "barrier": "",
    "traffic_cone": "",
}
_MOVING_SPEED = 0.2  # m/s, mmdet3d's threshold


@dataclass
class DetectionFrame:
    """Boxes of one keyframe in its ego frame (see the module docstring for the shapes). ``scores`` is None for GT."""

    boxes: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None
    velocities: np.ndarray | None = None

    def __len__(self) -> int:
        return int(len(self.boxes))


def _in_range(xy: np.ndarray) -> np.ndarray:
    x, y = xy[:, 0], xy[:, 1]
    return (
        (x >= PERCEPTION_X_RANGE[0])
        & (x <= PERCEPTION_X_RANGE[1])
        & (y >= PERCEPTION_Y_RANGE[0])
        & (y <= PERCEPTION_Y_RANGE[1])
    )


def gt_detections(sample: DrivingSample) -> DetectionFrame:
    """GT agents of ``sample`` that the matching-based AP evaluates (>= 1 lidar point, inside the perception range)."""
    agents = sample.agents
    boxes = np.asarray(agents.boxes, np.float64).reshape(-1, 7)
    keep = (np.asarray(agents.num_lidar_points) > 0) & _in_range(boxes[:, :2]) if len(boxes) else np.zeros(0, bool)
    return DetectionFrame(
        boxes=boxes[keep],
        labels=np.asarray(agents.labels, np.int64)[keep],
        velocities=np.asarray(agents.velocities, np.float64).reshape(-1, 2)[keep],
    )


def decode_detections(
    boxes: np.ndarray,
    scores: np.ndarray,
    velocities: np.ndarray,
    top_k: int | None = None,
    score_threshold: float = 0.0,
) -> DetectionFrame:
    """Detections of one frame from the agent head, as VAD/DETR3D's NMS-free coder decodes them.

    Args:
        boxes: (Na, 7) agent boxes; scores: (Na, C) sigmoid class scores; velocities: (Na, 2).
        top_k: keep the top_k (query, class) pairs of the flattened (Na * C) scores; None keeps Na of them.
        score_threshold: drop pairs scoring below it.

    Returns:
        DetectionFrame with one box per kept (query, class) pair, sorted by decreasing score.
    """
    num_queries, num_classes = scores.shape
    flat = scores.reshape(-1)
    k = min(num_queries if top_k is None else top_k, flat.size)
    order = np.argsort(-flat, kind="stable")[:k]
    order = order[flat[order] >= score_threshold]
    query, label = order // num_classes, order % num_classes
    return DetectionFrame(
        boxes=np.asarray(boxes, np.float64)[query],
        labels=label.astype(np.int64),
        scores=flat[order].astype(np.float64),
        velocities=np.asarray(velocities, np.float64)[query],
    )


def _eval_boxes(frames: Mapping[str, DetectionFrame], restrict_range: bool) -> Any:
    """``EvalBoxes`` of ``DetectionBox`` (ego frame: translation = box centre, ego_translation likewise)."""
    from nuscenes.eval.common.data_classes import EvalBoxes
    from nuscenes.eval.detection.data_classes import DetectionBox
    from pyquaternion import Quaternion

    out = EvalBoxes()
    for token, frame in frames.items():
        boxes = np.asarray(frame.boxes, np.float64).reshape(-1, 7)
        keep = _in_range(boxes[:, :2]) if restrict_range and len(boxes) else np.ones(len(boxes), bool)
        velocities = (
            np.asarray(frame.velocities, np.float64).reshape(-1, 2)
            if frame.velocities is not None
            else np.full((len(boxes), 2), np.nan)
        )
        items = []
        for i in np.flatnonzero(keep):
            b = boxes[i]
            items.append(
                DetectionBox(
                    sample_token=token,
                    translation=(float(b[0]), float(b[1]), float(b[2])),
                    size=(float(b[3]), float(b[4]), float(b[5])),  # devkit wlh, our order
                    rotation=tuple(Quaternion(axis=[0.0, 0.0, 1.0], angle=float(b[6])).elements),
                    velocity=(float(velocities[i, 0]), float(velocities[i, 1])),
                    ego_translation=(float(b[0]), float(b[1]), float(b[2])),
                    detection_name=DETECTION_CLASSES[int(frame.labels[i])],
                    detection_score=float(frame.scores[i]) if frame.scores is not None else -1.0,
                )
            )
        out.add_boxes(token, items)
    return out


def matching_detection_ap(
    gt: Mapping[str, DetectionFrame],
    predictions: Mapping[str, DetectionFrame],
    thresholds: Sequence[float] = DISTANCE_THRESHOLDS,
    restrict_predictions_to_range: bool = True,
) -> dict[str, Any]:
    """Matching-based mAP / NDS (formula in the module docstring) over the tokens of ``gt``.

    Args:
        gt: sample token -> GT boxes (already filtered, e.g. by :func:`gt_detections`).
        predictions: sample token -> predicted boxes with scores; tokens absent here have no predictions.
        thresholds: centre-distance thresholds, metres.
        restrict_predictions_to_range: drop predictions centred outside the perception range.

    Returns:
        ``{"method", "mAP", "NDS", "per_class": {class: {"ap": {"0.5": ..}, "ap_mean": .., "num_gt": n}},
        "tp_errors": {"mATE": .., ...}, "num_samples", "num_gt", "num_predictions", "formula"}``; classes without
        GT have ``ap_mean`` None and are left out of the means.
    """
    from nuscenes.eval.common.utils import center_distance
    from nuscenes.eval.detection.algo import accumulate, calc_ap, calc_tp

    tokens = list(gt)
    gt_boxes = _eval_boxes(gt, restrict_range=False)
    pred_boxes = _eval_boxes(
        {t: predictions[t] for t in tokens if t in predictions}, restrict_range=restrict_predictions_to_range
    )
    for token in tokens:  # every evaluated sample present on both sides, as the devkit expects
        if token not in pred_boxes.boxes:
            pred_boxes.add_boxes(token, [])
    per_class: dict[str, Any] = {}
    tp_per_class: dict[str, dict[str, float]] = {}
    for name in DETECTION_CLASSES:
        num_gt = sum(1 for b in gt_boxes.all if b.detection_name == name)
        entry: dict[str, Any] = {"num_gt": num_gt, "ap": {}, "ap_mean": None}
        if num_gt:
            aps = []
            for d in thresholds:
                md = accumulate(gt_boxes, pred_boxes, name, center_distance, d)
                ap = calc_ap(md, MIN_RECALL, MIN_PRECISION)
                entry["ap"][f"{d:g}"] = ap
                aps.append(ap)
                if d == TP_THRESHOLD:
                    tp_per_class[name] = {}
                    for metric in TP_METRICS:
                        skip = (name == "traffic_cone" and metric in ("orient_err", "vel_err")) or (
                            name == "barrier" and metric == "vel_err"
                        )
                        tp_per_class[name][metric] = float("nan") if skip else calc_tp(md, MIN_RECALL, metric)
            entry["ap_mean"] = float(np.mean(aps))
        per_class[name] = entry
    class_aps = [e["ap_mean"] for e in per_class.values() if e["ap_mean"] is not None]
    mean_ap = float(np.mean(class_aps)) if class_aps else 0.0
    tp_errors: dict[str, float | None] = {}
    for metric, key in zip(TP_METRICS, ("mATE", "mASE", "mAOE", "mAVE"), strict=True):
        values = [v[metric] for v in tp_per_class.values() if np.isfinite(v[metric])]
        # No class with this error defined: the devkit counts the error as 1 (worst), so NDS gets nothing from it.
        tp_errors[key] = float(np.mean(values)) if values else 1.0
    nds = (5.0 * mean_ap + sum(1.0 - min(1.0, float(v)) for v in tp_errors.values())) / 9.0
    return {
        "method": "matching",
        "mAP": mean_ap,
        "NDS": float(nds),
        "per_class": per_class,
        "tp_errors": tp_errors,
        "num_samples": len(tokens),
        "num_gt": len(gt_boxes.all),
        "num_predictions": len(pred_boxes.all),
        "thresholds_m": [float(d) for d in thresholds],
        "formula": MATCHING_FORMULA,
    }


# ------------------------------------------------------------------------------------------------- devkit path


def devkit_split_name(reader: Any, split: str | None) -> str | None:
    """The devkit ``eval_set`` for our ``split`` when ``DetectionEval`` can evaluate it, else None.

    Only real nuScenes versions whose split membership comes from the devkit's ``create_splits_scenes``
    (``reader.splits.source``) qualify: a synthetic world's ``synth_meta.json`` reuses official scene names with
    another membership, and a custom ``splits.json`` is not what the devkit's ``load_gt`` reads.
    """
    from dima_core.data.splits import OFFICIAL_SPLITS

    mapping = OFFICIAL_SPLITS.get(reader.version)
    if split is None or mapping is None or not reader.splits.source.startswith("nuscenes-devkit create_splits_scenes"):
        return None
    for devkit_name, ours in mapping.items():
        if ours == split and devkit_name != "test":  # test has no public annotations
            return devkit_name
    return None


def _attribute(name: str, velocity: np.ndarray) -> str:
    speed = float(np.hypot(*velocity)) if np.isfinite(velocity).all() else 0.0
    return (_MOVING_ATTRIBUTE if speed > _MOVING_SPEED else _DEFAULT_ATTRIBUTE)[name]


def submission_boxes(frame: DetectionFrame, token: str, ego_to_global: np.ndarray) -> list[dict[str, Any]]:
    """nuScenes submission entries (GLOBAL frame) for one frame's ego-frame predictions.

    Position: ``ego_to_global @ [x, y, z, 1]``; rotation: ``R_ego_to_global * Rz(yaw)`` as a (w, x, y, z)
    quaternion; velocity: the ego-frame (vx, vy) rotated by ``R_ego_to_global`` (the devkit's global-frame velocity).
    """
    from pyquaternion import Quaternion

    transform = np.asarray(ego_to_global, np.float64)
    rot = transform[:3, :3]
    ego_q = Quaternion(matrix=rot, rtol=1e-5, atol=1e-6)
    velocities = np.asarray(frame.velocities, np.float64) if frame.velocities is not None else np.zeros((len(frame), 2))
    entries = []
    for i in range(len(frame)):
        b = np.asarray(frame.boxes[i], np.float64)
        centre = rot @ b[:3] + transform[:3, 3]
        q = ego_q * Quaternion(axis=[0.0, 0.0, 1.0], angle=float(b[6]))
        v = np.nan_to_num(velocities[i])
        v_global = rot @ np.array([v[0], v[1], 0.0])
        name = DETECTION_CLASSES[int(frame.labels[i])]
        entries.append(
            {
                "sample_token": token,
                "translation": centre.tolist(),
                "size": b[3:6].tolist(),
                "rotation": list(q.elements),
                "velocity": v_global[:2].tolist(),
                "detection_name": name,
                "detection_score": float(frame.scores[i]) if frame.scores is not None else 1.0,
                "attribute_name": _attribute(name, v),
            }
        )
    return entries


def devkit_detection_eval(
    nusc: Any,
    predictions: Mapping[str, DetectionFrame],
    ego_to_global: Mapping[str, np.ndarray],
    eval_set: str,
    output_dir: str | os.PathLike,
) -> dict[str, Any]:
    """Run the devkit's ``DetectionEval`` on ``predictions`` (every sample of ``eval_set`` must be present).

    Writes the submission JSON and the devkit's outputs under ``output_dir``; returns ``{"method", "mAP", "NDS",
    "per_class": {class: {"ap": {...}, "ap_mean"}}, "tp_errors", "formula", "submission"}``.
    """
    from nuscenes.eval.common.config import config_factory
    from nuscenes.eval.detection.evaluate import DetectionEval

    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    # Max 500 boxes per sample (the devkit's limit); our top-k is at most the number of queries.
    submission = {
        "meta": {"use_camera": True, "use_lidar": False, "use_radar": False, "use_map": False, "use_external": False},
        "results": {
            token: submission_boxes(frame, token, ego_to_global[token])[:500] for token, frame in predictions.items()
        },
    }
    path = output_dir / "detection_submission.json"
    path.write_text(json.dumps(submission), encoding="utf-8")
    evaluator = DetectionEval(
        nusc, config_factory("detection_cvpr_2019"), str(path), eval_set, output_dir=str(output_dir), verbose=False
    )
    metrics, _ = evaluator.evaluate()
    summary = metrics.serialize()
    per_class = {
        name: {
            "ap": {f"{float(d):g}": float(v) for d, v in summary["label_aps"][name].items()},
            "ap_mean": float(summary["mean_dist_aps"][name]),
        }
        for name in summary["mean_dist_aps"]
    }
    tp_names = {"trans_err": "mATE", "scale_err": "mASE", "orient_err": "mAOE", "vel_err": "mAVE", "attr_err": "mAAE"}
    return {
        "method": "nuscenes-devkit",
        "eval_set": eval_set,
        "mAP": float(summary["mean_ap"]),
        "NDS": float(summary["nd_score"]),
        "per_class": per_class,
        "tp_errors": {tp_names[k]: float(v) for k, v in summary["tp_errors"].items()},
        "num_samples": len(predictions),
        "formula": DEVKIT_FORMULA,
        "submission": str(path),
    }


__all__ = [
    "DEVKIT_FORMULA",
    "DISTANCE_THRESHOLDS",
    "DetectionFrame",
    "MATCHING_FORMULA",
    "decode_detections",
    "devkit_detection_eval",
    "devkit_split_name",
    "gt_detections",
    "matching_detection_ap",
    "submission_boxes",
]
