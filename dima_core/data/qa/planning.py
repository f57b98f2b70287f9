"""Planning QA: what the ego should do about each key object, which actions are safe or dangerous, the target.

Safety comes from the action rollouts of :mod:`dima_core.data.qa.actions` (collision with any agent's annotated
future, or crossing a road boundary); the probability words say whether the recommended action agrees with what
the ego actually did (its GT future): "high" when it does, "medium" otherwise.
"""

from __future__ import annotations

from dima_core.constants import COMMAND_LEFT, COMMAND_RIGHT
from dima_core.data.drivelm import QAPair
from dima_core.data.qa import describe
from dima_core.data.qa.actions import ACTIONS, ACTIONS_BY_KEY
from dima_core.data.qa.facts import FrameFacts, ObjectFacts

Q_SAFE = "In this scenario, what are safe actions to take for the ego vehicle?"
Q_DANGEROUS = "In this scenario, what are dangerous actions to take for the ego vehicle?"
Q_TARGET = "What is the target action of the ego vehicle?"
Q_PRIORITY = "What is the priority of the objects that the ego vehicle should consider?(in descending order)"

# Longitudinal trends of the GT future each recommendation agrees with.
_AGREES: dict[str, tuple[str, ...]] = {
    "brake gently to a stop": ("stop", "decelerate"),
    "decelerate gradually without braking": ("decelerate", "stop"),
    "slow down and yield": ("decelerate", "stop"),
    "keep going at the same speed": ("keep", "accelerate"),
    "keep stationary": ("stop",),
}


def _qa(question: str, answer: str) -> QAPair:
    return QAPair(question=question, answer=answer, category="planning")


def _recommendation(facts: FrameFacts, obj: ObjectFacts) -> tuple[str, str]:
    """(action, reason) for one key object, DriveLM-style lower-case phrases."""
    keep = facts.actions["keep"]
    threatens = obj.agent_index in keep.hits
    behaviour = facts.behaviour
    if behaviour.longitudinal == "stop" and behaviour.mean_speed < facts.cfg.speed_bins_mps[0]:
        if obj.in_path and obj.s > 0:
            return "keep stationary", f"the {obj.noun} ahead blocks the way"
    if obj.in_path and obj.s > 0:
        if not obj.motion.moving:
            change = "change_left" if behaviour.lateral_offset > 0 else "change_right"
            passing = abs(behaviour.lateral_offset) >= facts.cfg.slight_steer_offset_m
            if passing and not facts.actions[change].dangerous:
                side = "left" if change == "change_left" else "right"
                return (
                    f"change to the {side} lane and pass the {obj.noun}",
                    f"the stationary {obj.noun} blocks the current lane",
                )
            return "brake gently to a stop", f"there is a stationary {obj.noun} in the path ahead"
    if obj.crossing:
        if threatens or describe.is_person(obj.category):
            return "slow down and yield", f"the {obj.noun} may cross the path of the ego vehicle"
        return "keep going at the same speed", f"the {obj.noun} will cross far enough from the ego vehicle"
    if obj.in_path and obj.s > 0:
        if threatens:
            return "decelerate gradually without braking", f"to keep a safe distance from the {obj.noun} ahead"
        return "keep going at the same speed", f"the {obj.noun} ahead is moving and far enough away"
    if obj.s < 0:
        return "keep going at the same speed", f"the {obj.noun} is behind the ego vehicle"
    return "keep going at the same speed", f"the {obj.noun} is not in the path of the ego vehicle"


def _probability(facts: FrameFacts, action: str) -> str:
    trend = facts.behaviour.longitudinal
    if action.startswith("change to the"):
        side = 1.0 if "left" in action else -1.0
        agrees = side * facts.behaviour.lateral_offset >= facts.cfg.slight_steer_offset_m
    else:
        agrees = trend in _AGREES.get(action, ())
    return "high" if agrees else "medium"


def _collision_probability(facts: FrameFacts, obj: ObjectFacts) -> str:
    keep = facts.actions["keep"]
    if obj.agent_index in keep.hits:
        return "High."
    if keep.gaps.get(obj.agent_index, float("inf")) < facts.cfg.close_call_m:
        return "Medium."
    return "Low."


