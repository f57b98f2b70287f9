"""Prediction QA: future motion of the key objects, from their annotated futures (3 s, current ego frame)."""

from __future__ import annotations

from dima_core.data.drivelm import QAPair
from dima_core.data.qa import describe
from dima_core.data.qa.facts import FrameFacts


def _qa(question: str, answer: str) -> QAPair:
    return QAPair(question=question, answer=answer, category="prediction")


def _yes_no(flag: bool) -> str:
    return "Yes." if flag else "No."


def prediction_qa(facts: FrameFacts) -> list[QAPair]:
    out = []
    for obj in facts.key_objects:
        tag = str(obj.tag)
        out.append(_qa(f"What is the future state of {tag}?", obj.motion.future_state))
        out.append(_qa(f"Would {tag} be in the moving direction of the ego vehicle?", _yes_no(obj.in_path)))
        out.append(_qa(f"Is {tag} going to cross the ego path?", _yes_no(obj.crossing)))
        is_barrier = obj.noun in ("barrier", "traffic cone")
        out.append(_qa(f"Is {tag} a traffic sign or a road barrier?", _yes_no(is_barrier)))
    # The in-path objects in the order the ego reaches them: DriveLM's multi-object graph question, answered with
    # every relevant c-tag (the answer its match metric scores).
    ahead = sorted((o for o in facts.key_objects if o.in_path and o.s > 0), key=lambda o: (o.s, o.agent_index))
    if ahead:
        names = [f"{describe.with_article(o.noun)} ({o.tag})" for o in ahead]
        answer = f"The ego vehicle will meet {describe.join_list(names)} in its moving direction."
    else:
        answer = "No object is in the moving direction of the ego vehicle."
    out.append(_qa("Which objects are in the moving direction of the ego vehicle, nearest first?", answer))
    return out


__all__ = ["prediction_qa"]
