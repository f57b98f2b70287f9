"""The synthetic world: build scenes from a seed, simulate them, render them and write a nuScenes dataroot.

Library API (used by ``dima data synth``, ``dima bench synth`` and the tests)::

    world = SynthWorld.generate(cfg, seed=0, num_scenes=3, scenarios=["overtake"])
    scene = world.scenes[0]
    images = render_frame(scene, frame_index=4, include_agents=False)   # {camera name: (H, W, 3) BGR uint8}
    world.write("/data/synth")                                          # or generate_dataset(...)

Everything is a pure function of (config, seed, num_scenes, scenarios): no clocks, no global RNG state, fixed
JPEG quality, tokens are hashes. Frames: global map frame of the scene's location (x, y metres, yaw radians).
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass, field

import cv2
import numpy as np

from dima_core.config import config_to_dict
from dima_core.constants import CAMERA_NAMES, EGO_FOOTPRINT_FORWARD_OFFSET_M, LIDAR_NAME
from dima_core.data.geometry import yaw_quaternion
from dima_core.data.synth import lidar as lidar_mod
from dima_core.data.synth.cameras import Camera, camera_rig, lidar_to_ego
from dima_core.data.synth.can_bus import write_can_bus
from dima_core.data.synth.config import LONG_TAIL_SCENARIOS, SCENARIOS, SynthConfig
from dima_core.data.synth.geometry import token
from dima_core.data.synth.map_writer import MapBuilder
from dima_core.data.synth.nuscenes_writer import (
    TableWriter,
    attribute_token,
    category_token,
    sensor_token,
    visibility_level,
)
from dima_core.data.synth.perturbation import perturb_ego_record
from dima_core.data.synth.render import BUILDING_ID, Lighting, SceneRenderer
from dima_core.data.synth.scenarios import ScenePlan, build_scene
from dima_core.data.synth.traffic import Actor, Simulation

log = logging.getLogger(__name__)

BASE_TIMESTAMP_US = 1_533_000_000_000_000  # 2018-07-31, nuScenes-era timestamps
SCENE_SPACING_US = 3_600_000_000
META_FILE = "synth_meta.json"
# DriveLM-format rule-based QA for every keyframe, written beside the tables (dima_core.data.qa).
QA_FILE = "drivelm_synth.json"
# NuScenesCanBus refuses these scene numbers (its hard-coded "no CAN data" list): never use them.
_CAN_BLACKLIST = set(range(161, 177)) | set(range(309, 315))


def scene_names(n: int) -> list[str]:
    """``scene-0001``.. skipping numbers the CAN bus API blacklists."""
    out, k = [], 0
    while len(out) < n:
        k += 1
        if k not in _CAN_BLACKLIST:
            out.append(f"scene-{k:04d}")
    return out


def lane_token(location: str, scene_name: str, lane_id: str) -> str:
    """Map token of a generator lane (``Lane.id``) in the location's map expansion."""
    return token("lane", location, scene_name, lane_id)


@dataclass
class SimRecord:
    """Simulation output at every step: times (K,), ego (K, 5) x, y, yaw, signed speed, acceleration (the ego-pose
    origin), agents (A, K, 4) box centre x, y, yaw, signed speed, present (A, K) bool."""

    times: np.ndarray
    ego: np.ndarray
    agents: np.ndarray
    present: np.ndarray


