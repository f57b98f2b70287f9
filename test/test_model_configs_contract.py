"""Every planner architecture in config/model/*.yaml keeps the planner's contract (transformers' ModelTester pattern).

The YAML files are found by glob, so a new architecture is covered without editing this file. For each one:

- **forward**: :class:`~dima_core.models.vision_planner.VisionPlanner` at the config's own input size returns every
  field of ``PlannerOutput`` and of ``BeamTokens`` with the shape the config dictates (the shape tables:
  ``PlannerOutput`` in models/vision_planner.py, ``BeamTokens`` in models/beam.py), finite, and ``trajectory`` is
  the commanded row of ``trajectories``;
- **export**: dima_core's exporter (:func:`~dima_core.export.onnx_export.export_onnx`, BEAM outputs on) writes a
  graph whose inputs are the io_spec interface and whose outputs are ``EXPORT_OUTPUT_NAMES`` in order, with the
  batch-1 forward shapes, and that passes the exporter's own PyTorch parity check;
- **state dict**: the planner saved as a planner weights file (how planners ship) and loaded into a freshly built
  planner (different random weights before loading) gives back every tensor and the same outputs; ``load_dima``
  reads the same file into the same tensors and the same config.

Cost, one thread on the 2-core machine: the whole file (seven configs) took 64-79 s of user CPU (93-149 s of wall
under a load of 2.5-5); an ONNX export is ~3 s of CPU even for the smallest planner. Two configs are too big for
real arithmetic in ``make test`` (``HEAVY`` below, with what was measured): for them the forward shapes are checked
on the ``meta`` device (the same code, shape propagation only, no arithmetic) and the state-dict round trip tensor
by tensor; the checks that need real outputs (values, ONNX export, outputs after loading) run where CUDA is
available and are skipped, saying so, elsewhere.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from dima_core.config import config_from_dict
from dima_core.export.io_spec import planner_input_specs
from dima_core.export.onnx_export import export_onnx
from dima_core.export.planner_loading import LoadedPlanner, model_config_dict
from dima_core.models import BEAM_FIELDS, EXPORT_OUTPUT_NAMES, ModelConfig, VisionPlanner, load_model_config
from dima_core.models.dima import load_dima
from dima_core.models.dummy_inputs import dummy_inputs
from dima_core.models.vision_planner import PlannerOutput
from dima_core.models.weights_file import read_planner_weights, save_planner_weights

CONFIG_DIR = Path(__file__).resolve().parents[1] / "config" / "model"
CONFIGS = sorted(CONFIG_DIR.glob("*.yaml"))

# Configs whose real-arithmetic checks do not fit the CPU budget of `make test` (measured on the 2-core machine, one
# thread): the contract needs about five forwards (the forward, the fresh model before and after
# loading, the export's trace and its two parity runs).
HEAVY: dict[str, str] = {
    "vad_tiny": "its real-arithmetic checks take ~225 s of one CPU core (forward 25 s, export 135 s, round trip 65 s; "
    "6 x 640x360 ResNet-50, 100x100 BEV, 3 layers)",
    "vad_base": "one batch-1 forward did not finish within 15 min on the loaded 2-core machine (6 x 1280x720 "
    "ResNet-50, 200x200 BEV, 6 layers: 4x vad_tiny's pixels and BEV cells, twice its layers)",
}
HAS_CUDA = torch.cuda.is_available()
# A batch of two checks that the batch dimension is carried (and two different commands select two rows); the heavy
# configs run at the smallest batch.
BATCH, HEAVY_BATCH = 2, 1
# The exporter's output names -> the forward output they are (see flat_outputs).
EXPORT_TO_OUTPUT = {
    "trajectory": "trajectory",
    "trajectories": "trajectories",
    "ego_feature": "ego_feature",
    "bev_map": "bev",
    **{name: f"beam.{name}" for name in BEAM_FIELDS},
}

assert CONFIGS, f"no model configs found under {CONFIG_DIR}"
assert set(HEAVY) <= {p.stem for p in CONFIGS}, f"HEAVY names configs that do not exist: {sorted(HEAVY)}"


def flat_outputs(out: PlannerOutput) -> dict[str, torch.Tensor]:
    """Every tensor of a forward: the PlannerOutput fields by name, the BEAM tokens as ``beam.<field>``."""
    flat: dict[str, torch.Tensor] = {}
    for field in dataclasses.fields(out):
        value = getattr(out, field.name)
        if field.name == "beam":
            flat.update({f"beam.{name}": tensor for name, tensor in value.as_dict().items()})
        else:
            flat[field.name] = value
    return flat


def expected_shapes(config: ModelConfig, batch: int) -> dict[str, tuple[int, ...]]:
    """The shape of every forward output, derived from the config alone (the documented shape tables)."""
    b, c = batch, config.embed_dim
    hb, wb = config.bev.grid_size
    na, nm = config.agent_head.num_queries, config.map_head.num_vectors
    k, t_agent = config.agent_head.num_modes, config.agent_head.future_steps
    t = config.planner.future_steps
    return {
        "trajectories": (b, config.planner.num_commands, t, 2),
        "trajectory": (b, t, 2),
        "ego_feature": (b, config.planner.feature_dim),
        "bev": (b, c, hb, wb),
        "agent_centres": (b, na, 2),
        "map_centres": (b, nm, 2),
        "beam.bev": (b, hb * wb, c),
        "beam.ego": (b, 1, c),
        "beam.agents": (b, na, c),
        "beam.map": (b, nm, c),
        "beam.agent_boxes": (b, na, 7),
        "beam.agent_logits": (b, na, config.agent_head.num_classes),
        "beam.agent_velocities": (b, na, 2),
        "beam.agent_trajectories": (b, na, k, t_agent, 2),
        "beam.agent_mode_logits": (b, na, k),
        "beam.map_polylines": (b, nm, config.map_head.num_points, 2),
        "beam.map_logits": (b, nm, config.map_head.num_classes),
    }


@dataclasses.dataclass
class PlannerTester:
    """One config under test: how to build its planner and inputs, and on which device its arithmetic runs."""

    path: Path
    config: ModelConfig
    heavy: bool

    @property
    def batch(self) -> int:
        return HEAVY_BATCH if self.heavy else BATCH

    @property
    def device(self) -> str:
        """``cuda`` for heavy configs when there is one, ``meta`` (shapes only) for them otherwise, else ``cpu``."""
        if self.heavy:
            return "cuda" if HAS_CUDA else "meta"
        return "cpu"

    @property
    def real(self) -> bool:
        return self.device != "meta"

    def build(self, seed: int) -> VisionPlanner:
        torch.manual_seed(seed)
        with torch.device(self.device):
            return VisionPlanner(self.config).eval()

    def inputs(self) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) for k, v in dummy_inputs(self.config, batch=self.batch, seed=0).items()}

    def forward(self, model: VisionPlanner, inputs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.no_grad():
            return flat_outputs(model(**inputs))


@dataclasses.dataclass
class ForwardResult:
    tester: PlannerTester
    model: VisionPlanner
    inputs: dict[str, torch.Tensor]
    outputs: dict[str, torch.Tensor]


def _real_compute_marks(path: Path) -> list[pytest.MarkDecorator]:
    if path.stem not in HEAVY:
        return []
    return [
        pytest.mark.gpu,
        pytest.mark.skipif(
            not HAS_CUDA,
            reason=(
                f"{path.stem}: {HEAVY[path.stem]}; its forward shapes and state dict are checked on the CPU, "
                "its outputs on a CUDA machine"
            ),
        ),
    ]


ALL = [pytest.param(p, id=p.stem) for p in CONFIGS]
REAL = [pytest.param(p, id=p.stem, marks=_real_compute_marks(p)) for p in CONFIGS]


@pytest.fixture(scope="module")
def forward_results() -> Iterator[dict[Path, ForwardResult]]:
    """One seed-0 planner and one forward per config, computed on first use and shared by the tests of the module."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a shared 2-core machine: one intra-op thread is the fastest (test/training_fixtures)
    cache: dict[Path, ForwardResult] = {}

    class Lazy(dict):
        def __missing__(self, path: Path) -> ForwardResult:
            tester = PlannerTester(path, load_model_config(path), heavy=path.stem in HEAVY)
            model, inputs = tester.build(seed=0), tester.inputs()
            cache[path] = ForwardResult(tester, model, inputs, tester.forward(model, inputs))
            return cache[path]

    try:
        yield Lazy()
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("path", ALL)
def test_config_names_its_file(path: Path) -> None:
    # A config's name is what exports, sidecars and benchmark tables are called after: it must be the file's.
    assert load_model_config(path).name == path.stem


