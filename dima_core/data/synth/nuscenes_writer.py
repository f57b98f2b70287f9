"""nuScenes tables (``<dataroot>/<version>/*.json``) for the synthetic world, with deterministic tokens.

Only the fields the devkit reads or documents are written; every table the ``NuScenes`` constructor loads exists.
"""

from __future__ import annotations

import json
import os

from dima_core.constants import CAMERA_NAMES, LIDAR_NAME
from dima_core.data.synth.geometry import token

CATEGORIES = (
    ("animal", "All animals, e.g. cats, rats, dogs, deer, birds."),
    ("human.pedestrian.adult", "Adult subcategory."),
    ("human.pedestrian.child", "Child subcategory."),
    ("human.pedestrian.construction_worker", "Construction worker"),
    ("human.pedestrian.personal_mobility", "A small electric or self-propelled vehicle."),
    ("human.pedestrian.police_officer", "Police officer."),
    ("human.pedestrian.stroller", "Strollers."),
    ("human.pedestrian.wheelchair", "Wheelchairs."),
    ("movable_object.barrier", "Temporary road barrier placed in the scene."),
    ("movable_object.debris", "Movable object that is left on the driveable surface."),
    ("movable_object.pushable_pullable", "Objects that a pedestrian may push or pull."),
    ("movable_object.trafficcone", "All types of traffic cone."),
    ("static_object.bicycle_rack", "Area or device intended to park or secure the bicycles in a row."),
    ("vehicle.bicycle", "Human or electric powered 2-wheeled vehicle designed to travel at lower speeds."),
    ("vehicle.bus.bendy", "Bendy bus subcategory."),
    ("vehicle.bus.rigid", "Rigid bus subcategory."),
    ("vehicle.car", "Vehicle designed primarily for personal use, e.g. sedans, hatch-backs, wagons, vans, SUVs."),
    ("vehicle.construction", "Vehicles primarily designed for construction."),
    ("vehicle.emergency.ambulance", "All types of ambulances."),
    ("vehicle.emergency.police", "All types of police vehicles."),
    ("vehicle.motorcycle", "Gasoline or electric powered 2-wheeled vehicle designed to move rapidly."),
    ("vehicle.trailer", "Any vehicle trailer, both for trucks, cars and motorcycles."),
    (
        "vehicle.truck",
        "Vehicles primarily designed to haul cargo including pick-ups, lorrys, trucks and semi-tractors.",
    ),
)
ATTRIBUTES = (
    ("vehicle.moving", "Vehicle is moving."),
    ("vehicle.stopped", "Vehicle, with a driver/rider in/on it, is currently stationary but has an intent to move."),
    ("vehicle.parked", "Vehicle is stationary (usually for longer duration) with no immediate intent to move."),
    ("cycle.with_rider", "There is a rider on the bicycle or motorcycle."),
    ("cycle.without_rider", "There is NO rider on the bicycle or motorcycle."),
    ("pedestrian.sitting_lying_down", "The human is sitting or lying down."),
    ("pedestrian.standing", "The human is standing."),
    ("pedestrian.moving", "The human is moving."),
)
VISIBILITY = (
    ("1", "v0-40", "visibility of whole object is between 0 and 40%"),
    ("2", "v40-60", "visibility of whole object is between 40 and 60%"),
    ("3", "v60-80", "visibility of whole object is between 60 and 80%"),
    ("4", "v80-100", "visibility of whole object is between 80 and 100%"),
)
TABLES = (
    "category",
    "attribute",
    "visibility",
    "instance",
    "sensor",
    "calibrated_sensor",
    "ego_pose",
    "log",
    "scene",
    "sample",
    "sample_data",
    "sample_annotation",
    "map",
)


def category_token(name: str) -> str:
    return token("category", name)


def attribute_token(name: str) -> str:
    return token("attribute", name)


def sensor_token(channel: str) -> str:
    return token("sensor", channel)


def visibility_level(fraction: float) -> str:
    """nuScenes visibility token ("1".."4") of a visible fraction in [0, 1]."""
    if fraction < 0.4:
        return "1"
    if fraction < 0.6:
        return "2"
    if fraction < 0.8:
        return "3"
    return "4"


class TableWriter:
    """Accumulates all rows, then writes one JSON file per table."""

    def __init__(self) -> None:
        self.tables: dict[str, list[dict]] = {name: [] for name in TABLES}
        self.tables["category"] = [
            {"token": category_token(n), "name": n, "description": d, "index": i} for i, (n, d) in enumerate(CATEGORIES)
        ]
        self.tables["attribute"] = [{"token": attribute_token(n), "name": n, "description": d} for n, d in ATTRIBUTES]
        self.tables["visibility"] = [{"token": t, "level": lv, "description": d} for t, lv, d in VISIBILITY]
        self.tables["sensor"] = [
            {"token": sensor_token(c), "channel": c, "modality": "camera"} for c in CAMERA_NAMES
        ] + [{"token": sensor_token(LIDAR_NAME), "channel": LIDAR_NAME, "modality": "lidar"}]

    def add(self, table: str, row: dict) -> dict:
        self.tables[table].append(row)
        return row

    def link_chain(self, rows: list[dict]) -> None:
        """Set prev/next tokens of consecutive rows ("" at the ends), as nuScenes does."""
        for i, row in enumerate(rows):
            row["prev"] = rows[i - 1]["token"] if i > 0 else ""
            row["next"] = rows[i + 1]["token"] if i + 1 < len(rows) else ""

    def write(self, dataroot: str, version: str) -> None:
        folder = os.path.join(dataroot, version)
        os.makedirs(folder, exist_ok=True)
        for name, rows in self.tables.items():
            with open(os.path.join(folder, f"{name}.json"), "w") as f:
                json.dump(rows, f, indent=0, separators=(",", ":"))
