"""`dima viz` end to end: a micro checkpoint's boxes, map and plan drawn per keyframe (PNGs) and per scene (an MP4
that cv2 reads back), and an external results file drawn without a model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from dima_core.cli import main as dima_main
from dima_core.eval.results_file import write_results
from dima_core.viz import count_video_frames
from eval_ckpt_helpers import train_micro_checkpoint

pytestmark = pytest.mark.usefixtures("single_thread")


def test_viz_checkpoint_writes_pngs_and_a_readable_mp4(synth_world, micro_model, micro_index, tmp_path, capsys):
    run = train_micro_checkpoint(synth_world, micro_model, micro_index, tmp_path / "run", steps=1)
    out = tmp_path / "viz"
    # No --index: the command indexes the split itself at the model's map resolution.
    argv = [
        "viz",
        "--checkpoint",
        str(run),
        "--dataroot",
        str(synth_world.dataroot),
        "--version",
        synth_world.version,
        "--split",
        "val",
        "--out",
        str(out),
        "--max-samples",
        "3",
        "--tile-width",
        "96",
        "--score-threshold",
        "0.0",
        "--device",
        "cpu",
    ]
    assert dima_main(argv) == 0
    pngs = sorted(out.glob("*/*.png"))
    assert len(pngs) == 3
    image = cv2.imread(str(pngs[0]))
    assert image is not None and image.ndim == 3 and image.std() > 0
    videos = list(out.glob("*.mp4"))
    assert len(videos) == 1 and count_video_frames(videos[0]) == 3
    capture = cv2.VideoCapture(str(videos[0]))
    ok, frame = capture.read()
    capture.release()
    assert ok and frame.shape[0] == image.shape[0] // 2 * 2
    assert "3 pictures" in capsys.readouterr().out


def test_viz_results_file_draws_an_external_planner(synth_world, samples, tmp_path, capsys) -> None:
    val = [s for s in samples if s.split == "val"]
    scene = val[0].scene_name
    plans = {s.token: s.ego_future + np.array([0.0, 1.0]) for s in val}  # an "external planner": GT shifted left
    results = tmp_path / "external.json"
    write_results(results, plans)
    out = tmp_path / "viz"
    argv = [
        "viz",
        "--results",
        str(results),
        "--dataroot",
        str(synth_world.dataroot),
        "--version",
        synth_world.version,
        "--scene",
        scene,
        "--out",
        str(out),
        "--max-samples",
        "2",
        "--tile-width",
        "96",
    ]
    assert dima_main(argv) == 0
    assert len(list((out / scene).glob("*.png"))) == 2
    assert count_video_frames(out / f"{scene}.mp4") == 2
    bad = [
        "viz",
        "--results",
        str(results),
        "--dataroot",
        str(synth_world.dataroot),
        "--version",
        synth_world.version,
        "--scene",
        "no-such-scene",
        "--out",
        str(tmp_path / "none"),
    ]
    assert dima_main(bad) == 2
    assert "not in the selected split" in capsys.readouterr().err
