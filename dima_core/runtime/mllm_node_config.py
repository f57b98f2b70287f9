"""``MllmNodeConfig``: the typed parameters of the MLLM node (``dima_ros/mllm_node.py``).

``dima_ros.parameters`` declares one ROS parameter per field (description, range and read-only flag from
:func:`dima_core.runtime.config.param`) and validates them at start and on change; ``config/mllm_node.yaml``
holds the defaults under ``/**: ros__parameters:``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dima_core.runtime.config import param


@dataclass
class MllmNodeConfig:
    """Parameters of the MLLM node."""

    checkpoint: str = param("", read_only=True, help="stage-2 checkpoint file or run directory (holds the teacher)")
    device: Literal["auto", "cpu", "cuda"] = param(
        "auto", read_only=True, help="torch device; auto = cuda when available (cuda without a GPU is an error)"
    )
    num_threads: int = param(0, lo=0, hi=256, read_only=True, help="torch CPU threads; 0 keeps torch's default")
    max_question_chars: int = param(
        1000, lo=1, hi=100_000, help="questions longer than this are refused before tokenisation"
    )
    max_question_tokens: int = param(
        0,
        lo=0,
        hi=8192,
        read_only=True,
        help="questions with more tokens are refused; 0 = the checkpoint's joint.max_question_tokens",
    )
    max_new_tokens: int = param(48, lo=1, hi=4096, help="generation budget of an answer (tokens)")
    timeout_s: float = param(
        30.0, lo=0.1, hi=3600.0, help="a request not answered within this time (queue wait included) fails"
    )
    queue_size: int = param(
        8, lo=1, hi=256, read_only=True, help="requests waiting or running at once; more are refused ('busy')"
    )
    publish_dual_trajectory: bool = param(
        False,
        read_only=True,
        help="plan DiMA-Dual on each BeamTokens frame (newest only) and publish ~/output/dual_trajectory and "
        "~/output/dual_path; needs BeamTokens with plan_feature",
    )
    token_buffer_size: int = param(
        20, lo=1, hi=10_000, read_only=True, help="BEAM token frames kept, so a question can name a frame by stamp"
    )


__all__ = ["MllmNodeConfig"]
