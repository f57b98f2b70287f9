"""Typed configuration of the nuScenes data layer (reader, cached index, PyTorch dataset).

Loaded from YAML through :mod:`dima_core.config` (``config/data.yaml``, section ``data``)::

    from dima_core.config import load_config
    from dima_core.data.config import DataConfig
    cfg = load_config("config/data.yaml", DataConfig, section="data")
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dima_core.config import ranged
from dima_core.constants import MAP_POINTS_PER_VECTOR

# ImageNet statistics on RGB values scaled to [0, 1] (torchvision / timm convention).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


@dataclass
class DataConfig:
    """Where the data is and how samples become tensors.

    ``image_size`` is ``(height, width)`` of the network input; VAD-Tiny uses 0.4 x 1600x900 = (360, 640).
    """

    dataroot: str = ranged("data/nuscenes", help="nuScenes (or synthetic world) root with v1.0-*/, samples/, maps/")
    version: str = ranged("v1.0-mini", help="devkit table version, e.g. v1.0-mini, v1.0-trainval")
    can_bus_root: str | None = ranged(
        None, help="folder holding the can_bus/ expansion; None looks in dataroot (BEVFormer keeps it one level up)"
    )
    use_can_bus: bool = ranged(True, help="take ego status from the CAN bus 'pose' messages when the scene has them")
    can_bus_max_gap_s: float = ranged(
        0.25, lo=0.0, hi=5.0, help="fall back to ego poses when no CAN pose message lies this close to the sample"
    )
    ego_status_min_dt_s: float = ranged(
        0.2,
        lo=0.01,
        hi=2.0,
        help="finite-difference ego status: shortest time span to a neighbouring reference-sensor pose",
    )
    with_map: bool = ranged(True, help="build the GT vector map (needs maps/expansion/<location>.json)")
    longtail_token_files: list[str] = ranged(
        default_factory=list, help='JSON files {"<split name>": [sample tokens]} whose names become sample tags'
    )
    index_path: str | None = ranged(None, help="cached index written by `dima data index`")
    image_cache: str | None = ranged(
        None,
        help="pre-decoded images at image_size written by `dima data cache` (read instead of the JPEGs; "
        "identical items); a cache of other data or another size is refused with the rebuild command",
    )

    image_size: tuple[int, int] = ranged((360, 640), lo=16, hi=4096, help="network input (height, width) in pixels")
    # Identity by default: the planner normalises RGB in [0, 1] itself (ImageBackbone), so the exported model and the
    # ROS node feed plain [0, 1] pixels and normalisation lives in one place. Set IMAGENET_MEAN/STD here only for
    # models that expect pre-normalised input.
    image_mean: tuple[float, float, float] = ranged((0.0, 0.0, 0.0), lo=0.0, hi=1.0, help="RGB mean on [0, 1] pixels")
    image_std: tuple[float, float, float] = ranged((1.0, 1.0, 1.0), lo=1e-6, hi=10.0, help="RGB std on [0, 1] pixels")
    interpolation: Literal["linear", "area", "nearest", "cubic"] = "area"

    map_points_per_vector: int = ranged(MAP_POINTS_PER_VECTOR, lo=2, hi=1000, help="points per map polyline")
    max_agents: int = ranged(300, lo=1, hi=10000, help="agents kept per sample in a batch (VAD: 300 queries)")
    max_map_vectors: int = ranged(100, lo=1, hi=10000, help="map vectors kept per sample in a batch (VAD: 100)")
    agents_in_perception_range: bool = ranged(
        True, help="batch only agents whose centre lies in the perception range (VAD's ObjectRangeFilter)"
    )
    num_prev_frames: int = ranged(0, lo=0, hi=16, help="previous keyframes whose images the dataset also loads")
    split: str | None = ranged(None, help="train / val / test, or None for every sample in the index")

    def validate(self) -> None:
        if len(set(self.longtail_token_files)) != len(self.longtail_token_files):
            raise ValueError("longtail_token_files lists a file twice")


__all__ = ["DataConfig", "IMAGENET_MEAN", "IMAGENET_STD"]
