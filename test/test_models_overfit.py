"""The micro planner can fit a few real synthetic samples: the whole stage-1 path (dataset, collate, VisionPlanner,
PlannerLoss) carries a learning signal to the trajectory.

Threshold, measured (CPU, 1 thread, micro model of training_fixtures, 4 samples, Adam lr 3e-3, 120 steps on one
fixed batch, 2026-11-22): the imitation L1 (plan_reg) fell from 5.40 m at initialisation to 0.79 m (best of the last
10 steps), 15 % of the start. The test asks for below 30 % of the initial value and below 1.5 m: twice the measured
margin for run-to-run and machine noise, while a planner whose gradient does not reach the trajectory head stays at
its initial error.
"""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.usefixtures("single_thread")

STEPS = 120
NUM_SAMPLES = 4


@pytest.mark.integration
def test_micro_planner_overfits_a_few_synthetic_samples(micro_model, micro_index) -> None:
    from dima_core.data.dataset import DrivingDataset, collate
    from dima_core.data.index import SampleIndex
    from dima_core.models import VisionPlanner, load_model_config
    from dima_core.models.losses import PlannerLoss
    from dima_core.training.config import TrainConfig
    from dima_core.training.stage1 import planner_targets, stage1_data_config

    torch.manual_seed(0)
    model_config = load_model_config(micro_model)
    index = SampleIndex.load(micro_index)
    data_config = stage1_data_config(TrainConfig(), model_config)
    dataset = DrivingDataset(index, data_config)
    # Samples with a full GT future, spread over the world so the commands differ.
    usable = [i for i in range(len(dataset)) if index[i].has_full_future]
    picks = usable[:: max(1, len(usable) // NUM_SAMPLES)][:NUM_SAMPLES]
    batch = collate([dataset[i] for i in picks])
    targets = planner_targets(batch)

    model = VisionPlanner(model_config)
    loss_fn = PlannerLoss(model_config.loss, model_config.bev.x_range, model_config.bev.y_range)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    history = []
    for _ in range(STEPS):
        output = model(batch["images"], batch["intrinsics"], batch["cam_to_ego"], batch["ego_status"], batch["command"])
        losses = loss_fn(output, targets)
        optimizer.zero_grad()
        losses["total"].backward()
        optimizer.step()
        history.append(float(losses["plan_reg"]))

    initial, final = history[0], min(history[-10:])
    assert all(torch.isfinite(torch.tensor(history)))
    print(f"plan L1 over {STEPS} steps: {initial:.3f} -> {final:.3f} m")
    assert final < 0.3 * initial, f"plan L1 {initial:.3f} -> {final:.3f}"
    assert final < 1.5, f"plan L1 {initial:.3f} -> {final:.3f}"
