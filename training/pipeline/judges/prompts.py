"""The words judges are given: persona role-play, the scenario, labelled responses, the criteria.

The criterion wording comes from ``criteria.py`` only, so every judge and the
annotation app describe a criterion the same way.
"""
from __future__ import annotations

import json
import re
from collections.abc import Sequence

from ..criteria import CriterionSpec
from .base import JudgeRequest

__all__ = [
    "InvalidReply",
    "persona_system_message",
    "describe_criterion",
    "ranking_messages",
    "parse_ranking_reply",
    "pairwise_messages",
]


class InvalidReply(ValueError):
    """A judge reply that is not a JSON object ranking every shown label once for every criterion."""


def persona_system_message(persona_text: str) -> str:
    return (
        "You are taking part in a study of supportive replies to people in distress. Stay in character as the "
        "person described below for the whole task, and judge the way they would, from their own needs, history "
        "and preferences.\n\n"
        f"Who you are:\n{persona_text.strip()}"
    )


def describe_criterion(spec: CriterionSpec) -> str:
    return (
        f"- {spec.key} ({spec.name}): {spec.question} Better when: {spec.better_when} Worse when: {spec.worse_when}"
    )


def _scenario_block(scenario_text: str) -> str:
    return (
        "Imagine you wrote the message below, or one very like it, and then received the replies that follow.\n\n"
        f"Your message:\n<<<\n{scenario_text.strip()}\n>>>"
    )


def ranking_messages(request: JudgeRequest) -> list[dict]:
    """Chat messages asking for a JSON ranking of all shown responses per criterion."""
    labels = request.labels
    blocks = "\n\n".join(f"Response {label}:\n<<<\n{text.strip()}\n>>>" for label, text in zip(labels, request.responses))
    criteria = "\n".join(describe_criterion(c) for c in request.criteria)
    keys = [c.key for c in request.criteria]
    example = json.dumps({key: labels for key in keys[:2]})
    user = (
        f"{_scenario_block(request.scenario.prompt)}\n\n"
        f"There are {len(labels)} replies, labelled {', '.join(labels)}.\n\n{blocks}\n\n"
        "Rank the replies separately on each of these criteria, from the one you would find best to the one you "
        f"would find worst:\n{criteria}\n\n"
        "Answer with only a JSON object and no other text. Its keys are exactly the criterion keys "
        f"({', '.join(keys)}); each value is a list of all {len(labels)} labels ({', '.join(labels)}), each used "
        f"exactly once, best first. The shape, with made-up orders: {example}"
    )
    return [
        {"role": "system", "content": persona_system_message(request.persona.text)},
        {"role": "user", "content": user},
    ]


_FENCE = re.compile(r"^```[a-zA-Z]*\s*|\s*```$")


def parse_ranking_reply(text: str | None, labels: Sequence[str], criterion_keys: Sequence[str]) -> dict[str, list[int]]:
    """Reply text -> {criterion: positions best first}; raises ``InvalidReply`` saying what is wrong.

    Tolerated: surrounding whitespace, a Markdown code fence, label case and padding. Everything else must
    be exact: one object, every requested key, each value a permutation of the shown labels.
    """
    if text is None or not text.strip():
        raise InvalidReply("empty reply")
    body = _FENCE.sub("", text.strip()).strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end < start:
        raise InvalidReply("no JSON object in the reply")
    try:
        obj = json.loads(body[start : end + 1])
    except json.JSONDecodeError as exc:
        raise InvalidReply(f"reply is not valid JSON ({exc.msg})") from None
    if not isinstance(obj, dict):
        raise InvalidReply("reply JSON is not an object")
    position = {label.upper(): i for i, label in enumerate(labels)}
    rankings: dict[str, list[int]] = {}
    for key in criterion_keys:
        if key not in obj:
            raise InvalidReply(f"criterion {key!r} missing from the reply")
        value = obj[key]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise InvalidReply(f"criterion {key!r}: expected a list of labels")
        cleaned = [v.strip().upper() for v in value]
        if sorted(cleaned) != sorted(position):
            raise InvalidReply(f"criterion {key!r}: {value!r} is not an ordering of {list(labels)!r}")
        rankings[key] = [position[v] for v in cleaned]
    return rankings


def pairwise_messages(persona_text: str, scenario_text: str, first: str, second: str, spec: CriterionSpec) -> list[dict]:
    """Chat messages asking which of two replies (A, B) is better on one criterion; the answer is one letter."""
    user = (
        f"{_scenario_block(scenario_text)}\n\n"
        f"Response A:\n<<<\n{first.strip()}\n>>>\n\n"
        f"Response B:\n<<<\n{second.strip()}\n>>>\n\n"
        f"Criterion:\n{describe_criterion(spec)}\n\n"
        "Which reply is better on this criterion for you? Answer with a single letter, A or B."
    )
    return [
        {"role": "system", "content": persona_system_message(persona_text)},
        {"role": "user", "content": user},
    ]