@pytest.mark.parametrize("path", ALL)
def test_forward_output_shapes(path: Path, forward_results: dict[Path, ForwardResult]) -> None:
    result = forward_results[path]
    tester, outputs = result.tester, result.outputs
    want = expected_shapes(tester.config, tester.batch)
    assert sorted(outputs) == sorted(want), "PlannerOutput / BeamTokens fields changed: update the contract table"
    got = {name: tuple(t.shape) for name, t in outputs.items()}
    assert got == want
    if not tester.real:
        return  # meta tensors have shapes only
    for name, tensor in outputs.items():
        assert tensor.dtype == torch.float32, (name, tensor.dtype)
        assert torch.isfinite(tensor).all(), f"{name} has non-finite values"
    # `trajectory` is the row of `trajectories` that each sample's command selects (the two samples differ).
    command = result.inputs["command"]
    assert command.unique().numel() == min(tester.batch, tester.config.planner.num_commands)
    rows = outputs["trajectories"][torch.arange(tester.batch, device=command.device), command]
    torch.testing.assert_close(outputs["trajectory"], rows, rtol=0, atol=0)


@pytest.mark.parametrize("path", REAL)
def test_onnx_export_output_names_and_shapes(
    path: Path, tmp_path: Path, forward_results: dict[Path, ForwardResult]
) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    result = forward_results[path]
    config = result.tester.config
    # The exporter works on the CPU (its parity check compares with onnxruntime's CPU provider) and moves the model
    # there: it gets the very planner whose forward the shape test checked, a CPU copy of it when that ran on CUDA.
    model = result.model if result.tester.device == "cpu" else copy.deepcopy(result.model)
    loaded = LoadedPlanner(model, config, {"model_config": str(path), "random_weights_seed": 0})
    exported = export_onnx(loaded, tmp_path, with_beam=True)

    assert exported.sidecar.output_names == EXPORT_OUTPUT_NAMES
    assert exported.sidecar.inputs == planner_input_specs(config)
    graph = onnx.load(str(exported.onnx_path), load_external_data=False).graph
    assert tuple(o.name for o in graph.output) == EXPORT_OUTPUT_NAMES
    want = expected_shapes(config, batch=1)
    got = {o.name: tuple(int(d.dim_value) for d in o.type.tensor_type.shape.dim) for o in graph.output}
    assert got == {name: want[EXPORT_TO_OUTPUT[name]] for name in EXPORT_OUTPUT_NAMES}
    assert exported.sidecar.parity["passed"], exported.sidecar.parity


