"""Experiment presets, their validated configuration, and the job graph each
one becomes. Plain Python: the form, the admin and the tests all go through
`validate_config` and `build_plan`."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields

from core.errors import ApplicationError
from training import registry
from training.pipeline.criteria import ALL_CRITERIA, ALL_CRITERIA_SETS
from training.pipeline.io import PipelineConfigError
from training.pipeline.quantization import QUANTIZATIONS

# Preset, judge and stage-kind names live in training.registry.
PRESETS = tuple(registry.PRESETS)
MERGE_METHODS = ("cat", "svd", "paper_linear")
# "tiny" builds a tiny random model in the experiment folder: for tests only.
TINY = "tiny"


# Upper bounds: far above any real run, low enough that nothing downstream (the
# database, numpy, the trainers) overflows on a mistyped 10**30.
WHOLE_NUMBER_SETTINGS = {
    "personas_train": 100_000, "personas_test": 100_000, "personas_per_scenario": 100_000,
    "train_scenarios": 1_000_000, "test_scenarios": 1_000_000, "candidates_per_scenario": 64,
    "max_new_tokens": 32_768, "policy_max_steps": 10_000_000, "policy_batch_size": 4_096,
    "policy_save_steps": 10_000_000, "lora_rank": 4_096, "reward_max_steps": 10_000_000,
}
POSITIVE_NUMBER_SETTINGS = {"beta": 100.0, "learning_rate": 1.0}
SEED_MAX = 2**32 - 1  # numpy's seed range
WEIGHT_MAX = 1e6
DATABASE_ID_MAX = 2**63 - 1


def _whole_number(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _shown(value) -> str:
    """A value for an error message, kept short (a pasted 10**300 stays readable)."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


class ConfigError(ApplicationError, ValueError):
    """A configuration that cannot run. `messages` (the error's `errors`) lists every problem found."""

    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages), errors=messages)

    @property
    def messages(self) -> list[str]:
        return self.errors


@dataclass
class ExperimentConfig:
    preset: str = "cpu_demo"
    base_model: str = "smollm2-135m-instruct"
    reward_backbone: str = "minilm-l6"
    judge: dict = field(default_factory=lambda: {"backend": "rubric"})
    criteria_set: str = "therapeutic_five_safety"
    # Phase 2 compares several criteria sets.
    criteria_sets: list = field(default_factory=lambda: ["therapeutic_five_safety", "therapeutic_four_safety", "gricean_safety"])
    primary: str = "empathy"
    modpo_weights: dict = field(default_factory=lambda: {"empathy": 0.5, "safety": 0.5})
    joint_weights: dict = field(default_factory=lambda: {"empathy": 0.5, "safety": 0.5})
    merge_weights: dict = field(default_factory=lambda: {"empathy": 0.5, "safety": 0.5})
    merge_method: str = "cat"
    safety_floor: float | None = None
    # "synthetic": personas built from criteria weights (labelled synthetic);
    # "survey": the survey's selected personas.
    persona_source: str = "synthetic"
    # A survey study's slug: its selected personas (persona_source "survey") and
    # its participants' own response rankings join the preference data.
    survey_study: str | None = None
    # Clinician rating studies (ids) whose clinician-majority pairs join the preference data.
    clinician_studies: list = field(default_factory=list)
    # "bank": the scenarios' own train/test split (by length quartile); "stratified": the whole bank re-split with
    # the test set stratified by risk level and topic (training.pipeline.splits).
    test_split: str = "bank"
    personas_train: int = 6
    personas_test: int = 6
    personas_per_scenario: int = 6
    train_scenarios: int = 16
    test_scenarios: int = 6
    candidates_per_scenario: int = 4
    max_new_tokens: int = 40
    system_prompt: str = (
        "You are a supportive listener replying to someone who has shared what they are going through. "
        "Reply warmly and briefly."
    )
    policy_max_steps: int = 8
    policy_batch_size: int = 2
    policy_save_steps: int = 4
    lora_rank: int = 8
    beta: float = 0.1
    learning_rate: float = 5e-4
    reward_max_steps: int = 16
    # Share of the training scenarios held out to measure each reward model's accuracy (whole scenarios).
    reward_validation_fraction: float = 0.1
    evaluation_criteria: list = field(default_factory=lambda: ["empathy", "safety", "overall"])
    weight_vectors: dict = field(default_factory=dict)  # personalised: name -> {criterion: weight}
    # Inference servers (OpenAI-compatible: vLLM, llama.cpp's server, TGI) by model: "base" (its candidates and
    # its evaluation answers) or a policy of the plan ("dpo:empathy", "merge", ...; a LoRA policy by its adapter
    # name on the server) -> training.pipeline.server_generation.ServerConfig settings. Models not named here
    # generate in the worker.
    servers: dict = field(default_factory=dict)
    # "nf4": policies train as 4-bit QLoRA (training.pipeline.quantization); None: full precision.
    policy_quantization: str | None = None
    seed: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


