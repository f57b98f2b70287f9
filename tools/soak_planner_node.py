#!/usr/bin/env python
"""Soak the planner node: six 1600x900 synthetic-world JPEG cameras at a fixed camera rate over real DDS for many
minutes; memory and latency at the start and at the end.

    source tools/env.sh && python tools/soak_planner_node.py --config dima_tiny --rate 10 --minutes 10
    source tools/env.sh && python tools/soak_planner_node.py --weights dima_core/weights/planner_drive.safetensors

The node runs as deployed (``python -m dima_ros.planner_node`` with the shipped ``config/planner_node.yaml``; only the
model parameters change): the model config is exported to ONNX with seeded random weights (latency does not depend
on the weights), or ``--weights`` (a weights file or checkpoint, e.g. the shipped planner) with the config it
carries, and run by onnxruntime at ``--threads``. The publisher is test/ros_helpers/flood_feeder.py (its own
process, large-segment Fast DDS profile), at ``--rate`` Hz in one burst of ``--minutes``; it samples the node's
resident memory and counters every ``--sample-s`` seconds. Reported for the first and the last minute: pipeline
latency (trajectory received - frame stamp), the node's processing and model time per planned frame (p50 / p99), and
the frames planned / sent; plus the node's memory at the start and the end and its counters.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
NODE = "dima_soak_planner"


def _pct(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{np.percentile(values, 50):.1f} / {np.percentile(values, 99):.1f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="dima_tiny", help="model config under config/model/ or a YAML path")
    ap.add_argument(
        "--weights",
        type=Path,
        default=None,
        help="trained weights (.safetensors weights file or checkpoint) instead of --config's random ones; "
        "the model config is the one they carry",
    )
    ap.add_argument("--rate", type=float, default=10.0, help="camera rate (Hz)")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--sample-s", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=1, help="onnxruntime threads of the node")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra node parameter (YAML value), e.g. preprocess.jpeg_max_reduction=1",
    )
    ap.add_argument("--out", type=Path, help="JSON with the feeder's raw records and the summary")
    args = ap.parse_args(argv)

    import yaml

    from dima_core.export.onnx_export import export_onnx
    from dima_core.export.planner_loading import load_planner
    from dima_ros.launch_spec import node_spec, params_path
    from dima_ros.parameters import load_parameter_file, nest_parameters, write_parameter_file

    model_yaml = (
        Path(args.config) if args.config.endswith(".yaml") else ROOT / "config" / "model" / f"{args.config}.yaml"
    )
    with tempfile.TemporaryDirectory(prefix="dima-soak-") as tmp:
        tmp_dir = Path(tmp)
        if args.weights is not None:
            if not args.weights.is_file():
                ap.error(f"--weights {args.weights}: no such file")
            loaded = load_planner(checkpoint=args.weights)
        else:
            loaded = load_planner(model_config=model_yaml, seed=0)
        onnx = export_onnx(loaded, tmp_dir / loaded.config.name).onnx_path
        flat = load_parameter_file(params_path(node_spec("planner")), NODE)
        flat.update({"model.backend": "onnxruntime", "model.onnx_path": str(onnx), "model.threads": args.threads})
        for item in args.set:
            key, value = item.split("=", 1)
            flat[key] = yaml.safe_load(value)
        params = write_parameter_file(tmp_dir / "params.yaml", nest_parameters(flat))
        env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        node_log = open(tmp_dir / "node.log", "wb")  # noqa: SIM115 - closed below
        node = subprocess.Popen(
            [
                sys.executable,
                "-u",
                "-m",
                "dima_ros.planner_node",
                "--ros-args",
                "--params-file",
                str(params),
                "-r",
                f"__node:={NODE}",
            ],
            cwd=ROOT,
            env=env,
            stdout=node_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        cfg, out = tmp_dir / "feeder.json", tmp_dir / "feeder_out.json"
        cfg.write_text(
            json.dumps(
                {
                    "target": NODE,
                    "node_pid": node.pid,
                    "bursts": 1,
                    "burst_s": args.minutes * 60.0,
                    "pause_s": 3.0,
                    "rate_hz": args.rate,
                    "sample_s": args.sample_s,
                    "start_timeout_s": 300.0,
                }
            )
        )
        load_start = os.getloadavg()[0]
        try:
            rc = subprocess.call(
                [sys.executable, "-u", str(ROOT / "test" / "ros_helpers" / "flood_feeder.py"), str(cfg), str(out)],
                cwd=ROOT,
                env=env,
            )
        finally:
            node.terminate()
            try:
                node.wait(20)
            except subprocess.TimeoutExpired:
                node.kill()
            node_log.close()
        if rc != 0 or not out.is_file():
            print((tmp_dir / "node.log").read_text()[-3000:], file=sys.stderr)
            print(f"feeder failed (status {rc}): {out.read_text() if out.is_file() else 'no result'}", file=sys.stderr)
            return 1
        data = json.loads(out.read_text())
        if "error" in data:
            print(data["error"], (tmp_dir / "node.log").read_text()[-3000:], file=sys.stderr)
            return 1

    sent = data["sent"]
    t0 = sent[0]["stamp"]
    arrivals = {stamp: arrived for stamp, arrived in data["trajectories"]}
    values = {int(k): v for k, v in data["values"].items()}
    span_ns = sent[-1]["stamp"] - t0
    summary = {
        "load_1min_start": load_start,
        "load_1min_end": os.getloadavg()[0],
        "frames_sent": len(sent),
        "jpeg_kib": data["jpeg_kib"],
        "counters": data["counters"],
        "reports": data["reports"][-5:],
        "rss_mib": [s["rss_kib"] / 1024.0 for s in data["samples"]],
        "windows": {},
    }
    for name, lo, hi in (("first minute", 0, 60e9), ("last minute", span_ns - 60e9, span_ns + 1)):
        window = [f["stamp"] for f in sent if lo <= f["stamp"] - t0 < hi]
        planned = [s for s in window if s in arrivals]
        summary["windows"][name] = {
            "sent": len(window),
            "planned": len(planned),
            "pipeline_ms": _pct([(arrivals[s] - s) / 1e6 for s in planned]),
            "processing_ms": _pct([values[s]["processing_time_ms"] for s in planned if s in values]),
            "model_ms": _pct([values[s]["model_time_ms"] for s in planned if s in values]),
            "input_ms": _pct([values[s]["input_latency_ms"] for s in planned if s in values]),
        }
    if args.out:
        args.out.write_text(json.dumps({"summary": summary, "feeder": data}, indent=1))
    print("| window | frames planned / sent | pipeline | input | processing | model |\n|---|---:|---:|---:|---:|---:|")
    for name, w in summary["windows"].items():
        print(
            f"| {name} | {w['planned']} / {w['sent']} | {w['pipeline_ms']} | {w['input_ms']} | "
            f"{w['processing_ms']} | {w['model_ms']} |"
        )
    rss = summary["rss_mib"]
    print(
        f"\nnode RSS {rss[0]:.1f} MiB after {data['samples'][0]['t_s']:.0f} s, {rss[-1]:.1f} MiB after "
        f"{data['samples'][-1]['t_s']:.0f} s (min {min(rss):.1f}, max {max(rss):.1f}); {len(sent)} frames of six "
        f"{data['jpeg_kib']:.0f} KiB JPEGs at {args.rate} Hz over {span_ns / 1e9 / 60:.1f} min; counters "
        f"{data['counters']}; 1-min load {load_start:.1f} -> {summary['load_1min_end']:.1f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
