"""Ground-truth agents of a keyframe in its ego frame, through the devkit (``get_box``, ``box_velocity``).

Only annotations whose category has a nuScenes detection class (``category_to_detection_name``) are kept; e.g.
``movable_object.debris`` or ``human.pedestrian.stroller`` are dropped, as in the detection benchmark and VAD.
No range filtering happens here: the planning metric needs agents out to 50 m, while the dataset crops to the
perception range for training targets.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from nuscenes import NuScenes
from nuscenes.eval.detection.utils import category_to_detection_name

from dima_core.constants import DETECTION_CLASSES
from dima_core.data.geometry import invert, transform_points, yaw_of
from dima_core.data.sample import AgentAnnotations

_CLASS_INDEX = {name: i for i, name in enumerate(DETECTION_CLASSES)}


def detection_label(category_name: str) -> int | None:
    """Index into DETECTION_CLASSES of a full nuScenes category name, or None when it has no detection class."""
    name = category_to_detection_name(category_name)
    return None if name is None else _CLASS_INDEX[name]


def _visibility_level(nusc: NuScenes, token: str) -> int:
    """nuScenes visibility level 1..4 (the visibility table's tokens are "1".."4"); 0 when unknown."""
    if not token:
        return 0
    record = nusc.get("visibility", token)
    return int(record["token"]) if str(record["token"]).isdigit() else 0


def build_agents(
    nusc: NuScenes,
    sample: dict,
    ego_to_global: np.ndarray,
    future_sample_tokens: Sequence[str | None],
) -> AgentAnnotations:
    """GT agents of ``sample`` in the ego frame given by ``ego_to_global``.

    Args:
        nusc: the devkit database.
        sample: the devkit ``sample`` record.
        ego_to_global: (4, 4) pose of the current ego frame.
        future_sample_tokens: T sample tokens of the next keyframes (0.5 s .. T*0.5 s), None past the scene end.

    Returns:
        AgentAnnotations with boxes (N, 7) ``x, y, z, w, l, h, yaw``, velocities (N, 2) (devkit centred
        difference of annotation positions, rotated into the ego frame; NaN where the devkit gives none), and
        future centres (N, T, 2) + yaws (N, T) in the *current* ego frame, found by walking each annotation's
        ``next`` chain and placing it at the step of its sample (robust to gaps in a track). Missing future steps
        are zero with ``future_mask`` False.
    """
    global_to_ego = invert(ego_to_global)
    rot_g2e = global_to_ego[:3, :3]
    steps = len(future_sample_tokens)
    step_of_sample = {tok: k for k, tok in enumerate(future_sample_tokens) if tok}

    boxes, velocities, labels, categories, instances, ann_tokens = [], [], [], [], [], []
    visibility, num_pts, futures, future_yaws, future_masks = [], [], [], [], []
    for ann_token in sample["anns"]:
        ann = nusc.get("sample_annotation", ann_token)
        label = detection_label(ann["category_name"])
        if label is None:
            continue
        box = nusc.get_box(ann_token)  # global frame
        centre = transform_points(global_to_ego, box.center[None])[0]
        yaw = yaw_of(rot_g2e @ box.rotation_matrix)
        w, l, h = (float(v) for v in box.wlh)
        boxes.append([centre[0], centre[1], centre[2], w, l, h, yaw])
        velocities.append((rot_g2e @ nusc.box_velocity(ann_token))[:2])
        labels.append(label)
        categories.append(ann["category_name"])
        instances.append(ann["instance_token"])
        ann_tokens.append(ann_token)
        visibility.append(_visibility_level(nusc, ann.get("visibility_token", "")))
        num_pts.append(int(ann.get("num_lidar_pts", 0)))

        future = np.zeros((steps, 2), np.float32)
        future_yaw = np.zeros((steps,), np.float32)
        mask = np.zeros((steps,), bool)
        nxt = ann["next"]
        # Each link of the chain advances at least one keyframe, so `steps` links cover the horizon.
        for _ in range(steps):
            if not nxt:
                break
            future_ann = nusc.get("sample_annotation", nxt)
            k = step_of_sample.get(future_ann["sample_token"])
            if k is not None:
                future_box = nusc.get_box(nxt)
                future[k] = transform_points(global_to_ego, future_box.center[None])[0, :2]
                future_yaw[k] = yaw_of(rot_g2e @ future_box.rotation_matrix)
                mask[k] = True
            nxt = future_ann["next"]
        futures.append(future)
        future_yaws.append(future_yaw)
        future_masks.append(mask)

    if not boxes:
        empty = AgentAnnotations.empty()
        empty.future = np.zeros((0, steps, 2), np.float32)
        empty.future_mask = np.zeros((0, steps), bool)
        empty.future_yaw = np.zeros((0, steps), np.float32)
        return empty
    return AgentAnnotations(
        boxes=np.asarray(boxes, np.float32),
        velocities=np.asarray(velocities, np.float32),
        labels=np.asarray(labels, np.int64),
        category_names=categories,
        instance_tokens=instances,
        annotation_tokens=ann_tokens,
        visibility=np.asarray(visibility, np.int64),
        num_lidar_points=np.asarray(num_pts, np.int64),
        future=np.stack(futures).astype(np.float32),
        future_mask=np.stack(future_masks),
        future_yaw=np.stack(future_yaws).astype(np.float32),
    )


__all__ = ["build_agents", "detection_label"]
