"""One registry of names: stage kinds, judges and presets, each with its config
class, found lazily; the experiment check and the pipeline CLI accept the same judges."""
import dataclasses
import subprocess
import sys

import pytest

from training import registry
from training.models import Experiment
from training.pipeline.io import PipelineConfigError
from training.pipeline.judges.registry import judge_config
from training.plans import PRESET_DEFAULTS, ConfigError, build_plan, default_config, validate_config


def test_importing_the_registry_imports_no_torch_or_trl():
    code = "import sys, training.registry; print(sorted(m for m in ('torch', 'trl', 'transformers', 'django') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_every_stage_kind_resolves_to_a_runner_and_its_config_class():
    for kind in registry.STAGE_KINDS.values():
        assert callable(kind.load_runner()), kind.name
        config = kind.load_config()
        assert config is None or dataclasses.is_dataclass(config), kind.name


def test_every_planned_job_is_a_registered_stage_kind():
    kinds = {spec.kind for preset in registry.PRESETS for spec in build_plan(validate_config(_runnable(preset)))}
    assert kinds <= set(registry.STAGE_KINDS) and "modpo" in kinds


def test_a_plan_cannot_name_an_unregistered_stage_kind():
    from training.plans import JobSpec

    with pytest.raises(ValueError, match="unknown stage kind 'trian'"):
        JobSpec("x", "trian", "gpu")


def test_every_judge_resolves_to_its_class_and_config_dataclass():
    assert set(registry.JUDGES) == {"http", "local", "rubric"}
    for judge in registry.JUDGES.values():
        assert isinstance(judge.load_judge(), type) and dataclasses.is_dataclass(judge.load_config())


def test_every_preset_has_defaults_a_label_and_its_config_class():
    assert set(registry.PRESETS) == set(PRESET_DEFAULTS)
    assert Experiment._meta.get_field("preset").choices == registry.preset_choices()
    for preset in registry.PRESETS.values():
        assert preset.label and preset.load_config().__name__ == "ExperimentConfig"
        assert validate_config(_runnable(preset.name)).preset == preset.name


@pytest.mark.parametrize("judge", [
    {"backend": "rubric"},
    {"backend": "rubric", "persona_noise": 0.1},
    {"backend": "http", "base_url": "http://127.0.0.1:8001/v1", "model": "judge", "temperature": 0.2},
    {"backend": "http", "base_url": "http://127.0.0.1:8001/v1", "model": "judge", "modle": "x"},
    {"backend": "http", "base_url": "http://127.0.0.1:8001/v1", "model": "judge", "temperature": "warm"},
    {"backend": "http", "base_url": "http://127.0.0.1:8001/v1", "model": "judge", "max_concurrency": 0},
    {"backend": "http", "model": "judge"},
    {"backend": "http", "base_url": "", "model": "judge"},
    {"backend": "local"},
    {"kind": "http", "modle": "x"},
    {"backend": "oracle"},
])
def test_experiments_accept_exactly_the_judge_settings_the_pipeline_accepts(judge):
    try:
        judge_config(judge)
        pipeline_accepts = True
    except PipelineConfigError:
        pipeline_accepts = False
    try:
        validate_config({"preset": "cpu_demo", "judge": judge})
        experiment_accepts = True
    except ConfigError:
        experiment_accepts = False
    assert experiment_accepts == pipeline_accepts


def _runnable(preset: str) -> dict:
    config = default_config(preset)
    if preset == "personalised":
        config["weight_vectors"] = {"everyone": {"empathy": 0.5, "safety": 0.5}}
    return config
