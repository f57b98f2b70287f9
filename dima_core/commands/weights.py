"""``dima weights export|show``: a trained run's planner as one safetensors file, and what such a file holds.

    dima weights export runs/planner_drive --out dima_core/weights/planner_drive.safetensors
    dima weights show dima_core/weights/planner_drive.safetensors

``export`` takes a stage-1 or stage-2 checkpoint (file, or run directory via its ``latest`` pointer) and writes the
planner's float32 tensors with the resolved model config and provenance as metadata
(:mod:`dima_core.models.weights_file`); the optimiser, data order and RNG states stay behind. The written file is
read back and its planner's outputs compared with the checkpoint's on one dummy frame before the command succeeds.
Every planner loader accepts the file where it accepts a checkpoint (``dima export --checkpoint FILE``,
``dima sim run --policy checkpoint:FILE``, ``dima eval --checkpoint FILE``).
"""

from __future__ import annotations

import argparse
import json
import logging

log = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "weights",
        help="planner weights files (safetensors): export a run, inspect a file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="weights_command", required=True)
    export = commands.add_parser("export", help="write a checkpoint's planner as a safetensors weights file")
    export.add_argument("checkpoint", help="stage-1/2 checkpoint file or run directory")
    export.add_argument("--out", required=True, help="weights file to write (*.safetensors)")
    export.add_argument(
        "--note",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra provenance stored in the file's source metadata (repeatable)",
    )
    export.set_defaults(func=run_export)
    show = commands.add_parser("show", help="print a weights file's model, provenance and size")
    show.add_argument("path", help="*.safetensors planner weights file")
    show.set_defaults(func=run_show)
    return parser


def parse_notes(notes: list[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings as a dict; a note without ``=`` is an error naming it."""
    parsed = {}
    for note in notes:
        key, sep, value = note.partition("=")
        if not sep or not key:
            raise ValueError(f"--note {note!r}: expected KEY=VALUE")
        parsed[key] = value
    return parsed


def run_export(args: argparse.Namespace) -> int:
    import torch

    from dima_core.config import config_to_dict
    from dima_core.models.dima import load_dima
    from dima_core.models.dummy_inputs import dummy_inputs
    from dima_core.models.weights_file import save_planner_weights

    loaded = load_dima(args.checkpoint, mode="vision")
    planner = loaded.model.planner
    train_config = loaded.train_config or {}
    source = {
        "checkpoint": str(loaded.checkpoint),
        "step": loaded.step,
        "stage": loaded.stage,
        "train_config_dataroot": str((train_config.get("data") or {}).get("dataset", {}).get("dataroot", "")),
        "train_config_epochs": train_config.get("epochs"),
        **parse_notes(args.note),
    }
    path = save_planner_weights(args.out, planner.state_dict(), config_to_dict(loaded.model_config), source)
    # Read back through the public loader (it validates the header) and compare outputs: a file that does not
    # reproduce the run is an error.
    reloaded = load_dima(path, mode="vision").model.planner
    inputs = dummy_inputs(loaded.model_config, batch=1)
    with torch.no_grad():
        want = planner(**inputs).trajectory
        got = reloaded(**inputs).trajectory
    if not torch.equal(want, got):
        raise RuntimeError(
            f"{path} does not reproduce {loaded.checkpoint}: max trajectory difference "
            f"{(want - got).abs().max().item():.3g} m"
        )
    size_mb = path.stat().st_size / 1e6
    print(
        f"wrote {path} ({size_mb:.1f} MB, {sum(v.numel() for v in planner.state_dict().values()) / 1e6:.2f} M "
        f"values, model {loaded.model_config.name}, step {loaded.step}); outputs equal the checkpoint's"
    )
    return 0


def run_show(args: argparse.Namespace) -> int:
    from dima_core.models.weights_file import read_planner_weights

    weights = read_planner_weights(args.path)
    values = sum(v.numel() for v in weights.state_dict.values())
    print(
        f"{args.path}: model {weights.model_config.get('name')}, {len(weights.state_dict)} tensors, "
        f"{values / 1e6:.2f} M values"
    )
    print("source:", json.dumps(weights.source, indent=2, sort_keys=True))
    return 0
