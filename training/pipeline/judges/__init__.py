"""Judges: rank K responses per criterion as a given persona.

``build_judge({"backend": "http" | "local" | "rubric", ...settings})`` makes one
from a config table; the other keys are the backend's config dataclass fields
(``HTTPJudgeConfig``, ``LocalJudgeConfig``, ``RubricJudgeConfig``), checked
strictly. The backends are registered by name in ``registry.py``; they import
their heavy dependencies lazily.
"""
from __future__ import annotations

from .base import (
    Judge,
    JudgeError,
    JudgeRequest,
    JudgeResult,
    check_same_judge,
    is_permutation,
    ranking_from_scores,
    response_labels,
)
from .registry import JUDGES, build_judge, judge_config

__all__ = [
    "Judge",
    "JudgeError",
    "JudgeRequest",
    "JudgeResult",
    "is_permutation",
    "ranking_from_scores",
    "response_labels",
    "JUDGES",
    "build_judge",
    "judge_config",
    "check_same_judge",
]