@pytest.mark.parametrize("path", ALL)
def test_state_dict_round_trip_through_a_weights_file(
    path: Path, tmp_path: Path, forward_results: dict[Path, ForwardResult]
) -> None:
    result = forward_results[path]
    tester, original = result.tester, result.model
    if not tester.real:
        # Meta tensors hold no values to save: the heavy config's round trip runs on real (untouched) CPU weights.
        original = dataclasses.replace(tester, heavy=False).build(seed=0)
    state = original.state_dict()
    weights_path = save_planner_weights(
        tmp_path / f"{path.stem}.safetensors",
        state,
        model_config_dict(tester.config),
        {"test": "model config contract"},
    )

    weights = read_planner_weights(weights_path)
    assert config_from_dict(weights.model_config, ModelConfig) == tester.config
    fresh = dataclasses.replace(tester, heavy=tester.heavy and tester.real).build(seed=1)
    assert any(not torch.equal(a.cpu(), state[k].cpu()) for k, a in fresh.state_dict().items()), (
        "a planner built from another seed has the same weights: the round trip below would prove nothing"
    )
    if tester.real:
        before = tester.forward(fresh, result.inputs)
        assert not torch.equal(before["trajectories"], result.outputs["trajectories"])
    fresh.load_state_dict(weights.state_dict, strict=True)
    _assert_same_state(fresh.state_dict(), state)
    if tester.real:
        after = tester.forward(fresh, result.inputs)
        for name, tensor in result.outputs.items():
            torch.testing.assert_close(after[name], tensor, msg=lambda m, name=name: f"{name}: {m}")

    # The deployment loader (dima export, eval, the torch backend) reads the same file into the same planner.
    loaded = load_dima(weights_path, mode="vision")
    assert loaded.model_config == tester.config and loaded.model.teacher is None
    _assert_same_state(loaded.model.planner.state_dict(), state)


def _assert_same_state(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> None:
    assert list(got) == list(want), "state dict keys differ"
    for key, tensor in want.items():
        # Values, not dtypes: a weights file stores every tensor as float32 (num_batches_tracked included), and
        # load_state_dict copies it back into the module's integer buffer.
        assert torch.equal(got[key].cpu().to(tensor.dtype), tensor.cpu()), key
