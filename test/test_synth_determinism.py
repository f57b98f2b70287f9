"""Same seed and config -> byte-identical dataroot; another seed -> different data."""

from __future__ import annotations

import hashlib
from pathlib import Path


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes(tmp_path):
    from dima_core.data.synth import generate_dataset
    from synth_fixtures import small_config

    cfg = small_config(scene_seconds=2.0, camera={"width": 160, "height": 90})
    generate_dataset(str(tmp_path / "a"), cfg, 2, seed=5, scenarios=["ped_crossing", "overtake"])
    generate_dataset(str(tmp_path / "b"), cfg, 2, seed=5, scenarios=["ped_crossing", "overtake"])
    generate_dataset(str(tmp_path / "c"), cfg, 2, seed=6, scenarios=["ped_crossing", "overtake"])
    a, b, c = (_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert any(k.endswith(".jpg") for k in a) and any(k.endswith(".pcd.bin") for k in a)
    assert a != c


def test_refuses_non_empty_output(tmp_path):
    import argparse

    import pytest

    from dima_core.commands import data_synth

    (tmp_path / "keep.txt").write_text("x")
    parser = argparse.ArgumentParser()
    data_synth.add_parser(parser.add_subparsers())
    args = parser.parse_args(["synth", "--out", str(tmp_path), "--scenes", "1", "--seconds", "2"])
    with pytest.raises(ValueError, match="not empty"):
        args.func(args)
    assert (tmp_path / "keep.txt").exists()