def simulate(plan: ScenePlan, cfg: SynthConfig) -> SimRecord:
    """Run the traffic simulation of a scene for ``cfg.scene_seconds`` (last keyframe included)."""
    spk = cfg.steps_per_keyframe
    dt = 0.5 / spk
    n_steps = (cfg.num_keyframes - 1) * spk + 1
    jpolys = {j.id: j.polygon for j in plan.net.junctions}
    from shapely.geometry import Polygon

    cpolys = {c.id: Polygon(c.polygon) for c in plan.net.crosswalks}
    sim = Simulation(plan.ego, plan.actors, jpolys, cpolys, dt, EGO_FOOTPRINT_FORWARD_OFFSET_M)
    ego = np.zeros((n_steps, 5))
    agents = np.zeros((len(plan.actors), n_steps, 4))
    present = np.zeros((len(plan.actors), n_steps), bool)
    for k in range(n_steps):
        x, y, yaw = plan.ego.pose()
        ego[k] = (x, y, yaw, plan.ego.signed_speed(), plan.ego.a * (-1 if plan.ego.path.reverse else 1))
        for i, a in enumerate(plan.actors):
            present[i, k] = a.visible_now(sim.t)
            agents[i, k] = a.state()
        if k + 1 < n_steps:
            sim.step()
    return SimRecord(np.arange(n_steps) * dt, ego, agents, present)


@dataclass
class SynthScene:
    """One generated scene: plan, simulation record, cameras and a lazily built renderer."""

    index: int
    name: str
    location: str
    scenario: str
    tags: list[str]
    plan: ScenePlan
    record: SimRecord
    lighting: Lighting
    cameras: list[Camera]
    cfg: SynthConfig
    seed: int
    _renderer: SceneRenderer | None = field(default=None, repr=False)

    @property
    def num_keyframes(self) -> int:
        return self.cfg.num_keyframes

    @property
    def t0_us(self) -> int:
        return BASE_TIMESTAMP_US + self.index * SCENE_SPACING_US

    def keyframe_timestamp(self, frame: int) -> int:
        return self.t0_us + frame * 500_000

    def step_of(self, frame: int) -> int:
        return frame * self.cfg.steps_per_keyframe

    def ego_pose(self, frame: int) -> tuple[float, float, float]:
        x, y, yaw = self.record.ego[self.step_of(frame), :3]
        return float(x), float(y), float(yaw)

    def agents_at(self, frame: int) -> list[tuple[Actor, float, float, float, float]]:
        """(actor, x, y, yaw, signed speed) of agents present at keyframe ``frame``."""
        k = self.step_of(frame)
        out = []
        for i, a in enumerate(self.plan.actors):
            if self.record.present[i, k]:
                x, y, yaw, v = self.record.agents[i, k]
                out.append((a, float(x), float(y), float(yaw), float(v)))
        return out

    @property
    def renderer(self) -> SceneRenderer:
        if self._renderer is None:
            cam = self.cfg.camera
            self._renderer = SceneRenderer(
                self.plan.net,
                self.cameras,
                self.lighting,
                cam.near_m,
                cam.far_m,
                cam.noise_std,
                noise_seed=int(token(self.seed, "noise", self.index)[:8], 16),
            )
        return self._renderer

    def render(self, frame: int, include_agents: bool = True, want_ids: bool = False):
        """Images (list in CAMERA_NAMES order), id buffers (or None), projected agent areas; see SceneRenderer."""
        agents = [(a, x, y, yaw) for a, x, y, yaw, _ in self.agents_at(frame)]
        return self.renderer.render(self.ego_pose(frame), agents, include_agents, frame, want_ids)


def render_frame(scene: SynthScene, frame_index: int, include_agents: bool = True) -> dict[str, np.ndarray]:
    """Re-render keyframe ``frame_index`` of ``scene``: {camera name: (H, W, 3) BGR uint8}. Identical (before
    JPEG) to what ``write`` stored when ``include_agents``; without agents it shows the same frame, same noise,
    with the agents (and their shadows) removed."""
    images, _, _ = scene.render(frame_index, include_agents)
    return dict(zip(CAMERA_NAMES, images, strict=True))


