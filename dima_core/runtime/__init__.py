"""ROS-free logic of the deployment nodes, unit-testable without rclpy.

- :mod:`~dima_core.runtime.config`: ``PlannerNodeConfig`` (every planner node parameter, typed, with ranges)
- :mod:`~dima_core.runtime.frame_sync`: CAM_FRONT-anchored frame-set synchroniser with explicit failure reasons
- :mod:`~dima_core.runtime.preprocess`: decoding, the training resize/normalisation, calibration, backend inputs
- :mod:`~dima_core.runtime.postprocess`: selected trajectory as Autoware-style points, decoded BEAM outputs
"""

from __future__ import annotations

from typing import Any, Iterable

from dima_core.runtime.config import PlannerNodeConfig


def calibration_parameters(cameras: Iterable[Any]) -> dict[str, Any]:
    """``{"calibration": {CAM: {intrinsics, width, height, cam_to_ego}}}`` from dataset camera views.

    ``cameras`` are objects with ``name``, ``intrinsic`` (3x3), ``width``, ``height`` and ``cam_to_ego`` (4x4), e.g.
    ``DrivingSample.cameras``: the nuScenes ``calibrated_sensor`` of a scene, ready to be written into the node's
    ``ros__parameters`` (so the node uses the calibration the model was trained with).
    """
    import numpy as np

    out: dict[str, Any] = {}
    for cam in cameras:
        out[cam.name] = {
            "intrinsics": [float(v) for v in np.asarray(cam.intrinsic, np.float64).reshape(-1)],
            "width": int(cam.width),
            "height": int(cam.height),
            "cam_to_ego": [float(v) for v in np.asarray(cam.cam_to_ego, np.float64).reshape(-1)],
        }
    return {"calibration": out}


__all__ = ["PlannerNodeConfig", "calibration_parameters"]
