"""nuScenes (real or synthetic) scenes -> a rosbag2 replay bag (ros2 profile, CDR, MCAP by default), ROS-free.

    summary = convert_scenes("data/nuscenes", "v1.0-mini", ["scene-0061"], "bags/scene-0061")

What is written, per keyframe only (nuScenes' 2 Hz annotated samples; sweeps are not read, nothing is interpolated
or invented between keyframes). Topic table and QoS: :mod:`dima_core.bag.topics`; stamps are the dataset's
microseconds x 1000 (ROS nanoseconds) and every message is recorded at its own header stamp:

- ``/CAM_*/image_rect_compressed`` at the camera's capture time, the JPEG bytes as stored, frame = channel name;
- ``/CAM_*/camera_info`` with the same stamp and frame;
- ``/tf`` map -> base_link from the *recorded* ego poses at the keyframe's reference-sensor time and at each
  camera's own capture time (real nuScenes cameras fire up to ~40 ms apart; with these, a TF lookup of a camera at
  its image stamp reproduces the data layer's motion-compensated ``cam_to_ego`` exactly);
- ``/tf_static`` base_link -> CAM_* from the scene's calibration, once per scene at its first stamp;
- ``/odom``, ``/accel`` (ego status) at the reference-sensor time; ``/planning/command`` and
  ``/evaluation/ground_truth`` stamped with the keyframe's CAM_FRONT time, the stamp the planner's output carries.

Scenes of a multi-scene bag come from different recordings (hours or days apart): every scene after the first is
shifted in time to start ``scene_gap_s`` after the previous one ends, so a replay does not sit idle for days. All
stamps of a scene move together; ``GroundTruthFrame.timestamp_us`` keeps the dataset time. ``keep_timestamps``
writes the dataset times unchanged.
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rosbags.rosbag2 import StoragePlugin, Writer

from dima_core.bag import messages as m
from dima_core.bag.topics import (
    ACCEL_TOPIC,
    BASE_FRAME,
    COMMAND_TOPIC,
    GROUND_TRUTH_TOPIC,
    MAP_FRAME,
    ODOM_TOPIC,
    TF_STATIC_TOPIC,
    TF_TOPIC,
    TopicSpec,
    bag_topics,
    camera_info_topic,
    image_topic,
)
from dima_core.bag.typestore import dima_typestore
from dima_core.constants import CAMERA_NAMES

logger = logging.getLogger(__name__)

STORAGE_PLUGINS: dict[str, StoragePlugin] = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}
BAG_METADATA_VERSION = 9  # rosbag2's current metadata version (Jazzy, Kilted); carries offered QoS and type hashes
DEFAULT_SCENE_GAP_S = 1.0


@dataclass
class ConvertSummary:
    """What a conversion wrote."""

    path: Path
    storage: str
    scenes: list[str]
    num_keyframes: int
    start_ns: int
    end_ns: int
    scene_offsets_ns: dict[str, int]  # time shift added to each scene's dataset stamps
    topic_counts: dict[str, int] = field(default_factory=dict)

    def format(self) -> str:
        lines = [
            f"wrote {self.path} ({self.storage}): {len(self.scenes)} scene(s), {self.num_keyframes} keyframes, "
            f"{(self.end_ns - self.start_ns) * 1e-9:.2f} s",
        ]
        for topic in sorted(self.topic_counts):
            lines.append(f"  {topic:<42} {self.topic_counts[topic]:>6}")
        return "\n".join(lines)


def _prepare_output(out: Path, overwrite: bool) -> None:
    """rosbags refuses an existing path; only ever delete something that is recognisably a bag (or empty).

    Raises ValueError (which the CLI reports as a one-line error) rather than FileExistsError.
    """
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        return
    if not overwrite:
        raise ValueError(f"{out} already exists (pass --overwrite to replace a bag there)")
    is_bag = out.is_dir() and (out / "metadata.yaml").is_file()
    is_empty_dir = out.is_dir() and not any(out.iterdir())
    if not (is_bag or is_empty_dir):
        raise ValueError(f"{out} exists and is not a rosbag2 directory; refusing to delete it")
    shutil.rmtree(out)


def _scene_tokens(reader: Any, scene_name: str) -> list[str]:
    for scene in reader.nusc.scene:
        if scene["name"] == scene_name:
            tokens = []
            token = scene["first_sample_token"]
            while token:
                tokens.append(token)
                token = reader.nusc.get("sample", token)["next"]
            return tokens
    known = reader.scene_names()
    raise ValueError(
        f"scene '{scene_name}' is not in {reader.dataroot} ({reader.version}); "
        f"{len(known)} scenes, e.g. {', '.join(known[:8])}"
    )


def convert_scenes(
    dataroot: str | Path,
    version: str,
    scenes: Sequence[str],
    out: str | Path,
    *,
    storage: str = "mcap",
    scene_gap_s: float = DEFAULT_SCENE_GAP_S,
    keep_timestamps: bool = False,
    overwrite: bool = False,
    reader: Any | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> ConvertSummary:
    """Write the keyframes of ``scenes`` (in the given order) to a rosbag2 at ``out``.

    Args:
        dataroot, version: the nuScenes (or synthetic) dataset.
        scenes: scene names, e.g. ``["scene-0061"]``; at least one, no duplicates.
        out: bag directory to create (must not exist unless ``overwrite``).
        storage: ``"mcap"`` (default) or ``"sqlite3"``.
        scene_gap_s: seconds between the end of a scene and the start of the next (multi-scene bags).
        keep_timestamps: write the dataset's stamps unchanged, even for later scenes.
        overwrite: replace an existing bag directory at ``out``.
        reader: an existing :class:`~dima_core.data.nuscenes_reader.NuScenesReader` for this dataset (tests).
        progress: called as ``progress(scene_name, done_keyframes, scene_keyframes)`` after each keyframe.

    Returns:
        A :class:`ConvertSummary`. On any error the partial bag directory is removed.
    """
    if storage not in STORAGE_PLUGINS:
        raise ValueError(f"storage must be one of {sorted(STORAGE_PLUGINS)}, got '{storage}'")
    if not scenes:
        raise ValueError("no scene given (pass --scene NAME, repeatable)")
    duplicates = [name for name, count in Counter(scenes).items() if count > 1]
    if duplicates:
        raise ValueError(f"scene(s) given twice: {', '.join(duplicates)}")
    if scene_gap_s < 0:
        raise ValueError(f"scene gap must be >= 0 s, got {scene_gap_s}")

    if reader is None:
        from dima_core.data.nuscenes_reader import NuScenesReader

        # No map: the bag carries no map topics, and real nuScenes may lack the map expansion.
        reader = NuScenesReader(dataroot, version, with_map=False)
    scene_tokens = {name: _scene_tokens(reader, name) for name in scenes}  # validate every name before writing

    out = Path(out)
    _prepare_output(out, overwrite)
    ts = dima_typestore()
    specs: dict[str, TopicSpec] = {spec.name: spec for spec in bag_topics()}
    counts: Counter[str] = Counter()
    offsets: dict[str, int] = {}
    num_keyframes = 0
    start_ns: int | None = None
    end_ns = 0
    try:
        with Writer(out, version=BAG_METADATA_VERSION, storage_plugin=STORAGE_PLUGINS[storage]) as writer:
            connections = {
                name: writer.add_connection(name, spec.msgtype, typestore=ts, offered_qos_profiles=[spec.qos])
                for name, spec in specs.items()
            }

            def write(topic: str, ns: int, msg: Any) -> None:
                nonlocal start_ns, end_ns
                writer.write(connections[topic], ns, bytes(ts.serialize_cdr(msg, specs[topic].msgtype)))
                counts[topic] += 1
                start_ns = ns if start_ns is None else min(start_ns, ns)
                end_ns = max(end_ns, ns)

            previous_end_ns: int | None = None
            for scene_name in scenes:
                tokens = scene_tokens[scene_name]
                first_us = _scene_first_us(reader, tokens[0])
                offset = 0
                if previous_end_ns is not None and not keep_timestamps:
                    offset = previous_end_ns + int(round(scene_gap_s * m.NS_PER_S)) - m.us_to_ns(first_us)
                offsets[scene_name] = offset
                logger.info("scene %s: %d keyframes, time shift %.3f s", scene_name, len(tokens), offset * 1e-9)
                write(TF_STATIC_TOPIC, m.us_to_ns(first_us, offset), _static_transforms(ts, reader, tokens[0], offset))
                for i, token in enumerate(tokens):
                    _write_keyframe(ts, reader, token, offset, write)
                    num_keyframes += 1
                    if progress is not None:
                        progress(scene_name, i + 1, len(tokens))
                previous_end_ns = end_ns
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)  # never leave a half-written bag that looks like a bag
        raise
    return ConvertSummary(
        path=out,
        storage=storage,
        scenes=list(scenes),
        num_keyframes=num_keyframes,
        start_ns=start_ns or 0,
        end_ns=end_ns,
        scene_offsets_ns=offsets,
        topic_counts=dict(counts),
    )


def _camera_sample_data(reader: Any, sample: dict) -> list[dict]:
    missing = [cam for cam in CAMERA_NAMES if cam not in sample["data"]]
    if missing:
        raise ValueError(f"sample {sample['token']} has no {', '.join(missing)} (a DiMA bag needs all six cameras)")
    return [reader.nusc.get("sample_data", sample["data"][cam]) for cam in CAMERA_NAMES]


def _scene_first_us(reader: Any, first_token: str) -> int:
    """Earliest stamp of a scene's first keyframe (reference sensor or any camera)."""
    sample = reader.nusc.get("sample", first_token)
    times = [reader.reference_sample_data(sample)["timestamp"]]
    times += [sd["timestamp"] for sd in _camera_sample_data(reader, sample)]
    return int(min(times))