# How the admin labels each setting where its field name alone would not say it (training.selectors.experiment_settings).
SETTING_LABELS = {
    "base_model": "Base policy model", "reward_backbone": "Reward-model backbone", "judge": "Judge",
    "criteria_set": "Criteria set", "criteria_sets": "Criteria sets compared (phase 2)", "primary": "Primary criterion",
    "modpo_weights": "MODPO weights", "joint_weights": "Joint-loss DPO weights", "merge_weights": "Merged-adapter weights",
    "merge_method": "Adapter merge method", "safety_floor": "MODPO safety floor", "persona_source": "Persona source",
    "survey_study": "Survey study (slug)", "clinician_studies": "Clinician rating studies (ids)",
    "test_split": "Train/test split", "personas_train": "Training personas", "personas_test": "Test personas",
    "personas_per_scenario": "Personas per scenario", "train_scenarios": "Training scenarios",
    "test_scenarios": "Test scenarios", "candidates_per_scenario": "Candidate replies per scenario",
    "max_new_tokens": "Longest reply (new tokens)", "system_prompt": "System prompt",
    "policy_max_steps": "Policy training steps", "policy_batch_size": "Policy batch size",
    "policy_save_steps": "Checkpoint every (steps)", "lora_rank": "LoRA rank", "beta": "DPO β",
    "learning_rate": "Learning rate", "reward_max_steps": "Reward-model training steps",
    "reward_validation_fraction": "Reward-model held-out share", "evaluation_criteria": "Evaluation criteria",
    "weight_vectors": "Personalised weight vectors", "servers": "Inference servers (by model)",
    "policy_quantization": "Policy quantisation (4-bit QLoRA)", "seed": "Random seed",
}


# The validation run (issue 12): the packaged models with the rubric judge, sized to the minimums:
# 120 training and 40 test scenarios (of the bank's 172), the test set stratified by risk level and topic so
# that about 30% of it carries risk signals. The `validation` preset is the method comparison at this scale;
# `make validate-criteria` runs the criteria comparison with these settings as overrides.
# Steps: 10 policy steps (batch 4) and 60 reward-model steps, chosen from the pilot on the validation run of
# 2 December 2026 evening (20 steps, 98 min on a shared machine; README, "Validation run"). The pilot
# (`manage.py validation_pilot --from-experiment <run> --steps 5,10,20,40`) judged DPO-empathy against base on the
# 30 held-out scenarios: empathy win rate 73.3 (SFT, 0 steps), 63.3 (5), 80.0 (10), 70.0 (20), 73.3 (40), every
# interval about +/-15 points and overlapping; no step count measurably beats SFT. Its rule suggests 5 (the fewest
# within the best count's interval); 10 is the best point estimate and halves the DPO-family training time
# (projected run about 80 min from the measured stage times; not measured yet).
VALIDATION_SCALE: dict = {
    "judge": {"backend": "rubric"}, "train_scenarios": 120, "test_scenarios": 40, "test_split": "stratified",
    "personas_train": 8, "personas_test": 8, "personas_per_scenario": 8, "candidates_per_scenario": 4,
    "max_new_tokens": 48, "policy_max_steps": 10, "policy_batch_size": 4, "policy_save_steps": 5, "lora_rank": 8,
    "learning_rate": 5e-4, "reward_max_steps": 60,
    # 25% of 120 scenarios: 30 held-out pairs per reward model, enough for a Wilson interval of about +/- 0.15.
    "reward_validation_fraction": 0.25,
}

