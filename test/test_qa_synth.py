"""QA and pictures on a generated synthetic world, read back through the devkit (the real data path)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from dima_core.data.drivelm import load_drivelm
from dima_core.data.qa import QAConfig, project_box, write_qa_for_dataset
from dima_core.data.qa.facts import analyse
from dima_core.data.qa.projection import point_in_polygon
from dima_core.viz import RenderOptions, figure_size


def _inside_with_tolerance(hull: np.ndarray, x: float, y: float, tol: float = 1.0) -> bool:
    """Inside the projected hull, allowing the tag's one-decimal rounding and mask-pixel quantisation."""
    if point_in_polygon(hull, x, y):
        return True
    dist = cv2.pointPolygonTest(hull.astype(np.float32).reshape(-1, 1, 2), (float(x), float(y)), True)
    return -dist <= tol


def test_qa_tags_point_inside_their_objects_projected_box(reader, samples, tmp_path: Path) -> None:
    out = tmp_path / "drivelm_synth.json"
    dataset = write_qa_for_dataset(reader, out)
    loaded = load_drivelm(out)
    assert loaded.num_frames == len(samples) == dataset.num_frames
    cfg = QAConfig()
    tagged = 0
    for sample in samples:
        frame = loaded.frame(sample.token)
        assert frame.qa["behavior"] and frame.qa["planning"]
        # Image paths are relative to the QA file and resolve to the sample's camera images.
        for cam in sample.cameras:
            assert (out.parent / frame.image_paths[cam.name]).resolve() == Path(cam.image_path).resolve()
        facts = analyse(sample, cfg)
        assert [f.tag for f in facts.key_objects] == [o.tag for o in frame.key_objects]
        for fact, obj in zip(facts.key_objects, frame.key_objects, strict=True):
            camera = sample.camera(obj.tag.camera)
            proj = project_box(sample.agents.boxes[fact.agent_index], camera)
            assert proj is not None
            assert _inside_with_tolerance(proj.hull, obj.tag.x, obj.tag.y), (sample.token, obj.tag)
            assert 0 <= obj.tag.x <= camera.width and 0 <= obj.tag.y <= camera.height
            tagged += 1
        known = {o.tag for o in frame.key_objects}
        for qa in frame.all_qa():
            assert set(qa.ctags) <= known
    assert tagged > 0, "the synthetic world should give some key objects"


def test_data_show_writes_picture_of_the_right_size(synth_world, samples, tmp_path: Path, capsys) -> None:
    from dima_core.cli import main

    out = tmp_path / "show.png"
    rc = main(
        [
            "data",
            "show",
            "--dataroot",
            str(synth_world.dataroot),
            "--version",
            synth_world.version,
            "--sample",
            "1",
            "--tile-width",
            "320",
            "--qa",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert samples[1].token in printed
    image = cv2.imread(str(out))
    assert image is not None
    width, height = figure_size(samples[1], RenderOptions(tile_width=320))
    assert image.shape == (height, width, 3)
    # The camera tiles show the rendered world, not a blank canvas.
    assert image[: height // 2, :320].std() > 5.0
    # A token works as well as an index.
    rc = main(
        [
            "data",
            "show",
            "--dataroot",
            str(synth_world.dataroot),
            "--version",
            synth_world.version,
            "--sample",
            samples[0].token,
            "--out",
            str(tmp_path / "by_token.png"),
        ]
    )
    assert rc == 0 and (tmp_path / "by_token.png").is_file()
