"""Two-process DDP (torchrun, gloo, CPU) stage-2 run: both ranks end with bit-identical parameters (frozen LLM base
included), rank 0 alone checkpoints, and the checkpoint holds no LLM base weight.

The LLM is a tiny random Llama saved locally (stage2_helpers.write_tiny_local_llm) so that each process loads it in
about a second; the joint model, prompts, LoRA, losses and DDP wiring are the real ones.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from dima_core.io.checkpoint import load_checkpoint, resolve_checkpoint
from stage2_helpers import micro_mllm_config, stage2_cli_args, write_stage2_yaml, write_tiny_local_llm
from training_fixtures import free_port, run_checked, torchrun_command


@pytest.mark.slow
@pytest.mark.integration
def test_two_process_gloo_stage2_keeps_replicas_identical(
    synth_world, micro_model, micro_index, tmp_path: Path
) -> None:
    llm_dir = write_tiny_local_llm(tmp_path / "tiny_llm")
    mllm = micro_mllm_config(source="local", path=str(llm_dir), gguf_file=None)
    config = write_stage2_yaml(tmp_path / "cfg", mllm)
    out = tmp_path / "ddp"
    args = stage2_cli_args(synth_world, config, micro_model, micro_index, out, "--max-steps", "2", "--no-tensorboard")
    proc = run_checked(torchrun_command(2, free_port(), "-m", "dima_core.cli", *args), timeout=400)
    log = proc.stdout + proc.stderr

    digests = {p.name: p.read_text().strip() for p in sorted((out / "replicas").glob("rank*.sha256"))}
    assert set(digests) == {"rank0.sha256", "rank1.sha256"}, log
    assert len(set(digests.values())) == 1, f"replicas diverged: {digests}"
    assert "all 2 ranks hold identical parameters" in log
    assert log.count("stage 2: 2 steps") == 1, "only rank 0 prints the summary"

    state = load_checkpoint(resolve_checkpoint(out))
    assert state["stage"] == 2 and state["step"] == 2 and state["world_size"] == 2
    names = list(state["model"])
    assert any("lora_" in n for n in names) and any(n.startswith("teacher.adapters.") for n in names)
    assert not [n for n in names if n.startswith("teacher.llm.") and "lora_" not in n]
    assert state["model_config"]["mllm"]["llm"]["source"] == "local"
