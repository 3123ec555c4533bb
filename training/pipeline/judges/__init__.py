"""Judges: rank K responses per criterion as a given persona.

``build_judge({"backend": "http" | "local" | "rubric", ...settings})`` makes one
from a config table; the other keys are the backend's config dataclass fields
(``HTTPJudgeConfig``, ``LocalJudgeConfig``, ``RubricJudgeConfig``), checked
strictly. Backends import their heavy dependencies lazily.
"""
from __future__ import annotations

from typing import Any

from ..io import ConfigError, dataclass_from_dict
from .base import Judge, JudgeError, JudgeRequest, JudgeResult, is_permutation, ranking_from_scores, response_labels

__all__ = [
    "Judge",
    "JudgeError",
    "JudgeRequest",
    "JudgeResult",
    "is_permutation",
    "ranking_from_scores",
    "response_labels",
    "BACKENDS",
    "build_judge",
]

BACKENDS = ("http", "local", "rubric")


def build_judge(spec: dict[str, Any] | Judge, where: str = "judge") -> Judge:
    if isinstance(spec, Judge):
        return spec
    if not isinstance(spec, dict):
        raise ConfigError(f"{where}: expected a table with a 'backend' key")
    settings = dict(spec)
    backend = settings.pop("backend", None)
    if backend == "http":
        from .http import HTTPJudge, HTTPJudgeConfig

        return HTTPJudge(dataclass_from_dict(HTTPJudgeConfig, settings, where))
    if backend == "local":
        from .local import LocalJudgeConfig, LocalLikelihoodJudge

        return LocalLikelihoodJudge(dataclass_from_dict(LocalJudgeConfig, settings, where))
    if backend == "rubric":
        from .rubric import RubricJudge, RubricJudgeConfig

        return RubricJudge(dataclass_from_dict(RubricJudgeConfig, settings, where))
    raise ConfigError(f"{where}.backend: must be one of {', '.join(BACKENDS)}, got {backend!r}")
