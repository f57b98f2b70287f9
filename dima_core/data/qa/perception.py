"""Perception QA: the important objects and where they are, their status and description, counts by direction.

Question wording follows DriveLM-nuScenes (challenge/data/train_sample.json); answers come from the annotations.
"""

from __future__ import annotations

from collections import Counter

from dima_core.data.drivelm import QAPair
from dima_core.data.qa import describe
from dima_core.data.qa.facts import FrameFacts, ObjectFacts

Q_IMPORTANT = (
    "What are the important objects in the current scene? "
    "Those objects will be considered for the future reasoning and driving decision."
)
Q_RELATIVE = "What is the relative positioning of the important objects in the current scene?"

# Relative positions are listed for pairs among the first objects only, as the answer grows quadratically.
_MAX_RELATIVE_OBJECTS = 4


def _qa(question: str, answer: str) -> QAPair:
    return QAPair(question=question, answer=answer, category="perception")


def important_objects_answer(key_objects: list[ObjectFacts]) -> str:
    """'There is a car to the front of the ego vehicle, ... The IDs of these objects are <c1,...>, and <c2,...>.'"""
    if not key_objects:
        return "There is no important object in the current scene."
    parts = [f"{describe.with_article(o.noun)} {describe.to_the(o.direction)}" for o in key_objects]
    tags = [str(o.tag) for o in key_objects]
    ids = (
        f"The ID of this object is {tags[0]}."
        if len(tags) == 1
        else f"The IDs of these objects are {describe.join_list(tags)}."
    )
    return f"There is {describe.join_list(parts)}. {ids}"


def _relative_answer(facts: FrameFacts) -> str | None:
    objs = facts.key_objects[:_MAX_RELATIVE_OBJECTS]
    if len(objs) < 2:
        return None
    boxes = facts.sample.agents.boxes
    parts = []
    for a in range(len(objs)):
        for b in range(a + 1, len(objs)):
            pa, pb = boxes[objs[a].agent_index], boxes[objs[b].agent_index]
            # Directions are those of the ego frame (forward = the ego's forward), as DriveLM's answers read.
            phrase = describe.relative_phrase(float(pb[0] - pa[0]), float(pb[1] - pa[1]))
            parts.append(f"{objs[b].tag} is {phrase} {objs[a].tag}")
    return describe.sentence(describe.join_list(parts))


def _counts_by_direction(facts: FrameFacts) -> dict[str, list[ObjectFacts]]:
    """Every annotated object within ``count_radius_m`` (any visibility), grouped by direction."""
    groups: dict[str, list[ObjectFacts]] = {d: [] for d in describe.DIRECTIONS}
    for obj in facts.objects:
        if obj.distance <= facts.cfg.count_radius_m:
            groups[obj.direction].append(obj)
    return groups


def _noun_counts(objs: list[ObjectFacts]) -> list[tuple[str, int]]:
    """(category representative, count) per noun, most frequent first, then alphabetical (deterministic)."""
    counts = Counter(o.noun for o in objs)
    first_category = {}
    for o in objs:
        first_category.setdefault(o.noun, o.category)
    return [(first_category[n], c) for n, c in sorted(counts.items(), key=lambda item: (-item[1], item[0]))]


def _status_answer(objs: list[ObjectFacts], category: str) -> str:
    moving = sum(1 for o in objs if o.motion.moving)
    still = len(objs) - moving
    still_word = "standing" if describe.is_person(category) else "stationary"
    parts = []
    if moving:
        parts.append(f"{describe.counted(moving, category)} {'is' if moving == 1 else 'are'} moving")
    if still:
        parts.append(f"{describe.counted(still, category)} {'is' if still == 1 else 'are'} {still_word}")
    return describe.sentence(" and ".join(parts))


def perception_qa(facts: FrameFacts) -> list[QAPair]:
    out = [_qa(Q_IMPORTANT, important_objects_answer(facts.key_objects))]
    for obj in facts.key_objects:
        tag = str(obj.tag)
        out.append(
            _qa(f"What is the observed status of object {tag}?", "Moving." if obj.motion.moving else "Stationary.")
        )
        out.append(_qa(f"What is the moving status of object {tag}?", obj.motion.moving_status))
        out.append(_qa(f"What is the visual description of {tag}?", describe.sentence(obj.noun)))
    relative = _relative_answer(facts)
    if relative is not None:
        out.append(_qa(Q_RELATIVE, relative))

    for direction, objs in _counts_by_direction(facts).items():
        if not objs:
            continue
        counts = _noun_counts(objs)
        listed = describe.join_list([describe.counted(n, cat) for cat, n in counts])
        verb = "is" if counts[0][1] == 1 else "are"
        out.append(
            _qa(
                f"What are objects to the {direction} of the ego car?",
                f"There {verb} {listed} {describe.to_the(direction, 'the ego car')}.",
            )
        )
        # Status of the most frequent class that can move by itself.
        movable = [(cat, n) for cat, n in counts if not describe.is_static_category(cat)]
        if movable:
            category, n = movable[0]
            members = [o for o in objs if o.noun == describe.noun(category)]
            subject = (
                f"the {describe.noun(category)} that is" if n == 1 else f"the {describe.plural(category)} that are"
            )
            out.append(
                _qa(
                    f"What is the status of {subject} to the {direction} of the ego car?",
                    _status_answer(members, category),
                )
            )
    return out


__all__ = ["Q_IMPORTANT", "Q_RELATIVE", "important_objects_answer", "perception_qa"]