def _phrase_list(keys: list[str], limit: int) -> str:
    phrases = [ACTIONS_BY_KEY[k].phrase for k in keys[:limit]]
    return describe.sentence(", ".join([phrases[0]] + [p[0].lower() + p[1:] for p in phrases[1:]]))


def _preferred_order(facts: FrameFacts) -> list[str]:
    """Actions closest to what the ego did come first, then the rest in DriveLM's usual order."""
    first = {
        "stop": ["brake_gently", "decelerate"],
        "decelerate": ["decelerate", "brake_gently"],
        "accelerate": ["accelerate", "keep"],
        "keep": ["keep", "decelerate"],
    }[facts.behaviour.longitudinal]
    if facts.sample.command == COMMAND_LEFT:
        first = ["turn_left", "change_left"] + first
    elif facts.sample.command == COMMAND_RIGHT:
        first = ["turn_right", "change_right"] + first
    return first + [a.key for a in ACTIONS if a.key not in first]


def _safe_and_dangerous(facts: FrameFacts) -> tuple[list[str], list[str]]:
    turns_fit = {"turn_left": facts.sample.command == COMMAND_LEFT, "turn_right": facts.sample.command == COMMAND_RIGHT}
    safe, dangerous = [], []
    for key in _preferred_order(facts):
        outcome = facts.actions[key]
        if key == "back_up" or outcome.dangerous:
            dangerous.append(key)
        elif turns_fit.get(key, True):
            safe.append(key)
    # Collisions first (most severe), then boundary crossings, then backing up (against the traffic rules).
    dangerous.sort(key=lambda k: 0 if facts.actions[k].hits else 1 if facts.actions[k].crosses_boundary else 2)
    return safe, dangerous


def _target_action(facts: FrameFacts) -> str:
    b = facts.behaviour
    if b.mean_speed < facts.cfg.speed_bins_mps[0]:
        return "Stationary."
    if abs(b.lateral_offset) >= facts.cfg.steer_offset_m:
        return "Turn left." if b.lateral_offset > 0 else "Turn right."
    if abs(b.lateral_offset) >= facts.cfg.slight_steer_offset_m:
        return "Slightly offset to the left." if b.lateral_offset > 0 else "Slightly offset to the right."
    return "Go straight."


def planning_qa(facts: FrameFacts) -> list[QAPair]:
    out = []
    limit = facts.cfg.max_listed_actions
    for obj in facts.key_objects:
        tag = str(obj.tag)
        action, reason = _recommendation(facts, obj)
        prob = _probability(facts, action)
        reason_text = reason if reason.startswith("to ") else f"that {reason}"
        out.append(
            _qa(
                f"What actions could the ego vehicle take based on {tag}? "
                "Why take this action and what's the probability?",
                f"The action is to {action}. The reason is {reason_text}, which has a {prob} probability.",
            )
        )
        out.append(
            _qa(
                f"What is the probability of colliding with {tag} "
                "after the ego vehicle goes straight and keeps the same speed?",
                _collision_probability(facts, obj),
            )
        )
        hitting = [a.key for a in ACTIONS if obj.agent_index in facts.actions[a.key].hits]
        out.append(
            _qa(
                f"What actions taken by the ego vehicle can lead to a collision with {tag}?",
                _phrase_list(hitting, limit) if hitting else "No such action will lead to a collision.",
            )
        )
    safe, dangerous = _safe_and_dangerous(facts)
    out.append(_qa(Q_SAFE, _phrase_list(safe, limit) if safe else "There is no safe action; stop as soon as possible."))
    out.append(_qa(Q_DANGEROUS, _phrase_list(dangerous, limit)))
    out.append(_qa(Q_TARGET, _target_action(facts)))
    if facts.key_objects:
        out.append(_qa(Q_PRIORITY, describe.sentence(", ".join(str(o.tag) for o in facts.key_objects))))
    return out


__all__ = ["Q_DANGEROUS", "Q_PRIORITY", "Q_SAFE", "Q_TARGET", "planning_qa"]
