"""Reads nuScenes (real or synthetic) keyframes into :class:`DrivingSample`, through nuscenes-devkit only.

    reader = NuScenesReader("data/nuscenes", "v1.0-mini")
    for token in reader.sample_tokens(split="val"):
        sample = reader.build_sample(token)

Frames (docs/design.md, Frames and shapes): the ego frame is the ``ego_pose`` of the keyframe's reference sensor
sample_data (LIDAR_TOP when the sample has it, else CAM_FRONT). ``CameraView.cam_to_ego`` maps the camera into
*that* frame, including the ego motion between the camera's own capture time and the reference time (camera ->
camera-time ego -> global -> reference ego), as VAD/BEVFormer's ``sensor2lidar``; for synchronous data it is the
calibration.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
from nuscenes import NuScenes
from nuscenes.can_bus.can_bus_api import NuScenesCanBus
from nuscenes.map_expansion.map_api import NuScenesMap

from dima_core.constants import CAMERA_NAMES, FUTURE_STEPS, LIDAR_NAME, PAST_STEPS
from dima_core.data.agents import build_agents
from dima_core.data.config import DataConfig
from dima_core.data.ego_motion import (
    CanPoseSeries,
    driving_command,
    ego_status_from_poses,
    relative_trajectory,
)
from dima_core.data.geometry import invert, record_to_matrix
from dima_core.data.sample import CameraView, DrivingSample, EgoStatus, VectorMap
from dima_core.data.splits import SceneSplits, load_scene_splits
from dima_core.data.vector_map import MapVectorizer

logger = logging.getLogger(__name__)

REFERENCE_SENSORS: tuple[str, ...] = (LIDAR_NAME, "CAM_FRONT")


class NuScenesReader:
    """Devkit-backed reader of keyframe samples.

    Args:
        dataroot: dataset root (``<dataroot>/<version>/*.json``, ``samples/``, ``maps/expansion/``).
        version: table version, e.g. ``v1.0-mini``.
        can_bus_root: folder that holds ``can_bus/``; defaults to ``dataroot``.
        use_can_bus: read ego status from CAN-bus ``pose`` messages when the scene has them.
        can_bus_max_gap_s: use the CAN bus only when a message lies within this time of the sample.
        ego_status_min_dt_s: finite-difference ego status uses neighbouring reference poses at least this far apart
            in time (with 20 Hz lidar sweeps: about 0.2 s; keyframe-only data: the adjacent keyframes).
        map_points: points per map vector.
        with_map: build the vector map (needs ``maps/expansion/<location>.json``).
        longtail_token_files: token-list JSON files whose keys become sample tags.
        nusc: an already loaded ``NuScenes`` for this dataroot/version (tables load once per process).
    """

    def __init__(
        self,
        dataroot: str | os.PathLike,
        version: str,
        *,
        can_bus_root: str | os.PathLike | None = None,
        use_can_bus: bool = True,
        can_bus_max_gap_s: float = 0.25,
        ego_status_min_dt_s: float = 0.2,
        map_points: int = 20,
        with_map: bool = True,
        longtail_token_files: Sequence[str | os.PathLike] = (),
        nusc: NuScenes | None = None,
    ):
        self.dataroot = str(Path(dataroot).resolve())
        self.version = version
        if not Path(self.dataroot, version).is_dir():
            raise FileNotFoundError(f"no nuScenes tables at {Path(self.dataroot, version)} (dataroot/version)")
        self.nusc = nusc if nusc is not None else NuScenes(version=version, dataroot=self.dataroot, verbose=False)
        self.map_points = map_points
        self.with_map = with_map
        self.can_bus_max_gap_us = int(round(can_bus_max_gap_s * 1e6))
        self.ego_status_min_dt_us = int(round(ego_status_min_dt_s * 1e6))
        self.longtail_token_files = [str(Path(p).resolve()) for p in longtail_token_files]
        self.splits: SceneSplits = load_scene_splits(self.dataroot, version, self.longtail_token_files)

        can_root = Path(can_bus_root) if can_bus_root is not None else Path(self.dataroot)
        self.can_bus: NuScenesCanBus | None = None
        if use_can_bus and (can_root / "can_bus").is_dir():
            self.can_bus = NuScenesCanBus(dataroot=str(can_root))
        self._can_series: dict[str, CanPoseSeries | None] = {}
        self._vectorizers: dict[str, MapVectorizer] = {}

    @classmethod
    def from_config(cls, cfg: DataConfig, nusc: NuScenes | None = None) -> NuScenesReader:
        return cls(
            cfg.dataroot,
            cfg.version,
            can_bus_root=cfg.can_bus_root,
            use_can_bus=cfg.use_can_bus,
            can_bus_max_gap_s=cfg.can_bus_max_gap_s,
            ego_status_min_dt_s=cfg.ego_status_min_dt_s,
            map_points=cfg.map_points_per_vector,
            with_map=cfg.with_map,
            longtail_token_files=cfg.longtail_token_files,
            nusc=nusc,
        )

    # ------------------------------------------------------------------ enumeration

    def scene_names(self, split: str | None = None) -> list[str]:
        """Scene names in table order, optionally only those of ``split``."""
        return [s["name"] for s in self.nusc.scene if split is None or self.splits.split_of(s["name"]) == split]

    def sample_tokens(self, split: str | None = None) -> list[str]:
        """Keyframe sample tokens, scene by scene in time order; only scenes of ``split`` when given."""
        tokens: list[str] = []
        for scene in self.nusc.scene:
            if split is not None and self.splits.split_of(scene["name"]) != split:
                continue
            token = scene["first_sample_token"]
            while token:
                tokens.append(token)
                token = self.nusc.get("sample", token)["next"]
        return tokens

    def iter_samples(self, split: str | None = None) -> Iterator[DrivingSample]:
        for token in self.sample_tokens(split):
            yield self.build_sample(token)

    # ------------------------------------------------------------------ building blocks

    def reference_sample_data(self, sample: dict) -> dict:
        """The sample_data record whose ego pose defines the sample's ego frame."""
        for channel in REFERENCE_SENSORS:
            if channel in sample["data"]:
                return self.nusc.get("sample_data", sample["data"][channel])
        raise ValueError(f"sample {sample['token']} has none of the reference sensors {REFERENCE_SENSORS}")

    def ego_pose_matrix(self, sample: dict) -> np.ndarray:
        """(4, 4) ego_to_global of the sample's reference sensor."""
        sd = self.reference_sample_data(sample)
        return record_to_matrix(self.nusc.get("ego_pose", sd["ego_pose_token"]))

    def keyframes(self, sample: dict, direction: str, steps: int) -> list[dict | None]:
        """``steps`` samples following ``direction`` ('next' or 'prev') from ``sample``; None past the scene end."""
        out: list[dict | None] = []
        current: dict | None = sample
        for _ in range(steps):
            token = current[direction] if current is not None else ""
            current = self.nusc.get("sample", token) if token else None
            out.append(current)
        return out

    def cameras(self, sample: dict, ego_to_global: np.ndarray) -> list[CameraView]:
        """The six camera views in CAMERA_NAMES order; raises when one is missing."""
        global_to_ego = invert(ego_to_global)
        views = []
        for name in CAMERA_NAMES:
            if name not in sample["data"]:
                raise ValueError(f"sample {sample['token']} has no {name} image (need all of {CAMERA_NAMES})")
            sd = self.nusc.get("sample_data", sample["data"][name])
            calib = self.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
            cam_ego_to_global = record_to_matrix(self.nusc.get("ego_pose", sd["ego_pose_token"]))
            cam_to_ego = global_to_ego @ cam_ego_to_global @ record_to_matrix(calib)
            views.append(
                CameraView(
                    name=name,
                    image_path=os.path.abspath(self.nusc.get_sample_data_path(sd["token"])),
                    intrinsic=np.asarray(calib["camera_intrinsic"], np.float64).reshape(3, 3),
                    cam_to_ego=cam_to_ego,
                    width=int(sd["width"]),
                    height=int(sd["height"]),
                    timestamp_us=int(sd["timestamp"]),
                    sample_data_token=sd["token"],
                )
            )
        return views

    def _can_pose_series(self, scene_name: str) -> CanPoseSeries | None:
        if self.can_bus is None:
            return None
        if scene_name not in self._can_series:
            series = None
            try:
                series = CanPoseSeries.from_messages(
                    self.can_bus.get_messages(scene_name, "pose", print_warnings=False)
                )
            except FileNotFoundError:
                pass  # the expansion does not cover this scene
            except Exception as exc:  # the devkit signals "no CAN data" with AssertionError or a bare Exception
                # Scene names outside scene-NNNN, blacklisted scenes without CAN data, empty message lists.
                logger.debug("no CAN-bus pose for %s: %s", scene_name, exc)
            self._can_series[scene_name] = series
        return self._can_series[scene_name]

    def _pose_window(self, ref_sd: dict) -> tuple[list[float], list[np.ndarray], int]:
        """Reference-sensor poses around ``ref_sd`` for finite differences: (times s, ego_to_global, current index).

        Takes the first neighbour at least ``ego_status_min_dt_s`` away on each side; at a scene end, two on the
        remaining side so that acceleration is still defined.
        """

        def walk(sd: dict, direction: str, count: int) -> list[dict]:
            found: list[dict] = []
            anchor_time = sd["timestamp"]
            current = sd
            while len(found) < count and current[direction]:
                current = self.nusc.get("sample_data", current[direction])
                if abs(current["timestamp"] - anchor_time) >= self.ego_status_min_dt_us:
                    found.append(current)
                    anchor_time = current["timestamp"]
            return found

        before = walk(ref_sd, "prev", 1)
        after = walk(ref_sd, "next", 1)
        if not before and after:
            after = walk(ref_sd, "next", 2)
        elif before and not after:
            before = walk(ref_sd, "prev", 2)
        window = [*reversed(before), ref_sd, *after]
        times = [sd["timestamp"] * 1e-6 for sd in window]
        poses = [record_to_matrix(self.nusc.get("ego_pose", sd["ego_pose_token"])) for sd in window]
        return times, poses, len(before)

    def ego_status(self, scene_name: str, ref_sd: dict) -> EgoStatus:
        """CAN-bus ego status when the scene has it near the sample time, else finite differences of ego poses."""
        series = self._can_pose_series(scene_name)
        if series is not None:
            status = series.ego_status(int(ref_sd["timestamp"]), self.can_bus_max_gap_us)
            if status is not None:
                return status
        times, poses, current = self._pose_window(ref_sd)
        return ego_status_from_poses(times, poses, current)

    def vector_map(self, location: str, ego_to_global: np.ndarray) -> VectorMap:
        if not self.with_map:
            return VectorMap(np.zeros((0, self.map_points, 2), np.float32), np.zeros((0,), np.int64))
        if location not in self._vectorizers:
            path = Path(self.dataroot, "maps", "expansion", f"{location}.json")
            if not path.is_file():
                raise FileNotFoundError(
                    f"map expansion {path} not found: install the nuScenes map expansion or build with with_map=False"
                )
            nusc_map = NuScenesMap(dataroot=self.dataroot, map_name=location)
            self._vectorizers[location] = MapVectorizer.from_nusc_map(nusc_map, num_points=self.map_points)
        return self._vectorizers[location](ego_to_global)

    # ------------------------------------------------------------------ the sample

    def build_sample(self, token: str) -> DrivingSample:
        """Everything about keyframe ``token`` as a DrivingSample (frames and shapes: dima_core.data.sample)."""
        sample = self.nusc.get("sample", token)
        scene = self.nusc.get("scene", sample["scene_token"])
        location = self.nusc.get("log", scene["log_token"])["location"]
        ref_sd = self.reference_sample_data(sample)
        ego_to_global = record_to_matrix(self.nusc.get("ego_pose", ref_sd["ego_pose_token"]))

        future_samples = self.keyframes(sample, "next", FUTURE_STEPS)
        past_samples = self.keyframes(sample, "prev", PAST_STEPS)[::-1]  # oldest first
        future_xy, future_yaw, future_mask = relative_trajectory(
            ego_to_global, [self.ego_pose_matrix(s) if s is not None else None for s in future_samples]
        )
        past_xy, _, past_mask = relative_trajectory(
            ego_to_global, [self.ego_pose_matrix(s) if s is not None else None for s in past_samples]
        )
        if not past_mask.all():
            # relative_trajectory pads forward in time, but a truncated past is missing at its *old* end: hold the
            # oldest valid position there instead (the current position when there is no past at all).
            valid = np.flatnonzero(past_mask)
            past_xy[~past_mask] = past_xy[valid[0]] if valid.size else 0.0

        return DrivingSample(
            token=token,
            scene_token=scene["token"],
            scene_name=scene["name"],
            location=location,
            timestamp_us=int(sample["timestamp"]),
            prev_token=sample["prev"],
            next_token=sample["next"],
            cameras=self.cameras(sample, ego_to_global),
            ego_to_global=ego_to_global,
            ego_status=self.ego_status(scene["name"], ref_sd),
            ego_future=future_xy,
            ego_future_yaw=future_yaw,
            ego_future_mask=future_mask,
            ego_past=past_xy,
            ego_past_mask=past_mask,
            command=driving_command(future_xy, future_mask),
            agents=build_agents(
                self.nusc, sample, ego_to_global, [s["token"] if s is not None else None for s in future_samples]
            ),
            vector_map=self.vector_map(location, ego_to_global),
            split=self.splits.split_of(scene["name"]),
            tags=self.splits.tags_of(scene["name"], token),
        )


__all__ = ["NuScenesReader", "REFERENCE_SENSORS"]