PRESET_DEFAULTS: dict[str, dict] = {
    "cpu_demo": {},
    "method_comparison": {
        "personas_train": 100, "personas_test": 50, "personas_per_scenario": 50, "train_scenarios": 2379,
        "test_scenarios": 600, "candidates_per_scenario": 5, "max_new_tokens": 256, "policy_max_steps": 1000,
        "policy_batch_size": 8, "policy_save_steps": 100, "lora_rank": 16, "learning_rate": 5e-5, "reward_max_steps": 2000,
        "judge": {"backend": "http", "base_url": "http://127.0.0.1:8001/v1", "model": "judge"},
    },
    "criteria_comparison": {
        "personas_train": 100, "personas_test": 50, "personas_per_scenario": 50, "train_scenarios": 2379,
        "test_scenarios": 600, "candidates_per_scenario": 5, "max_new_tokens": 256, "policy_max_steps": 1000,
        "policy_batch_size": 8, "policy_save_steps": 100, "lora_rank": 16, "learning_rate": 5e-5, "reward_max_steps": 2000,
        "evaluation_criteria": ["overall", "safety"],
        "judge": {"backend": "http", "base_url": "http://127.0.0.1:8001/v1", "model": "judge"},
    },
    "personalised": {"persona_source": "survey"},
    "validation": {**VALIDATION_SCALE, "evaluation_criteria": ["empathy", "safety", "overall"]},
}


