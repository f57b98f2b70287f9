"""Rule-based QA on hand-built keyframes: tag placement, motion words, planning safety, files, config."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from dima_core.config import ConfigError, load_config
from dima_core.data.drivelm import find_ctags, load_drivelm, parse_ctag
from dima_core.data.qa import QAConfig, generate_frame, locate_objects, project_box, write_qa_for_dataset
from dima_core.data.qa.behavior import Q_BEHAVIOR
from dima_core.data.qa.perception import Q_IMPORTANT
from dima_core.data.qa.planning import Q_DANGEROUS, Q_SAFE
from dima_core.data.qa.projection import point_in_polygon
from qa_fixtures import AgentSpec, make_camera, make_sample

REPO = Path(__file__).resolve().parents[1]


def answer(frame, category: str, question: str) -> str:
    matches = [qa.answer for qa in frame.qa[category] if qa.question == question]
    assert len(matches) == 1, f"{question!r} asked {len(matches)} times"
    return matches[0]


def test_car_ahead_tag_is_inside_its_projected_box() -> None:
    sample = make_sample([AgentSpec(15.0, 0.0, vx=5.0)])
    frame, facts = generate_frame(sample)
    (obj,) = frame.key_objects
    assert obj.tag.camera == "CAM_FRONT" and obj.tag.index == 1
    proj = project_box(sample.agents.boxes[0], sample.camera("CAM_FRONT"))
    assert proj is not None
    assert point_in_polygon(proj.hull, obj.tag.x, obj.tag.y)
    # A box straight ahead and level with the camera projects around the image centre column; the tag is its
    # centre, which is visible.
    assert abs(obj.tag.x - sample.camera("CAM_FRONT").width / 2) < 1.0
    x0, y0, x1, y1 = obj.bbox_2d
    assert x0 <= obj.tag.x <= x1 and y0 <= obj.tag.y <= y1
    assert obj.category == "Vehicle" and obj.status == "Moving" and obj.visual_description == "Car."
    important = answer(frame, "perception", Q_IMPORTANT)
    assert important == f"There is a car to the front of the ego vehicle. The ID of this object is {obj.tag}."


def test_tag_avoids_the_occluding_car() -> None:
    # A tall truck 25 m ahead behind a car at 10 m: only the truck's upper part is visible in CAM_FRONT.
    sample = make_sample(
        [AgentSpec(10.0, 0.0, vx=8.0), AgentSpec(25.0, 0.0, vx=8.0, category="vehicle.truck", size=(2.5, 8.0, 4.0))]
    )
    locations = locate_objects(sample)
    car, truck = locations[0], locations[1]
    assert truck.camera == "CAM_FRONT"
    assert point_in_polygon(truck.projected.hull, *truck.pixel)
    assert not point_in_polygon(car.projected.hull, *truck.pixel)
    assert truck.visible_pixels < car.visible_pixels


def test_box_straddling_the_camera_is_clipped_at_the_near_plane() -> None:
    cam = make_camera("CAM_FRONT")
    # A long bus alongside the ego, its centre just behind the front camera (mounted 1.7 m ahead): only its front
    # half is seen, entering the image from the left edge.
    box = np.array([1.5, 3.0, 1.5, 2.5, 12.0, 3.0, 0.0])
    proj = project_box(box, cam)
    assert proj is not None and len(proj.image_polygon) >= 3 and proj.centre_px is None
    assert np.isfinite(proj.hull).all()
    assert proj.bbox[0] == 0.0 and proj.bbox[2] < cam.width / 2
    # Entirely behind the camera: nothing to project.
    assert project_box(np.array([-10.0, 0.0, 1.0, 2.0, 4.0, 1.5, 0.0]), cam) is None


@pytest.mark.parametrize(
    "speed, lateral, accel, expected",
    [
        (10.0, 0.0, 0.0, "The ego vehicle is going straight. The ego vehicle is driving fast."),
        (0.0, 0.0, 0.0, "The ego vehicle is going straight. The ego vehicle is not moving."),
        (3.0, 3.0, 0.0, "The ego vehicle is steering to the left. The ego vehicle is driving slowly."),
        (
            6.0,
            -1.0,
            0.0,
            "The ego vehicle is slightly steering to the right. The ego vehicle is driving with normal speed.",
        ),
        (16.0, 0.0, 0.0, "The ego vehicle is going straight. The ego vehicle is driving very fast."),
    ],
)
def test_behavior_matches_ego_motion(speed: float, lateral: float, accel: float, expected: str) -> None:
    frame, facts = generate_frame(make_sample([], speed=speed, lateral_end=lateral, accel=accel))
    assert answer(frame, "behavior", Q_BEHAVIOR) == expected


def test_stationary_car_in_lane_makes_keeping_speed_dangerous() -> None:
    sample = make_sample([AgentSpec(14.0, 0.0)], speed=8.0)
    frame, facts = generate_frame(sample)
    (obj,) = frame.key_objects
    tag = str(obj.tag)
    assert obj.status == "Stationary"
    assert answer(frame, "perception", f"What is the moving status of object {tag}?") == "Stopped."
    assert answer(frame, "prediction", f"Would {tag} be in the moving direction of the ego vehicle?") == "Yes."
    assert answer(frame, "prediction", f"What is the future state of {tag}?") == "Stationary."
    hitting = answer(frame, "planning", f"What actions taken by the ego vehicle can lead to a collision with {tag}?")
    assert "Keep going at the same speed" in hitting
    prob = (
        f"What is the probability of colliding with {tag} after the ego vehicle goes straight and keeps the same speed?"
    )
    assert answer(frame, "planning", prob) == "High."
    reason = answer(
        frame,
        "planning",
        f"What actions could the ego vehicle take based on {tag}? Why take this action and what's the probability?",
    )
    assert reason.startswith("The action is to brake gently to a stop.")
    safe = answer(frame, "planning", Q_SAFE)
    assert "keep going at the same speed" not in safe.lower() and "brake" in safe.lower()
    # The right road boundary is 1.75 m to the right: changing lanes there leaves the road.
    assert not facts.actions["keep"].crosses_boundary and facts.actions["change_right"].crosses_boundary
    assert "Keep going at the same speed" in answer(frame, "planning", Q_DANGEROUS)


def test_crossing_pedestrian_and_parallel_car() -> None:
    ped = AgentSpec(12.0, -4.0, yaw=math.pi / 2, vy=1.5, category="human.pedestrian.adult", size=(0.7, 0.7, 1.8))
    oncoming = AgentSpec(25.0, 3.5, yaw=math.pi, vx=-8.0)
    frame, facts = generate_frame(make_sample([ped, oncoming], speed=6.0))
    by_noun = {f.noun: f for f in facts.key_objects}
    p, c = str(by_noun["pedestrian"].tag), str(by_noun["car"].tag)
    assert answer(frame, "prediction", f"Is {p} going to cross the ego path?") == "Yes."
    assert answer(frame, "prediction", f"Is {c} going to cross the ego path?") == "No."
    assert answer(frame, "prediction", f"Would {c} be in the moving direction of the ego vehicle?") == "No."
    assert answer(frame, "perception", f"What is the moving status of object {c}?") == "Going ahead."
    assert by_noun["pedestrian"].tier < by_noun["car"].tier  # the crossing pedestrian comes first: c1
    assert by_noun["pedestrian"].tag.index == 1


def test_every_tag_names_a_key_object_and_generation_is_deterministic(tmp_path: Path) -> None:
    agents = [
        AgentSpec(18.0, 0.0, vx=4.0),
        AgentSpec(-12.0, 0.3, vx=9.0),
        AgentSpec(8.0, -5.0, yaw=math.pi / 2, vy=1.0, category="human.pedestrian.adult", size=(0.6, 0.6, 1.7)),
        AgentSpec(30.0, 3.5, yaw=math.pi, vx=-10.0, category="vehicle.bus.rigid", size=(2.9, 11.0, 3.4)),
        AgentSpec(5.0, 6.0, category="movable_object.barrier", size=(2.0, 0.5, 1.0)),
    ]
    samples = [
        make_sample(agents, token="s0", image_dir=tmp_path / "samples"),
        make_sample(agents, speed=4.0, accel=-1.0, token="s1", image_dir=tmp_path / "samples"),
    ]
    out = tmp_path / "qa.json"
    ds = write_qa_for_dataset(samples, out)
    text = out.read_text()
    assert write_qa_for_dataset(samples, tmp_path / "qa2.json").to_json() == ds.to_json()
    assert (tmp_path / "qa2.json").read_text() == text

    loaded = load_drivelm(out)
    assert loaded.num_frames == 2 and set(loaded.scenes) == {"scene0"}
    assert loaded.scenes["scene0"].description.startswith("The ego vehicle")
    for _, frame in loaded.frames():
        assert 1 <= len(frame.key_objects) <= QAConfig().max_key_objects
        assert all(frame.qa[c] for c in ("perception", "prediction", "planning", "behavior"))
        known = {o.tag for o in frame.key_objects}
        for qa in frame.all_qa():
            assert set(qa.ctags) <= known, qa
        # Barriers off the ego path are no key objects (static_objects_only_in_path).
        assert all(o.category != "Obstacle" for o in frame.key_objects)
        # DriveLM keeps image paths relative to the JSON file.
        assert frame.image_paths["CAM_FRONT"] == "samples/CAM_FRONT.jpg"
    json.loads(text)


def test_categories_and_key_object_limit_from_config(tmp_path: Path) -> None:
    agents = [AgentSpec(10.0 + 6 * k, 0.0, vx=5.0) for k in range(4)] + [AgentSpec(12.0, 3.5, vx=5.0)]
    cfg = QAConfig(categories=["behavior"], max_key_objects=2)
    frame, _ = generate_frame(make_sample(agents), cfg)
    assert len(frame.key_objects) == 2 and not frame.qa["perception"] and len(frame.qa["behavior"]) == 1
    assert all(find_ctags(qa.question + qa.answer) == [] for qa in frame.all_qa())


def test_config_file_and_errors(tmp_path: Path) -> None:
    assert load_config(REPO / "config" / "qa.yaml", QAConfig, section="qa") == QAConfig()
    bad = tmp_path / "qa.yaml"
    bad.write_text("qa:\n  max_key_objects: 0\n")
    with pytest.raises(ConfigError, match=r"qa.yaml: key 'qa.max_key_objects': value 0 is out of range"):
        load_config(bad, QAConfig, section="qa")
    bad.write_text("qa:\n  speed_bins_mps: [5.0, 4.0, 8.0, 13.0]\n")
    with pytest.raises(ConfigError, match="speed_bins_mps must be increasing"):
        load_config(bad, QAConfig, section="qa")
    bad.write_text("qa:\n  categories: [perception, smalltalk]\n")
    with pytest.raises(ConfigError, match=r"qa.categories\[1\]"):
        load_config(bad, QAConfig, section="qa")


def test_tag_pixels_parse_back() -> None:
    frame, facts = generate_frame(make_sample([AgentSpec(9.0, 1.0, vx=2.0), AgentSpec(-9.0, -0.5, vx=7.0)]))
    for obj, fact in zip(frame.key_objects, facts.key_objects, strict=True):
        assert parse_ctag(str(obj.tag)) == obj.tag == fact.tag
        cam = next(c for c in make_sample().cameras if c.name == obj.tag.camera)
        assert 0 <= obj.tag.x < cam.width and 0 <= obj.tag.y < cam.height
