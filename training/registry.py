"""The names several places need, each registered once with its config class:
stage kinds (the stage runner and the pipeline config it fills in).

Entries refer to their classes and functions lazily, as "package.module:Name"
(lm-evaluation-harness style), so importing the registry imports no torch or TRL."""
from __future__ import annotations

import importlib
from dataclasses import dataclass


def load(reference: str):
    """The object a "package.module:Name" reference names."""
    module, _, name = reference.partition(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class StageKind:
    name: str
    runner: str  # "module:function" taking (job, run) and returning a StageOutcome
    config: str | None = None  # the pipeline config class the runner fills in, if any

    def load_runner(self):
        return load(self.runner)

    def load_config(self):
        return load(self.config) if self.config else None


STAGE_KINDS: dict[str, StageKind] = {}


def register_stage_kind(name: str, *, runner: str, config: str | None = None) -> StageKind:
    if name in STAGE_KINDS:
        raise ValueError(f"stage kind {name!r} is already registered")
    STAGE_KINDS[name] = StageKind(name, runner, config)
    return STAGE_KINDS[name]


register_stage_kind("export_inputs", runner="training.stages.inputs:run_export_inputs")
register_stage_kind("generate", runner="training.stages.data:run_generate",
                    config="training.pipeline.generation:CandidateGenerationConfig")
register_stage_kind("label", runner="training.stages.data:run_label", config="training.pipeline.labeling:LabelingConfig")
register_stage_kind("preferences", runner="training.stages.data:run_preferences",
                    config="training.pipeline.preferences:PreferenceConfig")
register_stage_kind("reward_model", runner="training.stages.rewards:run_reward_model",
                    config="training.pipeline.rewards:RewardModelConfig")
register_stage_kind("margins", runner="training.stages.rewards:run_margins")
register_stage_kind("sft", runner="training.stages.policies:run_sft", config="training.pipeline.policies:PolicyConfig")
register_stage_kind("dpo", runner="training.stages.policies:run_dpo", config="training.pipeline.policies:PolicyConfig")
register_stage_kind("joint_dpo", runner="training.stages.policies:run_joint_dpo",
                    config="training.pipeline.policies:PolicyConfig")
register_stage_kind("modpo", runner="training.stages.policies:run_modpo", config="training.pipeline.policies:PolicyConfig")
register_stage_kind("merge", runner="training.stages.policies:run_merge")
register_stage_kind("evaluate", runner="training.stages.evaluation:run_evaluate",
                    config="training.pipeline.evaluation:EvaluationConfig")
