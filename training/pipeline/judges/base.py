"""The judge interface: a persona ranks K responses to a scenario, once per criterion.

Every backend (HTTP model, local model, rubric) takes a ``JudgeRequest`` and
returns a ``JudgeResult`` whose rankings are positions in ``request.responses``
(the order the judge was shown), best first. Callers shuffle the responses per
persona beforehand and map positions back (``labeling`` records the shown
order), so position bias cancels out over personas.

A judge that cannot produce a valid ranking returns ``rankings=None`` with an
``error``: the caller counts it and moves on; nothing is ever guessed.
"""
from __future__ import annotations

import string
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..criteria import CriterionSpec
from ..io import Persona, PipelineConfigError, Scenario

__all__ = [
    "JudgeRequest",
    "JudgeResult",
    "Judge",
    "JudgeError",
    "response_labels",
    "is_permutation",
    "ranking_from_scores",
    "check_same_judge",
]


class JudgeError(RuntimeError):
    """A judge backend that cannot work at all (bad credentials, server gone): the run should stop."""


@dataclass(frozen=True)
class JudgeRequest:
    persona: Persona
    scenario: Scenario
    responses: tuple[str, ...]  # in the order shown to the judge
    criteria: tuple[CriterionSpec, ...]

    def __post_init__(self):
        if not 1 <= len(self.responses) <= 26:
            raise ValueError("a judge request needs between 1 and 26 responses (labels A-Z)")
        if not self.criteria:
            raise ValueError("a judge request needs at least one criterion")

    @property
    def labels(self) -> list[str]:
        return response_labels(len(self.responses))


@dataclass
class JudgeResult:
    # criterion key -> positions in request.responses, best to worst; None when the judge gave no valid answer
    rankings: dict[str, list[int]] | None
    error: str | None = None
    attempts: int = 1
    cached: bool = False
    # criterion key -> one number per shown response (higher is better), when the backend has them
    scores: dict[str, list[float]] | None = None
    raw: str | None = field(default=None, repr=False)
    # True when the failure was the backend's (unreachable, overloaded): try again in a later run
    retryable: bool = False

    @property
    def ok(self) -> bool:
        return self.rankings is not None


def response_labels(k: int) -> list[str]:
    return list(string.ascii_uppercase[:k])


def is_permutation(ranking: Sequence[int], k: int) -> bool:
    return len(ranking) == k and sorted(ranking) == list(range(k))


def ranking_from_scores(scores: Sequence[float], tiebreak: Sequence[float] | None = None) -> list[int]:
    """Positions sorted by score (high first), then by ``tiebreak`` (high first), then by position (low first)."""
    secondary = tiebreak if tiebreak is not None else [0.0] * len(scores)
    return sorted(range(len(scores)), key=lambda i: (-scores[i], -secondary[i], i))


class Judge(ABC):
    """Ranks responses per criterion for one persona. Subclasses set ``name``, ``model``, ``synthetic``."""

    name: str = "judge"
    model: str = ""
    synthetic: bool = False

    def settings(self) -> dict:
        """What, besides name and model, decides this judge's answers (recorded with every label)."""
        return {}

    def info(self) -> dict:
        return {"name": self.name, "model": self.model, "settings": self.settings(), "synthetic": self.synthetic}

    @abstractmethod
    def rank(self, request: JudgeRequest) -> JudgeResult:
        """Rank ``request.responses`` for every criterion in ``request.criteria``."""

    def rank_many(self, requests: Sequence[JudgeRequest]) -> list[JudgeResult]:
        """Rank many requests; backends that can work concurrently override this. Order is preserved."""
        return [self.rank(r) for r in requests]

    def close(self) -> None:
        """Release resources (caches, models)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def check_same_judge(records: Sequence[dict], judge_info: dict, path, *, what: str, instead: str) -> None:
    """One file of judged records, one judge: refuse to add to a file (labels, decisions) another judge began.

    ``records`` are what the file holds (each with its ``judge``); ``instead`` says what to use for this judge."""
    for record in records[:1]:
        if record.get("judge") != judge_info:
            raise PipelineConfigError(
                f"{path} holds {what} from another judge ({record.get('judge')}); this run's judge is {judge_info}. "
                f"Use {instead}: one {what} file, one judge."
            )