def _allocate(n: int, mix: dict[str, float], rng: np.random.Generator) -> list[str]:
    """Scenario per scene: largest-remainder allocation of the mix (so small runs still cover the heavy ones),
    shuffled."""
    names = [s for s in SCENARIOS if mix.get(s, 0.0) > 0]
    w = np.array([mix[s] for s in names], float)
    quota = w / w.sum() * n
    counts = np.floor(quota).astype(int)
    for i in np.argsort(-(quota - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    out = [s for s, c in zip(names, counts, strict=True) for _ in range(c)]
    return [out[i] for i in rng.permutation(len(out))]


class SynthWorld:
    """A set of generated, simulated scenes (rendering happens on demand or in :meth:`write`)."""

    def __init__(self, cfg: SynthConfig, seed: int, scenes: list[SynthScene]):
        self.cfg = cfg
        self.seed = seed
        self.scenes = scenes

    @classmethod
    def generate(cls, cfg: SynthConfig, seed: int, num_scenes: int, scenarios: list[str] | None = None) -> SynthWorld:
        """Build and simulate ``num_scenes`` scenes; ``scenarios`` (optional) cycles through the given names instead
        of sampling the config's mix."""
        rng = np.random.default_rng([seed, 7919])
        if scenarios:
            bad = [s for s in scenarios if s not in SCENARIOS]
            if bad:
                raise ValueError(f"unknown scenario(s) {bad}; known: {list(SCENARIOS)}")
            chosen = [scenarios[i % len(scenarios)] for i in range(num_scenes)]
        else:
            chosen = _allocate(num_scenes, cfg.scenario_mix, rng)
        names = scene_names(num_scenes)
        per_loc: dict[str, int] = {}
        count_loc = {
            loc: sum(1 for i in range(num_scenes) if cfg.locations[i % len(cfg.locations)] == loc)
            for loc in cfg.locations
        }
        cams = camera_rig(cfg.camera.width, cfg.camera.height)
        scenes = []
        for i in range(num_scenes):
            loc = cfg.locations[i % len(cfg.locations)]
            r = per_loc.get(loc, 0)
            per_loc[loc] = r + 1
            grid = max(1, math.ceil(math.sqrt(count_loc[loc])))
            size = cfg.scene_region_m
            origin = np.array([(r % grid + 0.5) * size, (r // grid + 0.5) * size]) + 100.0
            srng = np.random.default_rng([seed, i, 1])
            plan = build_scene(chosen[i], cfg, srng, origin)
            record = simulate(plan, cfg)
            tags = list(plan.tags)
            drift = cfg.ego_perturbation
            if drift.scene_fraction > 0.0:
                drift_rng = np.random.default_rng([seed, i, 4])
                if drift_rng.random() < drift.scene_fraction:
                    ego, events = perturb_ego_record(record.times, record.ego, drift, drift_rng)
                    if events:
                        record = SimRecord(record.times, ego, record.agents, record.present)
                        tags = sorted(set(tags) | {"ego_drift"})
            lighting = Lighting.random(np.random.default_rng([seed, i, 2]))
            scenes.append(SynthScene(i, names[i], loc, chosen[i], tags, plan, record, lighting, cams, cfg, seed))
        return cls(cfg, seed, scenes)

    def splits(self) -> dict[str, list[str]]:
        """Train/val by scene: held-out scenarios go to val; of the rest a ``val_fraction`` share, by seed."""
        rng = np.random.default_rng([self.seed, 104729])
        held = [s.name for s in self.scenes if s.scenario in self.cfg.holdout_scenarios]
        rest = [s.name for s in self.scenes if s.scenario not in self.cfg.holdout_scenarios]
        n_val = int(round(self.cfg.val_fraction * len(rest)))
        perm = rng.permutation(len(rest))
        val_rest = {rest[i] for i in perm[:n_val]}
        order = [s.name for s in self.scenes]
        val = [n for n in order if n in val_rest or n in held]
        train = [n for n in order if n not in val]
        return {"train": train, "val": val}

    # ---- writing ----------------------------------------------------------------------------------------------
    def write(self, out_dir: str, overwrite: bool = False, progress=None) -> dict:
        """Render and write the whole dataroot; returns a summary (keyframes, annotations, paths)."""
        cfg = self.cfg
        if os.path.exists(out_dir) and os.listdir(out_dir):
            if not overwrite:
                raise FileExistsError(f"{out_dir} exists and is not empty (pass overwrite to replace it)")
            if not os.path.exists(os.path.join(out_dir, META_FILE)):
                # Only ever delete what this generator wrote: a directory without its side file is someone's data.
                raise FileExistsError(f"{out_dir} is not empty and holds no {META_FILE}; refusing to delete it")
            shutil.rmtree(out_dir)
        os.makedirs(out_dir, exist_ok=True)
        for ch in CAMERA_NAMES + (LIDAR_NAME,):
            os.makedirs(os.path.join(out_dir, "samples", ch), exist_ok=True)
        tables = TableWriter()
        maps: dict[str, MapBuilder] = {}
        log_tokens: dict[str, list[str]] = {}
        n_ann = 0
        ground = lidar_mod.ground_pattern(cfg.lidar_ground_rings, cfg.lidar_points_per_ring)
        for scene in self.scenes:
            builder = maps.setdefault(scene.location, MapBuilder(scene.location))
            builder.add_network(scene.plan.net, scene.name)
            log_token = token(self.seed, "log", scene.name)
            log_tokens.setdefault(scene.location, []).append(log_token)
            n_ann += self._write_scene(scene, out_dir, tables, log_token, ground)
            if progress is not None:
                progress(scene)
        map_resolutions = {}
        for loc, builder in sorted(maps.items()):
            builder.write(out_dir)
            map_tok = token(self.seed, "map", loc)
            filename = f"maps/{map_tok}.png"
            res = builder.write_basemap(
                os.path.join(out_dir, filename), cfg.basemap_resolution_m, cfg.basemap_max_pixels
            )
            map_resolutions[loc] = res
            tables.add(
                "map",
                {"token": map_tok, "log_tokens": log_tokens[loc], "category": "semantic_prior", "filename": filename},
            )
        tables.write(out_dir, cfg.version)
        meta = {
            "version": cfg.version,
            "seed": self.seed,
            "splits": self.splits(),
            "scenes": {
                s.name: {
                    "scenario": s.scenario,
                    "tags": s.tags,
                    "location": s.location,
                    "long_tail": s.scenario in LONG_TAIL_SCENARIOS,
                    "ego_route_lane_tokens": [lane_token(s.location, s.name, lid) for lid in s.plan.ego_route],
                }
                for s in self.scenes
            },
            "basemap_resolution_m": map_resolutions,
            "config": config_to_dict(cfg),
        }
        with open(os.path.join(out_dir, META_FILE), "w") as f:
            json.dump(meta, f, indent=1, sort_keys=True)
        return {"scenes": len(self.scenes), "keyframes": len(self.scenes) * cfg.num_keyframes, "annotations": n_ann}

    def _write_scene(self, scene: SynthScene, out: str, tables: TableWriter, log_token: str, ground: np.ndarray) -> int:
        cfg, seed = self.cfg, self.seed
        logfile = f"synth-{seed}-{scene.name}"
        tables.add(
            "log",
            {
                "token": log_token,
                "logfile": logfile,
                "vehicle": "synth-zoe",
                "date_captured": "2018-08-01",
                "location": scene.location,
            },
        )
        calib = {}
        for cam in scene.cameras:
            calib[cam.name] = tables.add(
                "calibrated_sensor",
                {
                    "token": token(seed, "calib", scene.name, cam.name),
                    "sensor_token": sensor_token(cam.name),
                    "translation": [round(v, 6) for v in cam.translation],
                    "rotation": [round(v, 9) for v in cam.rotation_wxyz],
                    "camera_intrinsic": [[round(float(v), 6) for v in row] for row in cam.K],
                },
            )
        lid = lidar_to_ego()
        calib[LIDAR_NAME] = tables.add(
            "calibrated_sensor",
            {
                "token": token(seed, "calib", scene.name, LIDAR_NAME),
                "sensor_token": sensor_token(LIDAR_NAME),
                "translation": [round(float(v), 6) for v in lid[:3, 3]],
                "rotation": [round(v, 9) for v in yaw_quaternion(math.atan2(lid[1, 0], lid[0, 0]))],
                "camera_intrinsic": [],
            },
        )
        samples, sd_rows = [], {ch: [] for ch in CAMERA_NAMES + (LIDAR_NAME,)}
        ann_by_instance: dict[int, list[dict]] = {}
        radius = cfg.traffic.annotation_radius_m
        for k in range(scene.num_keyframes):
            ts = scene.keyframe_timestamp(k)
            sample = tables.add(
                "sample",
                {
                    "token": token(seed, "sample", scene.name, k),
                    "timestamp": ts,
                    "scene_token": token(seed, "scene", scene.name),
                },
            )
            samples.append(sample)
            ego = scene.ego_pose(k)
            images, idbufs, areas = scene.render(k, include_agents=True, want_ids=True)
            vis_px = np.zeros(65536, np.int64)
            for buf in idbufs:
                vis_px += np.bincount(buf.ravel(), minlength=65536)
            agents = [
                (a, x, y, yaw, v)
                for a, x, y, yaw, v in scene.agents_at(k)
                if math.hypot(x - ego[0], y - ego[1]) <= radius
            ]
            vis_frac = {
                a.id: min(1.0, vis_px[a.id + 1] / areas[a.id + 1]) if areas.get(a.id + 1, 0.0) > 0 else 0.0
                for a, *_ in agents
            }
            boxes = [(a.id, x, y, yaw, a.length, a.width, a.height, vis_frac[a.id]) for a, x, y, yaw, _ in agents]
            points, counts = lidar_mod.sweep(
                ego, boxes, ground, cfg.lidar_box_density, np.random.default_rng([seed, scene.index, k, 3])
            )
            for ch in CAMERA_NAMES + (LIDAR_NAME,):
                ep = tables.add(
                    "ego_pose",
                    {
                        "token": token(seed, "ego_pose", scene.name, k, ch),
                        "timestamp": ts,
                        "rotation": [round(v, 9) for v in yaw_quaternion(ego[2])],
                        "translation": [round(ego[0], 4), round(ego[1], 4), 0.0],
                    },
                )
                is_cam = ch != LIDAR_NAME
                ext = "jpg" if is_cam else "pcd.bin"
                filename = f"samples/{ch}/{logfile}__{ch}__{ts}.{ext}"
                sd_rows[ch].append(
                    tables.add(
                        "sample_data",
                        {
                            "token": token(seed, "sample_data", scene.name, k, ch),
                            "sample_token": sample["token"],
                            "ego_pose_token": ep["token"],
                            "calibrated_sensor_token": calib[ch]["token"],
                            "timestamp": ts,
                            "fileformat": "jpg" if is_cam else "pcd",
                            "is_key_frame": True,
                            "height": cfg.camera.height if is_cam else 0,
                            "width": cfg.camera.width if is_cam else 0,
                            "filename": filename,
                        },
                    )
                )
            for ci, ch in enumerate(CAMERA_NAMES):
                ok, buf = cv2.imencode(".jpg", images[ci], [cv2.IMWRITE_JPEG_QUALITY, cfg.camera.jpeg_quality])
                assert ok
                with open(os.path.join(out, sd_rows[ch][-1]["filename"]), "wb") as f:
                    f.write(buf.tobytes())
            with open(os.path.join(out, sd_rows[LIDAR_NAME][-1]["filename"]), "wb") as f:
                f.write(points.tobytes())
            for a, x, y, yaw, v in agents:
                n_pts = counts.get(a.id, 0)
                if vis_px[a.id + 1] == 0 and n_pts == 0:
                    continue  # fully hidden from every sensor: not annotated (as in nuScenes)
                row = tables.add(
                    "sample_annotation",
                    {
                        "token": token(seed, "ann", scene.name, a.id, k),
                        "sample_token": sample["token"],
                        "instance_token": token(seed, "instance", scene.name, a.id),
                        "visibility_token": visibility_level(vis_frac[a.id]),
                        "attribute_tokens": [attribute_token(_attribute(a, v))],
                        "translation": [round(x, 4), round(y, 4), round(a.height / 2, 4)],
                        "size": [round(a.width, 4), round(a.length, 4), round(a.height, 4)],
                        "rotation": [round(c, 9) for c in yaw_quaternion(yaw)],
                        "num_lidar_pts": int(n_pts),
                        "num_radar_pts": 0,
                    },
                )
                ann_by_instance.setdefault(a.id, []).append(row)
        tables.link_chain(samples)
        for rows in sd_rows.values():
            tables.link_chain(rows)
        n = 0
        for aid in sorted(ann_by_instance):
            rows = ann_by_instance[aid]
            tables.link_chain(rows)
            actor = scene.plan.actors[aid]
            tables.add(
                "instance",
                {
                    "token": token(seed, "instance", scene.name, aid),
                    "category_token": category_token(actor.category),
                    "nbr_annotations": len(rows),
                    "first_annotation_token": rows[0]["token"],
                    "last_annotation_token": rows[-1]["token"],
                },
            )
            n += len(rows)
        tables.add(
            "scene",
            {
                "token": token(seed, "scene", scene.name),
                "log_token": log_token,
                "nbr_samples": len(samples),
                "first_sample_token": samples[0]["token"],
                "last_sample_token": samples[-1]["token"],
                "name": scene.name,
                "description": f"synthetic {scene.scenario}; tags: {', '.join(scene.tags)}",
            },
        )
        write_can_bus(
            os.path.join(out, "can_bus"), scene.name, scene.t0_us, scene.record.times, scene.record.ego, cfg.can_bus_hz
        )
        return n


def _attribute(actor: Actor, v: float) -> str:
    if actor.is_pedestrian:
        return "pedestrian.moving" if abs(v) > 0.2 else "pedestrian.standing"
    if actor.is_cycle:
        return "cycle.with_rider"
    if actor.static_kind == "parked":
        return "vehicle.parked"
    return "vehicle.moving" if abs(v) > 0.5 else "vehicle.stopped"


def generate_dataset(
    out_dir: str,
    cfg: SynthConfig,
    num_scenes: int,
    seed: int,
    scenarios: list[str] | None = None,
    overwrite: bool = False,
    progress=None,
    write_qa: bool = True,
) -> dict:
    """Generate and write a synthetic nuScenes dataroot at ``out_dir``; returns the write summary.

    With ``write_qa`` the rule-based QA generator then reads the written dataroot back through the devkit (the
    same path real nuScenes takes) and writes DriveLM-format QA for every keyframe to ``QA_FILE``.
    """
    if os.path.exists(out_dir) and os.listdir(out_dir) and not overwrite:
        raise FileExistsError(f"{out_dir} exists and is not empty (use --overwrite to replace it)")
    world = SynthWorld.generate(cfg, seed, num_scenes, scenarios)
    summary = world.write(out_dir, overwrite=overwrite, progress=progress)
    if write_qa:
        from dima_core.data.nuscenes_reader import NuScenesReader
        from dima_core.data.qa import write_qa_for_dataset

        qa = write_qa_for_dataset(NuScenesReader(out_dir, cfg.version), os.path.join(out_dir, QA_FILE))
        summary["qa_file"] = os.path.join(out_dir, QA_FILE)
        summary["qa_pairs"] = qa.num_qa
    return summary


__all__ = [
    "QA_FILE",
    "SynthWorld",
    "SynthScene",
    "SimRecord",
    "generate_dataset",
    "render_frame",
    "simulate",
    "lane_token",
    "scene_names",
    "BUILDING_ID",
]
