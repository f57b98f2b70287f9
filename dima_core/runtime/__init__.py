"""ROS-free logic of the deployment nodes (planner, MLLM, evaluator, simulator), unit-testable without rclpy.

The nodes in ``dima_ros`` own the ROS side (subscriptions, publishers, message conversion, threads, diagnostics);
the logic they run lives here.

Planner node:

- :mod:`~dima_core.runtime.config`: ``PlannerNodeConfig`` (every planner node parameter, typed, with ranges) and
  :func:`~dima_core.runtime.config.param`, the field helper of the node configs (ranges, read-only)
- :mod:`~dima_core.runtime.frame_sync`: CAM_FRONT-anchored frame-set synchroniser with explicit failure reasons
- :mod:`~dima_core.runtime.image_format`: what a ``CompressedImage`` holds (format checked against the bytes) and
  its decoding, optionally at a reduced JPEG scale
- :mod:`~dima_core.runtime.preprocess`: decoding, the training resize/normalisation, calibration, ego status,
  temporal state and the backend input dict
- :mod:`~dima_core.runtime.postprocess`: selected trajectory as Autoware-style points, decoded BEAM outputs
- :mod:`~dima_core.runtime.input_error`: ``InputError``, the one error type of the input path

MLLM node:

- :mod:`~dima_core.runtime.mllm_node_config`: ``MllmNodeConfig``
- :mod:`~dima_core.runtime.mllm_service`: the BEAM token buffer and the question worker behind ``~/ask``
- :mod:`~dima_core.runtime.dual_planner`: the DiMA-Dual trajectory from one BEAM token frame, newest frame only

Evaluator node, simulator node, bringup:

- :mod:`~dima_core.runtime.online_eval`: ``EvaluatorNodeConfig`` and ``OnlineEvaluator`` (pairing by exact stamp,
  the ``dima eval`` metric code)
- :mod:`~dima_core.runtime.sim_node_config`: ``SimNodeConfig`` and the setup the simulator node, ``dima ros bringup
  --sim`` and ``launch/sim_closed_loop.launch.py`` share
- :mod:`~dima_core.runtime.bringup_config`: ``BringupConfig``, what ``dima ros bringup --config`` starts
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from dima_core.runtime.config import PlannerNodeConfig

if TYPE_CHECKING:
    from dima_core.data.sample import CameraView


def calibration_parameters(cameras: Iterable[CameraView]) -> dict[str, Any]:
    """``{"calibration": {CAM: {intrinsics, width, height, cam_to_ego}}}`` from dataset camera views.

    ``cameras`` are :class:`~dima_core.data.sample.CameraView` (``name``, ``intrinsic`` (3, 3), ``width``,
    ``height``, ``cam_to_ego`` (4, 4)), e.g. ``DrivingSample.cameras``: the nuScenes ``calibrated_sensor`` of a
    scene, ready to be written into the node's ``ros__parameters`` (so the node uses the calibration the model was
    trained with). Matrices are flattened row-major into lists of floats (9 and 16 values).
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
