"""Words for objects and places: nouns from nuScenes categories, DriveLM's direction phrases, counts, lists."""

from __future__ import annotations

import math

# Longest-prefix match of nuScenes category names -> (noun, plural). Prefixes cover both the full category tree
# (vehicle.bus.rigid) and the detection-class names the synthetic world or a model may use (bus).
_NOUNS: tuple[tuple[str, str, str], ...] = (
    ("vehicle.emergency.ambulance", "ambulance", "ambulances"),
    ("vehicle.emergency.police", "police car", "police cars"),
    ("vehicle.construction", "construction vehicle", "construction vehicles"),
    ("vehicle.bus", "bus", "buses"),
    ("vehicle.truck", "truck", "trucks"),
    ("vehicle.trailer", "trailer", "trailers"),
    ("vehicle.motorcycle", "motorcycle", "motorcycles"),
    ("vehicle.bicycle", "bicycle", "bicycles"),
    ("vehicle.car", "car", "cars"),
    ("vehicle", "vehicle", "vehicles"),
    ("human.pedestrian.child", "child", "children"),
    ("human.pedestrian.construction_worker", "construction worker", "construction workers"),
    ("human.pedestrian.police_officer", "police officer", "police officers"),
    ("human.pedestrian.personal_mobility", "person on a scooter", "people on scooters"),
    ("human.pedestrian.wheelchair", "person in a wheelchair", "people in wheelchairs"),
    ("human.pedestrian.stroller", "person with a stroller", "people with strollers"),
    ("human", "pedestrian", "pedestrians"),
    ("pedestrian", "pedestrian", "pedestrians"),
    ("animal", "animal", "animals"),
    ("movable_object.barrier", "barrier", "barriers"),
    ("barrier", "barrier", "barriers"),
    ("movable_object.trafficcone", "traffic cone", "traffic cones"),
    ("traffic_cone", "traffic cone", "traffic cones"),
    ("movable_object.pushable_pullable", "cart", "carts"),
    ("movable_object.debris", "debris", "debris"),
    ("static_object.bicycle_rack", "bicycle rack", "bicycle racks"),
    ("construction_vehicle", "construction vehicle", "construction vehicles"),
    ("car", "car", "cars"),
    ("truck", "truck", "trucks"),
    ("bus", "bus", "buses"),
    ("trailer", "trailer", "trailers"),
    ("motorcycle", "motorcycle", "motorcycles"),
    ("bicycle", "bicycle", "bicycles"),
)

# Things that do not move by themselves: they matter only where they block the way.
_STATIC_PREFIXES = ("movable_object", "static_object", "barrier", "traffic_cone")
_PERSON_PREFIXES = ("human", "pedestrian")
_CYCLE_PREFIXES = ("vehicle.bicycle", "vehicle.motorcycle", "bicycle", "motorcycle")

_NUMBER_WORDS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _lookup(category: str) -> tuple[str, str]:
    best: tuple[str, str, str] | None = None
    for prefix, noun, plural in _NOUNS:
        if (category == prefix or category.startswith(prefix + ".")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, noun, plural)
    if best is None:
        word = category.split(".")[-1].replace("_", " ") or "object"
        return word, word + "s"
    return best[1], best[2]


def noun(category: str) -> str:
    """'vehicle.car' -> 'car'."""
    return _lookup(category)[0]


def plural(category: str) -> str:
    """'vehicle.bus.rigid' -> 'buses'."""
    return _lookup(category)[1]


def is_static_category(category: str) -> bool:
    return category.startswith(_STATIC_PREFIXES)


def is_person(category: str) -> bool:
    return category.startswith(_PERSON_PREFIXES)


def drivelm_category(category: str) -> str:
    """DriveLM's key-object ``Category``: 'Vehicle', 'Pedestrian', 'Cyclist', 'Animal' or 'Obstacle'."""
    if category.startswith(_CYCLE_PREFIXES):
        return "Cyclist"
    if is_person(category):
        return "Pedestrian"
    if category.startswith("animal"):
        return "Animal"
    if is_static_category(category):
        return "Obstacle"
    return "Vehicle"


def article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def with_article(word: str) -> str:
    """'car' -> 'a car'; uncountable 'debris' -> 'some debris'."""
    if word == "debris":
        return "some debris"
    return f"{article(word)} {word}"


def count_word(n: int) -> str:
    """0..9 as words, 'many' beyond (DriveLM says 'many barriers')."""
    return _NUMBER_WORDS[n] if 0 <= n < len(_NUMBER_WORDS) else "many"


def counted(n: int, category: str) -> str:
    """'one car', 'two buses', 'many barriers'."""
    return f"{count_word(n)} {noun(category) if n == 1 else plural(category)}"


def join_list(items: list[str]) -> str:
    """'a', 'a and b', 'a, b, and c' (DriveLM's serial comma)."""
    if not items:
        return ""
    if len(items) == 1:
        return items[0]
    if len(items) == 2:
        return f"{items[0]} and {items[1]}"
    return ", ".join(items[:-1]) + f", and {items[-1]}"


def sentence(text: str) -> str:
    """Capitalise the first letter and end with a full stop."""
    text = text.strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "?", "!")) else text + "."


# DriveLM's six directions, one per camera. Sector bounds are bearings from +x (forward), left positive, degrees.
DIRECTIONS: tuple[str, ...] = ("front", "front left", "back left", "back", "back right", "front right")


def direction(x: float, y: float) -> str:
    """Direction of ego-frame point (x, y) as DriveLM words: front within +/-30 deg, back beyond +/-150 deg."""
    bearing = math.degrees(math.atan2(y, x))
    if abs(bearing) < 30.0:
        return "front"
    if abs(bearing) >= 150.0:
        return "back"
    side = "left" if bearing > 0 else "right"
    return f"{'front' if abs(bearing) < 90.0 else 'back'} {side}"


def to_the(direction_words: str, whom: str = "the ego vehicle") -> str:
    """'to the front of the ego vehicle', 'to the back left of the ego vehicle'."""
    return f"to the {direction_words} of {whom}"


def relative_phrase(dx: float, dy: float) -> str:
    """How B lies from A given B - A = (dx, dy) in A's frame (x forward, y left): DriveLM's relative wording."""
    words = direction(dx, dy)
    return {"front": "in front of", "back": "at the back of"}.get(words, f"on the {words} of")


__all__ = [
    "DIRECTIONS",
    "article",
    "count_word",
    "counted",
    "direction",
    "drivelm_category",
    "is_person",
    "is_static_category",
    "join_list",
    "noun",
    "plural",
    "relative_phrase",
    "sentence",
    "to_the",
    "with_article",
]
