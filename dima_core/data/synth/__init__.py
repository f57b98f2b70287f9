"""Synthetic driving world that writes the nuScenes format (tables, camera JPEGs, LIDAR_TOP, map expansion, CAN
bus) so the data layer reads it through the real devkit, exactly like real nuScenes.

Entry points: :class:`SynthConfig`, :meth:`SynthWorld.generate`, :func:`render_frame`, :func:`generate_dataset`.
"""

from dima_core.data.synth.config import LONG_TAIL_SCENARIOS, SCENARIOS, SynthConfig
from dima_core.data.synth.world import (
    META_FILE,
    QA_FILE,
    SynthScene,
    SynthWorld,
    generate_dataset,
    lane_token,
    render_frame,
)

__all__ = [
    "LONG_TAIL_SCENARIOS",
    "META_FILE",
    "QA_FILE",
    "SCENARIOS",
    "SynthConfig",
    "SynthScene",
    "SynthWorld",
    "generate_dataset",
    "lane_token",
    "render_frame",
]
