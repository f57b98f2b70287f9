"""The dima_tiny planner exports to ONNX (opset 17, fixed shapes) and onnxruntime reproduces the trajectory."""

from pathlib import Path

import numpy as np
import pytest
import torch

from dima_core.models import EXPORT_OUTPUT_NAMES, ExportablePlanner, VisionPlanner, load_model_config
from dima_core.models.dummy_inputs import dummy_inputs

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

CONFIG = Path(__file__).resolve().parents[1] / "config" / "model" / "dima_tiny.yaml"


def test_dima_tiny_onnx_matches_torch(tmp_path):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    cfg = load_model_config(CONFIG)
    wrapper = ExportablePlanner(VisionPlanner(cfg)).eval()
    inputs = dummy_inputs(cfg, batch=1)
    names = wrapper.input_names
    args = tuple(inputs[n] for n in names)
    path = tmp_path / "dima_tiny.onnx"
    with torch.no_grad():
        expected = wrapper(*args)
        torch.onnx.export(
            wrapper,
            args,
            str(path),
            input_names=list(names),
            output_names=list(EXPORT_OUTPUT_NAMES),
            opset_version=17,
            dynamo=False,
        )
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert [o.name for o in model.graph.output] == list(EXPORT_OUTPUT_NAMES)
    ops = {n.op_type for n in model.graph.node}
    assert "GridSample" in ops and "NonZero" not in ops and "Loop" not in ops and "If" not in ops

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    graph_inputs = [i.name for i in session.get_inputs()]
    # inputs the graph does not read are pruned by the exporter: ego_status when use_ego_status is off
    assert graph_inputs == [n for n in names if n != "ego_status"]
    feeds = {n: inputs[n].numpy() for n in graph_inputs}
    results = dict(zip(EXPORT_OUTPUT_NAMES, session.run(None, feeds), strict=True))
    assert results["trajectory"].shape == (1, 6, 2)
    assert np.abs(results["trajectory"] - expected[0].numpy()).max() < 1e-4
    assert np.abs(results["trajectories"] - expected[1].numpy()).max() < 1e-4
    assert np.abs(results["bev"] - expected[EXPORT_OUTPUT_NAMES.index("bev")].numpy()).max() < 1e-3
    # the command input is live in the graph: another command selects another mode
    feeds["command"] = np.array([0], dtype=np.int64)
    other = dict(zip(EXPORT_OUTPUT_NAMES, session.run(None, feeds), strict=True))
    assert np.allclose(other["trajectory"], results["trajectories"][:, 0], atol=1e-5)
