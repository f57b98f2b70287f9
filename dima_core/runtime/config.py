"""Typed configuration of the planner node (``PlannerNodeConfig``), independent of ROS.

The ROS node declares one ROS parameter per leaf field (dotted names: ``sync.tolerance_ms``), with the description,
range and read-only flag given here (:func:`param`), so the parameter table, the YAML file
(``config/planner_node.yaml``) and the validation cannot drift: validation is :func:`dima_core.config.config_from_dict`
on this class, at start and on every ``set_parameters``.

ROS parameters have no null: an empty string stands for "not set" in the optional path fields, and an empty list for
"not given" in the per-camera calibration arrays.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from dima_core.constants import CAMERA_NAMES
from dima_core.export.backends import BackendConfig
from dima_core.export.precision import PrecisionName

_MISSING = dataclasses.MISSING


def param(
    default: Any = _MISSING,
    *,
    lo: float | None = None,
    hi: float | None = None,
    help: str = "",
    read_only: bool = False,
    default_factory: Any = _MISSING,
) -> Any:
    """A config field with the same metadata as :func:`dima_core.config.ranged` plus ``read_only``.

    ``read_only`` marks settings a running node cannot apply (model paths, topics, queue sizes): the ROS helper
    declares them read-only so ``ros2 param set`` is refused by ROS itself instead of being silently ignored.
    """
    metadata = {"lo": lo, "hi": hi, "help": help, "read_only": read_only}
    if default_factory is not _MISSING:
        return field(default_factory=default_factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class ModelParams:
    """Which backend runs the planner and where the model comes from (mapped onto ``BackendConfig``)."""

    backend: Literal["torch", "onnxruntime", "tensorrt"] = param(
        "onnxruntime", read_only=True, help="runtime backend: torch | onnxruntime | tensorrt (no silent fallback)"
    )
    device: Literal["auto", "cpu", "cuda"] = param(
        "auto", read_only=True, help="auto: cpu for torch/onnxruntime, cuda for tensorrt"
    )
    onnx_path: str = param("", read_only=True, help="exported ONNX model (onnxruntime / tensorrt); sidecar next to it")
    checkpoint_path: str = param("", read_only=True, help="torch backend: training checkpoint file or run directory")
    model_config_path: str = param(
        "", read_only=True, help="torch backend without checkpoint: model YAML, random weights (tests only)"
    )
    engine_dir: str = param(
        "", read_only=True, help="tensorrt engine cache directory; empty: $DIMA_ENGINE_CACHE or ~/.cache/dima/engines"
    )
    precision: PrecisionName = param(
        "auto",
        read_only=True,
        help="torch: autocast dtype (fp32, bf16; fp16 on cuda); onnxruntime: the model file's precision (fp32, int8; "
        "a file of another precision is refused); tensorrt: engine precision (fp16, fp32). auto: torch fp32, "
        "onnxruntime the file's own, tensorrt fp16",
    )
    threads: int = param(0, lo=0, hi=256, read_only=True, help="CPU threads for torch/onnxruntime; 0 = default")
    warmup_iters: int = param(3, lo=0, hi=1000, read_only=True, help="inferences run at start, before the first frame")

    def validate(self) -> None:
        self.backend_config().validate()

    def backend_config(self) -> BackendConfig:
        """The export package's :class:`BackendConfig` for these parameters."""
        return BackendConfig(
            backend=self.backend,
            device=None if self.device == "auto" else self.device,
            checkpoint=self.checkpoint_path or None,
            model_config=(self.model_config_path or None) if not self.checkpoint_path else None,
            onnx=self.onnx_path or None,
            precision=self.precision,
            engine_dir=self.engine_dir or None,
            threads=self.threads,
            warmup_iters=self.warmup_iters,
            with_beam=True,  # torch: return BEAM outputs (markers, beam_tokens); ONNX: decided at export time
        )


@dataclass
class InputParams:
    """How inputs arrive."""

    image_transport: Literal["compressed", "raw"] = param(
        "compressed",
        read_only=True,
        help="compressed: sensor_msgs/CompressedImage (JPEG/PNG); raw: sensor_msgs/Image (rgb8 or bgr8)",
    )
    camera_queue_size: int = param(
        4, lo=1, hi=100, read_only=True, help="frames kept per camera while waiting for the rest of a frame set"
    )
    odometry_queue_size: int = param(50, lo=1, hi=1000, read_only=True, help="odometry messages kept for matching")
    use_acceleration: bool = param(
        True, read_only=True, help="take ax, ay of the ego status from ~/input/acceleration (else 0)"
    )


