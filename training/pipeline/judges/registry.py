"""The judge backends, each registered once by name with its judge class and
config dataclass, as lazy "package.module:Name" references (lm-evaluation-harness
style): importing this module imports no backend, and so no torch.

`judge_config(spec)` is the one check of a judge table ({"backend": name,
...that backend's config fields}); the CLI, `build_judge` and the platform's
experiment validation all use it, so a setting one accepts the others accept."""
from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from ..io import PipelineConfigError, dataclass_from_dict


def load(reference: str):
    """The object a "package.module:Name" reference names."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class JudgeBackend:
    name: str
    judge: str  # "module:Class", built from one config object
    config: str  # "module:Dataclass" holding the backend's settings

    def load_judge(self):
        return load(self.judge)

    def load_config(self):
        return load(self.config)


JUDGES: dict[str, JudgeBackend] = {}


def register_judge(name: str, *, judge: str, config: str) -> JudgeBackend:
    if name in JUDGES:
        raise ValueError(f"judge backend {name!r} is already registered")
    JUDGES[name] = JudgeBackend(name, judge, config)
    return JUDGES[name]


register_judge("http", judge="training.pipeline.judges.http:HTTPJudge", config="training.pipeline.judges.http:HTTPJudgeConfig")
register_judge("local", judge="training.pipeline.judges.local:LocalLikelihoodJudge",
               config="training.pipeline.judges.local:LocalJudgeConfig")
register_judge("rubric", judge="training.pipeline.judges.rubric:RubricJudge",
               config="training.pipeline.judges.rubric:RubricJudgeConfig")


def judge_config(spec: Any, where: str = "judge") -> tuple[JudgeBackend, Any]:
    """The backend and its checked config object for a judge table. Raises
    PipelineConfigError naming the offending key (``judge: unknown key 'modle'; allowed: ...``)."""
    if not isinstance(spec, dict):
        raise PipelineConfigError(f"{where}: expected a table with a 'backend' key")
    settings = dict(spec)
    name = settings.pop("backend", None)
    if name is None:
        given = f"; got {', '.join(map(repr, settings))}" if settings else ""
        raise PipelineConfigError(f"{where}: missing required key 'backend' (one of {', '.join(JUDGES)}){given}")
    if name not in JUDGES:
        raise PipelineConfigError(f"{where}.backend: must be one of {', '.join(JUDGES)}, got {name!r}")
    backend = JUDGES[name]
    config = dataclass_from_dict(backend.load_config(), settings, where)
    for field in dataclasses.fields(config):
        # A required setting (base_url, model) given as "" is as missing as one left out.
        required = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
        value = getattr(config, field.name)
        if required and isinstance(value, str) and not value.strip():
            raise PipelineConfigError(f"{where}.{field.name}: must not be empty")
    return backend, config


def build_judge(spec, where: str = "judge"):
    """A judge from its table (or the judge itself, passed through)."""
    from .base import Judge

    if isinstance(spec, Judge):
        return spec
    backend, config = judge_config(spec, where)
    return backend.load_judge()(config)
