"""Vector-map quality of the BEAM map head: Chamfer-distance AP as in MapTR / VAD.

Formula (:data:`MAP_FORMULA`). Both predicted and GT polylines (ego frame, metres) are resampled to
:data:`NUM_SAMPLE_POINTS` points equally spaced along their arc length (MapTR's evaluation resampling). For a
prediction P and a GT G the Chamfer distance is

    CD(P, G) = 1/2 * ( mean_{p in P} min_{g in G} |p - g| + mean_{g in G} min_{p in P} |p - g| )

which does not depend on the direction (or start point) of either polyline. Per class (divider, ped_crossing,
boundary) and threshold t in {0.5, 1.0, 1.5} m, following MapTR's ``tpfp``: predictions of the class, over all
samples, are sorted by decreasing score; each is assigned its nearest GT of the class in its sample (lowest CD);
it is a true positive when that CD <= t and the GT is not yet taken, else a false positive. AP is the area under
the precision envelope of the precision/recall curve (VOC "area" mode, mmdet's ``average_precision``). AP of a
class = mean over the three thresholds; mAP = mean over classes with GT in the evaluated samples (a class
without GT is reported as None).

Shapes: polylines ``(M, P, 2)`` x, y in the sample's ego frame; labels ``(M,)`` indices of
``constants.MAP_CLASSES``; scores ``(M,)``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dima_core.constants import MAP_CLASSES

CHAMFER_THRESHOLDS: tuple[float, ...] = (0.5, 1.0, 1.5)  # metres, MapTR / VAD
NUM_SAMPLE_POINTS = 100  # MapTR evaluates polylines resampled to 100 points

MAP_FORMULA = (
    "map AP (MapTR/VAD protocol): polylines resampled to 100 points equally spaced along arc length; "
    "CD(P, G) = (mean_p min_g |p-g| + mean_g min_p |p-g|) / 2 (direction-invariant); per class and threshold "
    "t in {0.5, 1.0, 1.5} m, predictions sorted by score are assigned their lowest-CD GT of the class in the same "
    "sample, TP when CD <= t and that GT is not yet taken, else FP; AP = area under the precision envelope "
    "(VOC area mode); class AP = mean over t; mAP = mean over classes with GT. Ego frame, metres."
)


@dataclass
class MapFrame:
    """Polylines of one keyframe in its ego frame. ``scores`` is None for GT."""

    polylines: np.ndarray
    labels: np.ndarray
    scores: np.ndarray | None = None

    def __len__(self) -> int:
        return int(len(self.polylines))


def resample_polyline(line: np.ndarray, num: int = NUM_SAMPLE_POINTS) -> np.ndarray:
    """(K, 2) polyline -> (num, 2) points equally spaced along its arc length (endpoints kept)."""
    line = np.asarray(line, np.float64).reshape(-1, 2)
    seg = np.linalg.norm(np.diff(line, axis=0), axis=1)
    arc = np.concatenate([[0.0], np.cumsum(seg)])
    if arc[-1] <= 0.0:  # degenerate (a point): every sample is that point
        return np.repeat(line[:1], num, axis=0)
    s = np.linspace(0.0, arc[-1], num)
    return np.stack([np.interp(s, arc, line[:, 0]), np.interp(s, arc, line[:, 1])], axis=1)


def chamfer_matrix(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(Np, Ng) Chamfer distances between resampled polylines pred (Np, S, 2) and gt (Ng, S, 2)."""
    if len(pred) == 0 or len(gt) == 0:
        return np.zeros((len(pred), len(gt)))
    out = np.empty((len(pred), len(gt)))
    for i, line in enumerate(pred):  # one prediction at a time bounds memory at (Ng, S, S) point distances
        d = np.linalg.norm(line[None, :, None, :] - gt[:, None, :, :], axis=-1)
        out[i] = 0.5 * (d.min(axis=2).mean(axis=1) + d.min(axis=1).mean(axis=1))
    return out


def average_precision_area(recall: np.ndarray, precision: np.ndarray) -> float:
    """VOC "area" AP: area under the monotone (non-increasing) envelope of the precision/recall curve."""
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    idx = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[idx + 1] - mrec[idx]) * mpre[idx + 1]))