@dataclass
class SyncParams:
    """Frame-set synchronisation anchored on CAM_FRONT (see :mod:`dima_core.runtime.frame_sync`): stamps decide
    when an input can no longer match; the two wall-clock bounds only end the wait for quiet or lagging inputs."""

    tolerance_ms: float = param(
        60.0, lo=0.0, hi=1000.0, help="max |camera stamp - CAM_FRONT stamp| for a camera to join a frame set"
    )
    max_wait_ms: float = param(
        300.0,
        lo=1.0,
        hi=10000.0,
        help="wall time a CAM_FRONT frame waits for an input that has gone quiet (nothing "
        "received for this long and for two of its own message intervals) before it is "
        "reported incomplete",
    )
    max_delay_ms: float = param(
        2000.0,
        lo=1.0,
        hi=60000.0,
        help="wall time a CAM_FRONT frame waits for inputs that are still publishing but "
        "have not reached its stamp yet (late odometry/command on a loaded machine)",
    )
    odometry_max_age_ms: float = param(
        150.0, lo=0.0, hi=5000.0, help="max |odometry stamp - CAM_FRONT stamp|; beyond: stale odometry"
    )
    command_policy: Literal["match", "latest"] = param(
        "match",
        help="match: the DrivingCommand stamped within tolerance_ms of CAM_FRONT (replay, evaluation); "
        "latest: the newest command not older than command_max_age_ms (live driving)",
    )
    command_max_age_ms: float = param(5000.0, lo=0.0, hi=600000.0, help="latest policy: max command age")
    reset_on_jump_back_s: float = param(
        2.0,
        lo=0.0,
        hi=3600.0,
        help="a CAM_FRONT stamp this far behind the last one resets the synchroniser (bag "
        "restarted, sim reset) instead of being rejected as backwards; 0 disables",
    )

    def validate(self) -> None:
        if self.max_delay_ms < self.max_wait_ms:
            raise ValueError(
                f"max_delay_ms ({self.max_delay_ms}) must be >= max_wait_ms ({self.max_wait_ms}): an "
                "input that is still publishing is waited for at least as long as a quiet one"
            )


@dataclass
class CameraCalibrationParams:
    """One camera's calibration from configuration (empty lists: not given)."""

    intrinsics: list[float] = param(
        default_factory=list, read_only=True, help="row-major 3x3 K of the full-size image (calibration.source config)"
    )
    width: int = param(0, lo=0, hi=16384, read_only=True, help="full-size image width the intrinsics refer to")
    height: int = param(0, lo=0, hi=16384, read_only=True, help="full-size image height")
    cam_to_ego: list[float] = param(
        default_factory=list, read_only=True, help="row-major 4x4 camera (optical) -> base_link transform"
    )

    def validate(self) -> None:
        if self.intrinsics and len(self.intrinsics) != 9:
            raise ValueError(f"intrinsics needs 9 values (row-major 3x3), got {len(self.intrinsics)}")
        if self.cam_to_ego and len(self.cam_to_ego) != 16:
            raise ValueError(f"cam_to_ego needs 16 values (row-major 4x4), got {len(self.cam_to_ego)}")
        if self.cam_to_ego and list(self.cam_to_ego[12:]) != [0.0, 0.0, 0.0, 1.0]:
            raise ValueError("cam_to_ego: last row must be 0 0 0 1")


@dataclass
class CalibrationParams:
    """Where intrinsics and extrinsics come from.

    ``camera_info``: intrinsics (and image size) from each camera's CameraInfo, extrinsics (``cam_to_ego``) from
    this configuration. ``config``: both from this configuration. Extrinsics come from configuration in both cases
    because the pip-only stack has no tf2_msgs (so no /tf_static subscription); copy them from the vehicle's
    calibration or nuScenes ``calibrated_sensor`` (:func:`dima_core.runtime.calibration_parameters` writes them).
    """

    source: Literal["camera_info", "config"] = param(
        "camera_info", read_only=True, help="camera_info | config (see docs/planner_node.md)"
    )
    CAM_FRONT: CameraCalibrationParams = field(default_factory=CameraCalibrationParams)
    CAM_FRONT_RIGHT: CameraCalibrationParams = field(default_factory=CameraCalibrationParams)
    CAM_FRONT_LEFT: CameraCalibrationParams = field(default_factory=CameraCalibrationParams)
    CAM_BACK: CameraCalibrationParams = field(default_factory=CameraCalibrationParams)
    CAM_BACK_LEFT: CameraCalibrationParams = field(default_factory=CameraCalibrationParams)
    CAM_BACK_RIGHT: CameraCalibrationParams = field(default_factory=CameraCalibrationParams)

    def camera(self, name: str) -> CameraCalibrationParams:
        return getattr(self, name)

    def validate(self) -> None:
        for cam in CAMERA_NAMES:
            c = self.camera(cam)
            if not c.cam_to_ego:
                raise ValueError(f"{cam}.cam_to_ego is required (16 values): extrinsics always come from config")
            if self.source == "config" and (not c.intrinsics or c.width <= 0 or c.height <= 0):
                raise ValueError(f"{cam}: calibration.source config needs intrinsics (9 values), width and height")