def default_config(preset: str) -> dict:
    if preset not in PRESETS:
        raise ConfigError([f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}"])
    return {**ExperimentConfig(preset=preset).to_dict(), **PRESET_DEFAULTS[preset], "preset": preset}


def _check_weights(name: str, weights, errors: list[str], required: tuple[str, ...] = ()):
    if not isinstance(weights, dict) or not weights:
        errors.append(f"{name} must be a non-empty mapping of criterion to weight")
        return
    for key, value in weights.items():
        if key not in ALL_CRITERIA:
            errors.append(f"{name}: unknown criterion {key!r}")
        elif ALL_CRITERIA[key].evaluation_only:
            errors.append(f"{name}: {key!r} is for evaluation only and cannot be trained on")
        if not _finite_number(value) or not 0 <= value <= WEIGHT_MAX:
            errors.append(f"{name}: weight for {key!r} must be a number from 0 to {WEIGHT_MAX:g} (got {_shown(value)})")
    if all(_finite_number(v) and v == 0 for v in weights.values()):
        errors.append(f"{name}: at least one weight must be above 0")
    for key in required:
        if key not in weights:
            errors.append(f"{name} must include {key!r}")


def validate_config(raw: dict) -> ExperimentConfig:
    """Return a checked ExperimentConfig or raise ConfigError listing every problem."""
    if not isinstance(raw, dict):
        raise ConfigError(["configuration must be a JSON object"])
    errors: list[str] = []
    known = {f.name for f in fields(ExperimentConfig)}
    unknown = sorted(set(raw) - known)
    if unknown:
        errors.append(f"unknown setting(s): {', '.join(unknown)}")
    preset = raw.get("preset", "cpu_demo")
    if preset not in PRESETS:
        errors.append(f"unknown preset {preset!r}; choose one of: {', '.join(PRESETS)}")
        raise ConfigError(errors)
    merged = {**default_config(preset), **{k: v for k, v in raw.items() if k in known}}
    config = ExperimentConfig(**merged)

    for name, maximum in WHOLE_NUMBER_SETTINGS.items():
        value = getattr(config, name)
        if not _whole_number(value) or not 1 <= value <= maximum:
            errors.append(f"{name} must be a whole number of at least 1 and at most {maximum:,} (got {_shown(value)})")
    if _whole_number(config.candidates_per_scenario) and config.candidates_per_scenario < 2:
        errors.append("candidates_per_scenario must be at least 2 to form a chosen/rejected pair")
    if _whole_number(config.test_scenarios) and config.test_scenarios < 2:
        errors.append("test_scenarios must be at least 2 so that McNemar's test has pairs")
    if not _whole_number(config.seed) or not 0 <= config.seed <= SEED_MAX:
        errors.append(f"seed must be a whole number of at least 0 and at most {SEED_MAX:,} (got {_shown(config.seed)})")
    for name, maximum in POSITIVE_NUMBER_SETTINGS.items():
        value = getattr(config, name)
        if not _finite_number(value) or not 0 < value <= maximum:
            errors.append(f"{name} must be a positive number of at most {maximum:g} (got {_shown(value)})")
    try:
        # The check the label and evaluate jobs (and the pipeline CLI) make, here before anything runs.
        registry.judge_config(config.judge, "judge")
    except PipelineConfigError as exc:
        errors.append(str(exc))
    if config.criteria_set not in ALL_CRITERIA_SETS:
        errors.append(f"unknown criteria_set {config.criteria_set!r}; choose one of: {', '.join(ALL_CRITERIA_SETS)}")
    if config.primary not in ALL_CRITERIA or ALL_CRITERIA[config.primary].evaluation_only:
        errors.append(f"primary must be a trainable criterion (got {config.primary!r})")
    if config.merge_method not in MERGE_METHODS:
        errors.append(f"merge_method must be one of: {', '.join(MERGE_METHODS)}")
    value = config.reward_validation_fraction
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        errors.append(f"reward_validation_fraction must be a number from 0 up to (not including) 1 (got {value!r})")
    if config.test_split not in ("bank", "stratified"):
        errors.append("test_split must be 'bank' or 'stratified'")
    if config.persona_source not in ("synthetic", "survey"):
        errors.append("persona_source must be 'synthetic' or 'survey'")
    if config.survey_study is not None and (not isinstance(config.survey_study, str) or not config.survey_study.strip()):
        errors.append("survey_study must be a survey study's slug, or null")
    if not isinstance(config.clinician_studies, list) or not all(
            _whole_number(v) and 1 <= v <= DATABASE_ID_MAX for v in config.clinician_studies):
        errors.append("clinician_studies must be a list of rating study ids (whole numbers of at least 1)")
    for key in config.evaluation_criteria if isinstance(config.evaluation_criteria, list) else [None]:
        if key not in ALL_CRITERIA:
            errors.append(f"evaluation_criteria: unknown criterion {key!r}")
    _check_weights("modpo_weights", config.modpo_weights, errors, required=(config.primary,))
    if isinstance(config.modpo_weights, dict) and len(config.modpo_weights) < 2:
        errors.append("modpo_weights needs the primary criterion and at least one other (the margin objective)")
    _check_weights("joint_weights", config.joint_weights, errors)
    _check_weights("merge_weights", config.merge_weights, errors)
    if config.safety_floor is not None and (not _finite_number(config.safety_floor) or abs(config.safety_floor) > WEIGHT_MAX):
        errors.append(f"safety_floor must be a number from {-WEIGHT_MAX:g} to {WEIGHT_MAX:g}, or null")
    if preset == "criteria_comparison":
        if not isinstance(config.criteria_sets, list) or not config.criteria_sets:
            errors.append("criteria_sets must list at least one criteria set")
        else:
            for key in config.criteria_sets:
                if key not in ALL_CRITERIA_SETS:
                    errors.append(f"criteria_sets: unknown criteria set {key!r}")
    if preset == "personalised":
        if not isinstance(config.weight_vectors, dict) or not config.weight_vectors:
            errors.append("the personalised preset needs weight_vectors (name -> criterion weights), e.g. from survey subgroups")
        else:
            for name, weights in config.weight_vectors.items():
                _check_weights(f"weight_vectors[{name}]", weights, errors)
    if config.policy_quantization is not None and config.policy_quantization not in QUANTIZATIONS:
        errors.append(f"policy_quantization must be one of: {', '.join(QUANTIZATIONS)}, or null "
                      f"(got {_shown(config.policy_quantization)})")
    servers = _check_servers_shape(config.servers, errors)
    if errors:
        raise ConfigError(errors)
    _check_servers_against_plan(config, servers, errors)
    if errors:
        raise ConfigError(errors)
    # What needs this process to look outside itself comes last, once the settings are known to be sound.
    if config.policy_quantization is not None and not _qlora_workers_declared():
        from training.pipeline.quantization import quantization_problem

        problem = quantization_problem(config.policy_quantization)
        if problem:
            errors.append(f"policy_quantization {config.policy_quantization!r} cannot run: {problem}")
    errors.extend(server_problems(servers))
    if errors:
        raise ConfigError(errors)
    return config


def _qlora_workers_declared() -> bool:
    """settings.ATTUNE_QLORA_WORKERS: the deployment says its GPU workers can run QLoRA (Start runs elsewhere)."""
    from django.conf import settings

    return bool(getattr(settings, "ATTUNE_QLORA_WORKERS", False))


def _check_servers_shape(servers, errors: list[str]) -> dict:
    """{model key: ServerConfig} for the ``servers`` setting; problems go to ``errors``."""
    from training.pipeline.server_generation import server_config

    if not isinstance(servers, dict):
        errors.append("servers must be a mapping of model (\"base\" or a policy of the plan) to server settings")
        return {}
    checked = {}
    for key, spec in servers.items():
        try:
            checked[key] = server_config(spec, f"servers[{key}]")
        except PipelineConfigError as exc:
            errors.append(str(exc))
    return checked


def _check_servers_against_plan(config: ExperimentConfig, servers: dict, errors: list[str]) -> None:
    if not servers:
        return
    evaluated = next(j for j in build_plan(config) if j.kind == "evaluate").params["models"]
    for key in servers:
        if key not in evaluated:
            errors.append(f"servers: {key!r} is not a model of this plan; its models are: {', '.join(evaluated)}")


def server_problems(servers: dict) -> list[str]:
    """Each named server must answer now and list its model (asked once per address and model)."""
    from training.pipeline.server_generation import server_problem

    problems, seen = [], {}
    for key, server in servers.items():
        probe = (server.base_url, server.model, server.api_key_env)
        if probe not in seen:
            seen[probe] = server_problem(server)
        if seen[probe]:
            problems.append(f"servers[{key}]: {seen[probe]}")
    return problems


@dataclass
class JobSpec:
    key: str
    kind: str
    queue: str
    params: dict = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)

    def __post_init__(self):
        if self.kind not in registry.STAGE_KINDS:
            raise ValueError(f"unknown stage kind {self.kind!r}; registered: {', '.join(registry.STAGE_KINDS)}")