def decode_map(polylines: np.ndarray, scores: np.ndarray, score_threshold: float = 0.0) -> MapFrame:
    """Map predictions of one frame: each query's best class and its score, optionally thresholded.

    Args:
        polylines: (Nm, P, 2); scores: (Nm, 3) sigmoid class scores.
    """
    labels = scores.argmax(axis=1)
    best = scores.max(axis=1)
    keep = best >= score_threshold
    return MapFrame(
        polylines=np.asarray(polylines, np.float64)[keep],
        labels=labels[keep].astype(np.int64),
        scores=best[keep].astype(np.float64),
    )


def gt_map(sample: Any) -> MapFrame:
    """GT vector map of a :class:`~dima_core.data.sample.DrivingSample` (already clipped to the perception range)."""
    vm = sample.vector_map
    return MapFrame(polylines=np.asarray(vm.polylines, np.float64), labels=np.asarray(vm.labels, np.int64))


def map_ap(
    gt: Mapping[str, MapFrame],
    predictions: Mapping[str, MapFrame],
    thresholds: Sequence[float] = CHAMFER_THRESHOLDS,
    num_points: int = NUM_SAMPLE_POINTS,
) -> dict[str, Any]:
    """Chamfer AP per map class and mAP over the tokens of ``gt`` (formula in the module docstring).

    Returns:
        ``{"mAP", "per_class": {class: {"ap": {"0.5": ..}, "ap_mean": .., "num_gt": n}}, "thresholds_m",
        "num_samples", "num_predictions", "formula"}``.
    """
    per_class: dict[str, Any] = {}
    num_predictions = 0
    for c, name in enumerate(MAP_CLASSES):
        # Per sample: the CD of each prediction of class c to its nearest GT of class c, and which GT that is.
        scores: list[float] = []
        nearest_cd: list[float] = []
        nearest_gt: list[tuple[str, int]] = []
        num_gt = 0
        for token, g in gt.items():
            gt_lines = [
                resample_polyline(l, num_points) for l, lab in zip(g.polylines, g.labels, strict=True) if lab == c
            ]
            num_gt += len(gt_lines)
            p = predictions.get(token)
            if p is None:
                continue
            sel = np.flatnonzero(np.asarray(p.labels) == c)
            pred_lines = np.asarray([resample_polyline(p.polylines[i], num_points) for i in sel]).reshape(
                len(sel), num_points, 2
            )
            cd = chamfer_matrix(pred_lines, np.asarray(gt_lines).reshape(len(gt_lines), num_points, 2))
            for row, i in enumerate(sel):
                scores.append(float(p.scores[i]) if p.scores is not None else 1.0)
                if len(gt_lines):
                    j = int(cd[row].argmin())
                    nearest_cd.append(float(cd[row, j]))
                    nearest_gt.append((token, j))
                else:
                    nearest_cd.append(float("inf"))
                    nearest_gt.append((token, -1))
        num_predictions += len(scores)
        entry: dict[str, Any] = {"num_gt": num_gt, "ap": {}, "ap_mean": None}
        if num_gt:
            order = np.argsort(-np.asarray(scores), kind="stable")
            aps = []
            for t in thresholds:
                taken: set[tuple[str, int]] = set()
                tp = np.zeros(len(order))
                for rank, i in enumerate(order):
                    if nearest_cd[i] <= t and nearest_gt[i] not in taken:
                        taken.add(nearest_gt[i])
                        tp[rank] = 1.0
                ctp, cfp = np.cumsum(tp), np.cumsum(1.0 - tp)
                recall = ctp / num_gt
                precision = ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps)
                ap = average_precision_area(recall, precision) if len(order) else 0.0
                entry["ap"][f"{t:g}"] = ap
                aps.append(ap)
            entry["ap_mean"] = float(np.mean(aps))
        per_class[name] = entry
    class_aps = [e["ap_mean"] for e in per_class.values() if e["ap_mean"] is not None]
    return {
        "mAP": float(np.mean(class_aps)) if class_aps else 0.0,
        "per_class": per_class,
        "thresholds_m": [float(t) for t in thresholds],
        "num_samples": len(gt),
        "num_predictions": num_predictions,
        "formula": MAP_FORMULA,
    }


__all__ = [
    "CHAMFER_THRESHOLDS",
    "MAP_FORMULA",
    "MapFrame",
    "NUM_SAMPLE_POINTS",
    "average_precision_area",
    "chamfer_matrix",
    "decode_map",
    "gt_map",
    "map_ap",
    "resample_polyline",
]
