"""Rendered cameras show the annotated objects: boxes the annotation calls visible project inside the image, and
the pixels there differ from the same frame re-rendered without agents."""

from __future__ import annotations

import cv2
import numpy as np

from dima_core.constants import CAMERA_NAMES


def _scene(world, nusc, sample):
    name = nusc.get("scene", sample["scene_token"])["name"]
    return next(s for s in world.scenes if s.name == name)


def test_rerender_matches_written_jpeg(synth_written, synth_nusc):
    nusc, world = synth_nusc, synth_written.world
    from dima_core.data.synth import render_frame

    sample = nusc.sample[3]
    scene = _scene(world, nusc, sample)
    frame = 3 - sum(s["nbr_samples"] for s in nusc.scene if s["name"] < scene.name)
    images = render_frame(scene, frame, include_agents=True)
    for cam in CAMERA_NAMES:
        jpg = cv2.imread(nusc.get_sample_data_path(sample["data"][cam]))
        assert jpg.shape == images[cam].shape
        assert np.abs(jpg.astype(int) - images[cam].astype(int)).mean() < 4.0  # JPEG error only


def test_road_scene_layout(synth_written):
    """Sky above the horizon, ground below, road and lane markings in the front camera."""
    from dima_core.data.synth import render_frame

    scene = synth_written.world.scenes[0]
    img = render_frame(scene, 0, include_agents=False)["CAM_FRONT"].astype(float)
    h = img.shape[0]
    sky, ground = img[: h // 4].mean(axis=(0, 1)), img[-h // 5 :].mean(axis=(0, 1))
    assert sky[0] > sky[2]  # bluish sky (BGR)
    assert np.abs(sky - ground).sum() > 60
    bottom = img[-h // 4 :]
    assert np.percentile(bottom.mean(axis=2), 99.5) - np.median(bottom.mean(axis=2)) > 60  # markings on asphalt


def test_visible_boxes_project_into_image_and_differ_from_background(synth_written, synth_nusc):
    from nuscenes.utils.geometry_utils import BoxVisibility, view_points

    from dima_core.data.synth import render_frame

    nusc, world = synth_nusc, synth_written.world
    checked = 0
    scene_first = {s["name"]: s["first_sample_token"] for s in nusc.scene}
    for scene in world.scenes:
        tok = scene_first[scene.name]
        frame = 0
        while tok:
            sample = nusc.get("sample", tok)
            if frame % 2 == 0:
                with_agents = render_frame(scene, frame, include_agents=True)
                without = render_frame(scene, frame, include_agents=False)
                visible = {
                    a for a in sample["anns"] if nusc.get("sample_annotation", a)["visibility_token"] in ("3", "4")
                }
                seen = set()
                for cam in CAMERA_NAMES:
                    sd = nusc.get("sample_data", sample["data"][cam])
                    _, boxes, K = nusc.get_sample_data(sd["token"], box_vis_level=BoxVisibility.ANY)
                    diff = np.abs(with_agents[cam].astype(int) - without[cam].astype(int)).sum(axis=2) > 30
                    for box in boxes:
                        if box.token not in visible:
                            continue
                        rect = _image_rect(box, K, sd["width"], sd["height"])
                        if rect is None:
                            continue  # behind the camera, or only a few pixels of it in this image
                        x0, y0, x1, y1 = rect
                        c = view_points(box.center[:, None], K, normalize=True)[:2, 0]
                        assert -0.5 * sd["width"] < c[0] < 1.5 * sd["width"] and 0 <= c[1] < 1.5 * sd["height"]
                        frac = diff[y0 : y1 + 1, x0 : x1 + 1].mean()
                        assert frac > 0.15, f"{box.name} in {cam}: only {frac:.0%} of its box differs from background"
                        seen.add(box.token)
                        checked += 1
                # Every visibility>=3 annotation is inside the field of view of at least one camera.
                assert visible <= seen | {a for a in visible if _tiny_everywhere(nusc, sample, a)}
            tok = sample["next"]
            frame += 1
    assert checked >= 5


def _image_rect(box, K, width, height):
    """Clipped pixel rectangle of a box in front of the camera, or None when it covers fewer than 12 pixels."""
    from nuscenes.utils.geometry_utils import view_points

    if box.center[2] < 1.0:
        return None
    corners = view_points(box.corners(), K, normalize=True)[:2]
    x0, y0 = np.clip(corners.min(axis=1), 0, [width - 1, height - 1]).astype(int)
    x1, y1 = np.clip(corners.max(axis=1), 0, [width - 1, height - 1]).astype(int)
    if (x1 - x0) * (y1 - y0) < 12:
        return None
    return x0, y0, x1, y1


def _tiny_everywhere(nusc, sample, ann_token) -> bool:
    from nuscenes.utils.geometry_utils import BoxVisibility

    for cam in CAMERA_NAMES:
        sd = nusc.get("sample_data", sample["data"][cam])
        _, boxes, K = nusc.get_sample_data(sd["token"], box_vis_level=BoxVisibility.ANY, selected_anntokens=[ann_token])
        if any(_image_rect(b, K, sd["width"], sd["height"]) is not None for b in boxes):
            return False
    return True