def _static_transforms(ts: Any, reader: Any, first_token: str, offset: int) -> Any:
    """TFMessage base_link -> every camera, from the calibration of the scene's first keyframe.

    nuScenes calibration is fixed within a scene (one calibrated_sensor record per sensor and log).
    """
    sample = reader.nusc.get("sample", first_token)
    ns = m.us_to_ns(_scene_first_us(reader, first_token), offset)
    transforms = []
    for cam, sd in zip(CAMERA_NAMES, _camera_sample_data(reader, sample), strict=True):
        calib = reader.nusc.get("calibrated_sensor", sd["calibrated_sensor_token"])
        transforms.append(m.transform_stamped(ts, ns, BASE_FRAME, cam, calib))
    return m.tf_message(ts, transforms)


def _write_keyframe(ts: Any, reader: Any, token: str, offset: int, write: Callable[[str, int, Any], None]) -> None:
    sample_rec = reader.nusc.get("sample", token)
    sample = reader.build_sample(token)
    ref_sd = reader.reference_sample_data(sample_rec)
    cam_sds = _camera_sample_data(reader, sample_rec)

    # map -> base_link at every distinct recorded pose time of this keyframe (reference sensor, then cameras).
    poses: dict[int, dict] = {}
    for sd in [ref_sd, *cam_sds]:
        poses.setdefault(int(sd["timestamp"]), reader.nusc.get("ego_pose", sd["ego_pose_token"]))
    for time_us in sorted(poses):
        ns = m.us_to_ns(time_us, offset)
        write(TF_TOPIC, ns, m.tf_message(ts, [m.transform_stamped(ts, ns, MAP_FRAME, BASE_FRAME, poses[time_us])]))

    for view in sample.cameras:
        ns = m.us_to_ns(view.timestamp_us, offset)
        write(camera_info_topic(view.name), ns, m.camera_info(ts, ns, view))
        write(image_topic(view.name), ns, m.compressed_image(ts, ns, view.name, Path(view.image_path).read_bytes()))

    ref_ns = m.us_to_ns(int(ref_sd["timestamp"]), offset)
    write(ODOM_TOPIC, ref_ns, m.odometry(ts, ref_ns, poses[int(ref_sd["timestamp"])], sample.ego_status))
    write(ACCEL_TOPIC, ref_ns, m.acceleration(ts, ref_ns, sample.ego_status))
    front_ns = m.us_to_ns(sample.camera("CAM_FRONT").timestamp_us, offset)
    write(COMMAND_TOPIC, front_ns, m.driving_command(ts, front_ns, sample.command))
    write(GROUND_TRUTH_TOPIC, front_ns, m.ground_truth_frame(ts, front_ns, sample))


__all__ = ["BAG_METADATA_VERSION", "ConvertSummary", "DEFAULT_SCENE_GAP_S", "STORAGE_PLUGINS", "convert_scenes"]
