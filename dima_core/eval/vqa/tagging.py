"""Which questions get which metric when the ground truth has no ``tag`` lists: DriveLM's extraction rule.

DriveLM builds its challenge file from the training annotations with ``challenge/extract_data.py``; every question it
keeps gets one tag (0 accuracy, 1 GPT score, 2 language, 3 match). Per keyframe, in this order:

1. perception, tag 2: the first QA whose answer contains (case-insensitively) every key object's class, i.e. the
   first sentence of its ``Visual_description`` ("Brown SUV." -> "brown suv"); in practice the "What are the
   important objects in the current scene?" answer.
2. perception, tag 0: the first QA whose question contains "What is the moving status of object".
3. prediction, tag 3: the first QA whose answer contains every key object's c-tag string.
4. prediction, tag 0: the first QA whose answer contains "yes" or "no" as a substring (DriveLM's test, so "not" or
   "none" also qualify).
5. planning, tag 1: the first QA containing "What actions could the ego vehicle take", the first containing "lead
   to a collision" and the first containing "safe actions" (each at most once).
6. behavior, tag 0: every QA.

All other QAs get no tag and are not scored. The returned order is the order DriveLM writes the challenge file in,
which matters for graph gating (the frame's first scored QA sets the graph). Two things DriveLM then does are not
reproduced: ``convert_data.py`` rewrites the moving-status and behavior questions as randomly drawn multiple choice
(answer "A".."D"), and the challenge file re-numbers the kept QAs. Here the questions stay free text (so accuracy
is exact match on the full answer) and ids keep their index in the original file, so predictions made on the
original file (``dima_core.data.drivelm.to_flat``) line up. When one QA satisfies two rules, DriveLM's in-place
update leaves it with the later tag and lists it twice; here it keeps the later tag and is scored once.
"""

from __future__ import annotations

from collections.abc import Callable

from dima_core.data.drivelm import QA_CATEGORIES, TAG_ACCURACY, TAG_GPT, TAG_LANGUAGE, TAG_MATCH, DriveLMFrame

_MOVING_STATUS = "what is the moving status of object"
_PLANNING_PATTERNS: tuple[str, ...] = ("what actions could the ego vehicle take", "lead to a collision", "safe actions")


def drivelm_rule_tags(frame: DriveLMFrame) -> list[tuple[int, list[int]]]:
    """``(index into frame.all_qa(), [tag])`` for the QAs DriveLM's extraction keeps, in its challenge-file order."""
    offsets: dict[str, int] = {}
    start = 0
    for category in QA_CATEGORIES:
        offsets[category] = start
        start += len(frame.qa.get(category, []))

    def indexed(category: str) -> list[tuple[int, str, str]]:
        return [(offsets[category] + i, qa.question, qa.answer) for i, qa in enumerate(frame.qa.get(category, []))]

    classes = [obj.visual_description.split(".")[0].lower() for obj in frame.key_objects]
    locations = [str(obj.tag).lower() for obj in frame.key_objects]
    selected: list[tuple[int, list[int]]] = []

    def first(items: list[tuple[int, str, str]], test: Callable[[str, str], bool], tag: int) -> None:
        """Select the first item whose lower-cased (question, answer) passes ``test``."""
        for index, question, answer in items:
            if test(question.lower(), answer.lower()):
                selected.append((index, [tag]))
                return

    perception, prediction = indexed("perception"), indexed("prediction")
    first(perception, lambda q, a: all(c in a for c in classes), TAG_LANGUAGE)
    first(perception, lambda q, a: _MOVING_STATUS in q, TAG_ACCURACY)
    first(prediction, lambda q, a: all(loc in a for loc in locations), TAG_MATCH)
    first(prediction, lambda q, a: "yes" in a or "no" in a, TAG_ACCURACY)
    added: set[str] = set()
    for index, question, _ in indexed("planning"):
        hits = [p for p in _PLANNING_PATTERNS if p in question.lower() and p not in added]
        for pattern in hits:
            added.add(pattern)
            selected.append((index, [TAG_GPT]))
        if len(added) == len(_PLANNING_PATTERNS):
            break
    selected.extend((index, [TAG_ACCURACY]) for index, _, _ in indexed("behavior"))

    # A QA picked twice keeps its later tag and its first position, and is scored once.
    final_tags: dict[int, list[int]] = {}
    for index, tags in selected:
        final_tags[index] = tags
    ordered: list[tuple[int, list[int]]] = []
    seen: set[int] = set()
    for index, _ in selected:
        if index not in seen:
            seen.add(index)
            ordered.append((index, final_tags[index]))
    return ordered


__all__ = ["drivelm_rule_tags"]
