"""DriveLM-nuScenes JSON: loading, writing (byte-level round trip), c-tags, flat files and error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dima_core.data.drivelm import (
    CTag,
    DriveLMFormatError,
    find_ctags,
    format_ctag,
    load_drivelm,
    load_drivelm_flat,
    make_qa_id,
    parse_ctag,
    split_qa_id,
    to_flat,
    write_drivelm,
)

# One keyframe in DriveLM v1.1's train layout, field for field as OpenDriveLab/DriveLM challenge/data/train_sample.json.
SCENE = "f0f120e4d4b0441da90ec53b16ee169d"
FRAME = "4a0798f849ca477ab18009c3a20b7df2"
C1 = "<c1,CAM_BACK,1088.3,497.5>"
C3 = "<c3,CAM_FRONT,1043.2,82.2>"


def _qa(q: str, a: str, **extra) -> dict:
    return {"Q": q, "A": a, "C": None, "con_up": None, "con_down": None, "cluster": None, "layer": None, **extra}


def train_json() -> dict:
    return {
        SCENE: {
            "scene_description": "The ego vehicle proceeds through the intersection.",
            "key_frames": {
                FRAME: {
                    "key_object_infos": {
                        C1: {
                            "Category": "Vehicle",
                            "Status": "Moving",
                            "Visual_description": "Brown SUV.",
                            "2d_bbox": [966.6, 403.3, 1224.1, 591.7],
                        },
                        C3: {
                            "Category": "Traffic element",
                            "Status": None,
                            "Visual_description": "Green light.",
                            "2d_bbox": [676.4, 0.0, 1452.6, 171.5],
                        },
                    },
                    "QA": {
                        "perception": [_qa("What is the moving status of object " + C1 + "?", "Turn left.")],
                        "prediction": [_qa("What is the future state of " + C1 + "?", "Turn left.")],
                        "planning": [
                            _qa(
                                "In this scenario, what are safe actions to take for the ego vehicle?",
                                "Keep going at the same speed, decelerate gradually without braking.",
                            )
                        ],
                        "behavior": [
                            _qa(
                                "Predict the behavior of the ego vehicle.",
                                "The ego vehicle is going straight. The ego vehicle is driving fast.",
                            )
                        ],
                    },
                    "image_paths": {
                        "CAM_FRONT": "../nuscenes/samples/CAM_FRONT/x.jpg",
                        "CAM_BACK": "../nuscenes/samples/CAM_BACK/y.jpg",
                    },
                }
            },
        }
    }


def test_ctag_parse_and_format() -> None:
    tag = parse_ctag(C1)
    assert tag == CTag(1, "CAM_BACK", 1088.3, 497.5)
    assert str(tag) == C1 and tag.object_id == "c1"
    assert format_ctag(12, "CAM_FRONT_LEFT", 3.0, 4.04) == "<c12,CAM_FRONT_LEFT,3.0,4.0>"
    # DriveLM's matcher reads coordinates with the regex \d+\.\d+: integers must still carry a decimal.
    assert format_ctag(2, "CAM_FRONT", 100, 200).endswith(",100.0,200.0>")
    assert find_ctags(f"{C1} is behind {C3}.") == [parse_ctag(C1), parse_ctag(C3)]
    for bad in ("<c1,CAM_BACK,1088.3>", "c1,CAM_BACK,1,2", "<cX,CAM_BACK,1.0,2.0>", "<c1,FRONT,1.0,2.0>"):
        with pytest.raises(ValueError, match="not a c-tag"):
            parse_ctag(bad)
    with pytest.raises(ValueError):
        format_ctag(1, "FRONT", 1.0, 2.0)


def test_train_file_round_trip(tmp_path: Path) -> None:
    src = tmp_path / "v1_1_train_nus.json"
    src.write_text(json.dumps(train_json()))
    ds = load_drivelm(src)
    assert ds.num_frames == 1 and ds.num_qa == 4
    frame = ds.frame(FRAME)
    assert [o.tag.index for o in frame.key_objects] == [1, 3]
    light = frame.key_object(C3)
    assert light.status is None and light.category == "Traffic element" and light.bbox_2d[2] == 1452.6
    qa = frame.qa["perception"][0]
    assert qa.category == "perception" and qa.answer == "Turn left." and qa.tags is None
    assert qa.ctags == [parse_ctag(C1)]
    assert ds.scenes[SCENE].description.startswith("The ego vehicle")

    out = tmp_path / "out.json"
    write_drivelm(ds, out)
    assert json.loads(out.read_text()) == train_json()


def test_challenge_test_layout_with_tags(tmp_path: Path) -> None:
    data = train_json()
    scene = data[SCENE]
    del scene["scene_description"]
    frame = scene["key_frames"][FRAME]
    del frame["key_object_infos"]
    frame["QA"]["perception"][0]["tag"] = [0]
    frame["QA"]["behavior"][0]["tag"] = [0]
    src = tmp_path / "test.json"
    src.write_text(json.dumps(data))
    ds = load_drivelm(src)
    assert ds.frame(FRAME).qa["perception"][0].tags == [0]
    assert ds.frame(FRAME).qa["prediction"][0].tags is None
    out = tmp_path / "rt.json"
    write_drivelm(ds, out)
    assert json.loads(out.read_text()) == data  # no invented scene_description / key_object_infos


def test_flat_files_and_ids(tmp_path: Path) -> None:
    src = tmp_path / "train.json"
    src.write_text(json.dumps(train_json()))
    flat = to_flat(load_drivelm(src))
    assert [f.qa_id for f in flat] == [make_qa_id(SCENE, FRAME, i) for i in range(4)]
    assert split_qa_id(flat[3].qa_id) == (SCENE, FRAME, 3) and flat[3].question.startswith("Predict")

    conv = [
        {
            "id": f.qa_id,
            "image": f.images,
            "conversations": [{"from": "human", "value": "<image>\n" + f.question}, {"from": "gpt", "value": f.answer}],
        }
        for f in flat
    ]
    (tmp_path / "llama.json").write_text(json.dumps(conv))
    loaded = load_drivelm_flat(tmp_path / "llama.json")
    assert [(x.qa_id, x.question, x.answer) for x in loaded] == [(f.qa_id, f.question, f.answer) for f in flat]

    preds = {"method": "m", "results": [{"id": flat[0].qa_id, "question": flat[0].question, "answer": "A. Stopped."}]}
    (tmp_path / "sub.json").write_text(json.dumps(preds))
    (p,) = load_drivelm_flat(tmp_path / "sub.json")
    assert p.answer == "A. Stopped." and p.frame_token == FRAME and p.index == 0


@pytest.mark.parametrize(
    "mutate, key_path, problem",
    [
        (lambda d: d[SCENE].pop("key_frames"), SCENE, "missing required key 'key_frames'"),
        (
            lambda d: d[SCENE]["key_frames"][FRAME]["QA"]["planning"][0].pop("A"),
            f"{SCENE}.key_frames.{FRAME}.QA.planning[0]",
            "missing required key 'A'",
        ),
        (
            lambda d: d[SCENE]["key_frames"][FRAME]["QA"]["behavior"][0].update(Q=3),
            f"{SCENE}.key_frames.{FRAME}.QA.behavior[0].Q",
            "expected a string",
        ),
        (
            lambda d: d[SCENE]["key_frames"][FRAME]["QA"].update(driving=[]),
            f"{SCENE}.key_frames.{FRAME}.QA.driving",
            "unknown QA category",
        ),
        (
            lambda d: d[SCENE]["key_frames"][FRAME]["key_object_infos"][C1].update({"2d_bbox": [1, 2, 3]}),
            f"{SCENE}.key_frames.{FRAME}.key_object_infos.{C1}.2d_bbox",
            "expected 4 numbers",
        ),
        (
            lambda d: d[SCENE]["key_frames"][FRAME]["key_object_infos"].update({"<c9,CAM_FRONT>": {}}),
            f"{SCENE}.key_frames.{FRAME}.key_object_infos.<c9,CAM_FRONT>",
            "not a c-tag",
        ),
        (
            lambda d: d[SCENE]["key_frames"][FRAME]["QA"]["perception"][0].update(tag=["0"]),
            f"{SCENE}.key_frames.{FRAME}.QA.perception[0].tag[0]",
            "integer tag",
        ),
    ],
)
def test_malformed_file_names_file_and_key_path(tmp_path: Path, mutate, key_path: str, problem: str) -> None:
    data = train_json()
    mutate(data)
    src = tmp_path / "bad.json"
    src.write_text(json.dumps(data))
    with pytest.raises(DriveLMFormatError) as info:
        load_drivelm(src)
    err = info.value
    assert err.source == str(src) and err.key_path == key_path and problem in err.problem
    assert str(src) in str(err) and key_path in str(err)


def test_not_json_and_missing_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text("{not json")
    with pytest.raises(DriveLMFormatError, match="broken.json: not valid JSON"):
        load_drivelm(bad)
    with pytest.raises(FileNotFoundError, match="nowhere.json"):
        load_drivelm(tmp_path / "nowhere.json")
    (tmp_path / "flat.json").write_text(json.dumps([{"id": "no-underscores", "question": "q", "answer": "a"}]))
    with pytest.raises(DriveLMFormatError, match=r"flat.json at '\[0\].id'"):
        load_drivelm_flat(tmp_path / "flat.json")