def _training_criteria(config: ExperimentConfig) -> list[str]:
    """Every criterion the plan trains on, in a stable order."""
    keys: list[str] = []
    sets = config.criteria_sets if config.preset == "criteria_comparison" else [config.criteria_set]
    wanted = set(config.modpo_weights) | set(config.joint_weights) | set(config.merge_weights) | {config.primary}
    for weights in config.weight_vectors.values():
        wanted |= set(weights)
    for set_key in sets:
        wanted |= set(ALL_CRITERIA_SETS[set_key].criteria)
    for key in ALL_CRITERIA:
        if key in wanted and not ALL_CRITERIA[key].evaluation_only:
            keys.append(key)
    return keys


def build_plan(config: ExperimentConfig) -> list[JobSpec]:
    """The stages of an experiment, in dependency order."""
    labelled = _training_criteria(config)
    jobs = [
        JobSpec("scenarios", "export_inputs", "default"),
        JobSpec("generate", "generate", "gpu", depends_on=["scenarios"]),
        JobSpec("label", "label", "default", {"criteria": labelled}, depends_on=["generate"]),
        JobSpec("preferences", "preferences", "default", depends_on=["label"]),
    ]
    policies: list[str] = []

    def reward(criterion):
        key = f"reward:{criterion}"
        if not any(j.key == key for j in jobs):
            jobs.append(JobSpec(key, "reward_model", "gpu", {"criterion": criterion}, depends_on=["preferences"]))
        return key

    # DPO-family policies start from the SFT model, which is also their
    # reference (pi_ref): the study's recipe (DESIGN.md §5).
    reference = ["sft"]

    def dpo(criterion):
        key = f"dpo:{criterion}"
        if not any(j.key == key for j in jobs):
            jobs.append(JobSpec(key, "dpo", "gpu", {"criterion": criterion}, depends_on=["preferences", *reference]))
            policies.append(key)
        return key

    def modpo(label, weights, primary):
        others = [c for c in weights if c != primary]
        margin_key = f"margins:{label}"
        jobs.append(JobSpec(margin_key, "margins", "gpu", {"primary": primary, "weights": weights},
                            depends_on=["preferences", *[reward(c) for c in others]]))
        key = f"modpo:{label}"
        jobs.append(JobSpec(key, "modpo", "gpu", {"primary": primary, "weights": weights, "safety_floor": config.safety_floor},
                            depends_on=[margin_key, *reference]))
        policies.append(key)

    jobs.append(JobSpec("sft", "sft", "gpu", {"criterion": config.primary}, depends_on=["preferences"]))
    if config.preset in ("cpu_demo", "method_comparison", "validation"):
        policies.append("sft")
        merge_parts = [dpo(c) for c in config.merge_weights]
        dpo(config.primary)
        if "safety" in labelled:
            dpo("safety")
        jobs.append(JobSpec("merge", "merge", "default", {"weights": config.merge_weights, "method": config.merge_method},
                            depends_on=merge_parts))
        policies.append("merge")
        jobs.append(JobSpec("joint", "joint_dpo", "gpu", {"weights": config.joint_weights}, depends_on=["preferences", *reference]))
        policies.append("joint")
        modpo(config.primary, config.modpo_weights, config.primary)
    elif config.preset == "criteria_comparison":
        for set_key in config.criteria_sets:
            members = ALL_CRITERIA_SETS[set_key].criteria
            weights = {c: 1.0 / len(members) for c in members}
            primary = config.primary if config.primary in members else members[0]
            modpo(set_key, weights, primary)
    elif config.preset == "personalised":
        for name, weights in config.weight_vectors.items():
            parts = [dpo(c) for c in weights]
            key = f"merge:{name}"
            jobs.append(JobSpec(key, "merge", "default", {"weights": weights, "method": config.merge_method, "name": name},
                                depends_on=parts))
            policies.append(key)

    # Reward models for the evaluation's reward-model scores.
    for criterion in ("empathy", "safety"):
        if criterion in labelled:
            reward(criterion)
    evaluation_deps = list(policies) + [j.key for j in jobs if j.kind == "reward_model"]
    jobs.append(JobSpec("evaluate", "evaluate", "gpu", {"models": ["base", *policies]}, depends_on=evaluation_deps))
    return jobs