@dataclass
class OutputParams:
    """What is published, and how it is checked."""

    frame_id: str = param("base_link", read_only=True, help="frame of trajectory, path and markers")
    publish_beam_tokens: bool = param(True, help="publish ~/output/beam_tokens when the backend returns BEAM tokens")
    publish_candidates: bool = param(True, help="fill Trajectory.candidate_positions with all command modes")
    processing_time_budget_ms: float = param(
        200.0, lo=1.0, hi=60000.0, help="WARN in /diagnostics when one frame takes longer (decode + model + publish)"
    )
    diagnostics_period_s: float = param(
        1.0, lo=0.05, hi=60.0, read_only=True, help="period of the /diagnostics summary"
    )
    agent_score_threshold: float = param(0.3, lo=0.0, hi=1.0, help="markers: min agent class score to draw a box")
    map_score_threshold: float = param(0.3, lo=0.0, hi=1.0, help="markers: min map class score to draw a polyline")


@dataclass
class PreprocessParams:
    """Image preprocessing; must match the training data path (``DataConfig``) the model was trained with."""

    interpolation: Literal["linear", "area", "nearest", "cubic"] = param(
        "area", read_only=True, help="resize interpolation (DataConfig.interpolation of training)"
    )
    image_mean: list[float] = param(
        default_factory=lambda: [0.0, 0.0, 0.0],
        lo=0.0,
        hi=1.0,
        read_only=True,
        help="RGB mean on [0,1] pixels (DataConfig.image_mean; models normalise inside)",
    )
    image_std: list[float] = param(
        default_factory=lambda: [1.0, 1.0, 1.0],
        lo=1e-6,
        hi=10.0,
        read_only=True,
        help="RGB std on [0,1] pixels (DataConfig.image_std)",
    )
    # Default 8 by measurement (docs/benchmarks.md, Planner node input path): six 1600x900 JPEGs cost 2.6-3.8x less
    # on one core, at a mean difference under 1/255 from the training tensor (test_runtime_preprocess.py).
    jpeg_max_reduction: int = param(
        8,
        lo=1,
        hi=8,
        read_only=True,
        help="largest libjpeg reduction (1, 2, 4 or 8) a JPEG is decoded at: the largest whose image still covers the "
        "network input is used and only the remainder resized (needs interpolation area); 1 = full decode, the "
        "training path bit for bit",
    )
    # Default 2 by measurement (docs/benchmarks.md): 20-40 % shorter on 2 cores when the second one has room, within
    # a few per cent of 1 thread when other jobs fill it; the model runs after decoding, so its cores are free then.
    decode_threads: int = param(
        2,
        lo=1,
        hi=6,
        read_only=True,
        help="threads decoding the six cameras of a frame in parallel (OpenCV releases the GIL); 1 = in the worker "
        "thread",
    )

    def validate(self) -> None:
        if len(self.image_mean) != 3 or len(self.image_std) != 3:
            raise ValueError("image_mean and image_std need 3 values (R, G, B)")
        if self.jpeg_max_reduction not in (1, 2, 4, 8):
            raise ValueError(
                f"jpeg_max_reduction must be 1, 2, 4 or 8 (libjpeg's scales), got {self.jpeg_max_reduction}"
            )
        if self.jpeg_max_reduction > 1 and self.interpolation != "area":
            raise ValueError(
                f"jpeg_max_reduction {self.jpeg_max_reduction} needs interpolation area (a reduced JPEG "
                "decode averages blocks of pixels and would not match a "
                f"'{self.interpolation}' resize): set jpeg_max_reduction 1 (full decode)"
            )


@dataclass
class PlannerNodeConfig:
    """Every parameter of ``dima_ros.planner_node`` (ROS names are the dotted field paths)."""

    model: ModelParams = field(default_factory=ModelParams)
    inputs: InputParams = field(default_factory=InputParams)
    sync: SyncParams = field(default_factory=SyncParams)
    calibration: CalibrationParams = field(default_factory=CalibrationParams)
    preprocess: PreprocessParams = field(default_factory=PreprocessParams)
    output: OutputParams = field(default_factory=OutputParams)


__all__ = [
    "CalibrationParams",
    "CameraCalibrationParams",
    "InputParams",
    "ModelParams",
    "OutputParams",
    "PlannerNodeConfig",
    "PreprocessParams",
    "SyncParams",
    "param",
]
