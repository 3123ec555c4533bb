"""The names several places need, each registered once with its config class:
presets (the experiment configuration they fill in), judges (the pipeline's
own registry, re-used: the pipeline CLI needs it without Django) and stage
kinds (the stage runner and the pipeline config it fills in). The admin's
validation, the plans, the CLI and the stage runners all look names up here.

Entries refer to their classes and functions lazily, as "package.module:Name"
(lm-evaluation-harness style), so importing the registry imports no torch or TRL."""
from __future__ import annotations

from dataclasses import dataclass

from training.pipeline.judges.registry import JUDGES, JudgeBackend, judge_config, load

__all__ = ["JUDGES", "JudgeBackend", "PRESETS", "STAGE_KINDS", "judge_config", "load", "preset_choices",
           "register_preset", "register_stage_kind"]


@dataclass(frozen=True)
class Preset:
    name: str
    label: str
    config: str = "training.plans:ExperimentConfig"  # its defaults: training.plans.PRESET_DEFAULTS[name]

    def load_config(self):
        return load(self.config)


PRESETS: dict[str, Preset] = {}


def register_preset(name: str, *, label: str, config: str = Preset.config) -> Preset:
    if name in PRESETS:
        raise ValueError(f"preset {name!r} is already registered")
    PRESETS[name] = Preset(name, label, config)
    return PRESETS[name]


def preset_choices() -> list[tuple[str, str]]:
    return [(preset.name, preset.label) for preset in PRESETS.values()]


register_preset("method_comparison", label="Method comparison (phase 1)")
register_preset("criteria_comparison", label="Criteria comparison (phase 2)")
register_preset("personalised", label="Personalised merged adapters")
register_preset("cpu_demo", label="CPU demo (packaged models, rubric judge)")
register_preset("validation", label="Validation run (packaged models, rubric judge, sized with intervals)")


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
