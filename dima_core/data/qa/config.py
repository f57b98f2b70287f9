"""Options of the rule-based DriveLM-style QA generator.

Loaded from YAML through :mod:`dima_core.config` (``config/qa.yaml``, section ``qa``)::

    from dima_core.config import load_config
    from dima_core.data.qa import QAConfig
    cfg = load_config("config/qa.yaml", QAConfig, section="qa")

Distances are metres in the ego frame (x forward, y left); speeds m/s; angles degrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from dima_core.config import ranged
from dima_core.constants import PERCEPTION_X_RANGE, PERCEPTION_Y_RANGE

QACategory = Literal["perception", "prediction", "planning", "behavior"]


@dataclass
class QAConfig:
    """What the generator asks and the thresholds its answers use."""

    categories: list[QACategory] = ranged(
        default_factory=lambda: ["perception", "prediction", "planning", "behavior"],
        help="QA categories to generate (DriveLM's four)",
    )

    # Key objects (DriveLM annotates 3 to 6 per keyframe).
    max_key_objects: int = ranged(5, lo=1, hi=9, help="most key objects (c-tags) per keyframe")
    key_x_range: tuple[float, float] = ranged(PERCEPTION_X_RANGE, lo=-100.0, hi=100.0, help="ego x window, m")
    key_y_range: tuple[float, float] = ranged(PERCEPTION_Y_RANGE, lo=-100.0, hi=100.0, help="ego y window, m")
    min_visibility: int = ranged(2, lo=1, hi=4, help="lowest nuScenes visibility level (1: 0-40 %) of a key object")
    min_visible_pixels: int = ranged(
        40, lo=1, hi=100000, help="unoccluded projected pixels (at native resolution) an object needs to be tagged"
    )
    static_objects_only_in_path: bool = ranged(
        True, help="barriers, cones and debris become key objects only when they block the ego path"
    )
    near_radius_m: float = ranged(15.0, lo=0.0, hi=100.0, help="moving agents this close are relevant anywhere")
    count_radius_m: float = ranged(30.0, lo=1.0, hi=100.0, help="objects counted by 'What are objects to the ...'")

    # Ego path corridor: the GT future path (straight ahead when unknown), extended past its end.
    path_half_width_m: float = ranged(1.75, lo=0.5, hi=10.0, help="half width of the ego path corridor")
    path_extension_m: float = ranged(10.0, lo=0.0, hi=100.0, help="corridor continues this far past the last waypoint")
    min_path_length_m: float = ranged(10.0, lo=0.0, hi=100.0, help="shortest corridor ahead (stopped ego)")

    # Motion classification.
    moving_speed_mps: float = ranged(0.5, lo=0.0, hi=5.0, help="agents faster than this are 'Moving'")
    stationary_displacement_m: float = ranged(1.0, lo=0.0, hi=10.0, help="future displacement below this: stopped")
    turn_angle_deg: float = ranged(30.0, lo=1.0, hi=180.0, help="heading change that makes an agent 'turn'")
    offset_lateral_m: float = ranged(0.75, lo=0.0, hi=10.0, help="lateral shift that makes an agent 'offset'")

    # Ego behaviour bins (DriveLM's answers): lateral offset of the last valid GT waypoint, and mean future speed.
    slight_steer_offset_m: float = ranged(0.5, lo=0.0, hi=10.0, help="|y| at 3 s from 'going straight' to 'slightly'")
    steer_offset_m: float = ranged(2.0, lo=0.0, hi=20.0, help="|y| at 3 s to 'steering' (VAD's command threshold)")
    speed_bins_mps: tuple[float, float, float, float] = ranged(
        (0.5, 4.0, 8.0, 13.0),
        lo=0.0,
        hi=60.0,
        help="upper bounds of 'not moving', 'slowly', 'normal speed', 'fast'; above: 'very fast'",
    )

    # Planning rollouts (3 s, 0.5 s steps) checked against agent futures and road boundaries.
    collision_margin_m: float = ranged(0.5, lo=0.0, hi=5.0, help="boxes closer than this count as a collision")
    close_call_m: float = ranged(3.0, lo=0.0, hi=20.0, help="closest approach below this: 'Medium' collision risk")
    max_listed_actions: int = ranged(3, lo=1, hi=12, help="most actions named in a safe/dangerous action answer")

    def validate(self) -> None:
        if not self.categories:
            raise ValueError("categories: at least one QA category is needed")
        if len(set(self.categories)) != len(self.categories):
            raise ValueError("categories lists a category twice")
        for name in ("key_x_range", "key_y_range"):
            lo, hi = getattr(self, name)
            if lo >= hi:
                raise ValueError(f"{name}: lower bound {lo} must be below upper bound {hi}")
        if list(self.speed_bins_mps) != sorted(self.speed_bins_mps):
            raise ValueError("speed_bins_mps must be increasing")
        if self.slight_steer_offset_m > self.steer_offset_m:
            raise ValueError("slight_steer_offset_m must not exceed steer_offset_m")


__all__ = ["QACategory", "QAConfig"]
