"""The stage runners: each loads what its job needs, calls one pipeline
function with paths, and returns what to record. Files go under the job's own
folder (Job.work_dir), so a rerun of the same job resumes where it stopped."""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from core.models import ModelVersion, Response, Scenario
from training.pipeline.criteria import ALL_CRITERIA, THERAPEUTIC
from training.pipeline.io import write_jsonl_atomic

from .models import Artifact, Job
from .plans import TINY, ExperimentConfig
from .services import JobCancelled, JobRefused


@dataclass
class StageOutcome:
    result: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)
    artifacts: list = field(default_factory=list)  # dicts for services.artifact_register


def _config(job: Job) -> ExperimentConfig:
    return ExperimentConfig(**job.experiment.config)


def _upstream(job: Job, key: str) -> Job:
    return job.experiment.jobs.get(key=key)


def _model_ref(job: Job, config: ExperimentConfig, ref: str, folder: str, build) -> str:
    """The model reference to use: "tiny" becomes a tiny model built once in the experiment folder."""
    if ref != TINY:
        return ref
    path = Path(job.experiment.output_dir) / folder
    if not (path / "config.json").exists():
        build(path, seed=config.seed)
    return str(path)


def _base_model(job: Job, config: ExperimentConfig) -> str:
    from training.pipeline.models import build_tiny_causal_lm

    return _model_ref(job, config, config.base_model, "tiny-base", build_tiny_causal_lm)


def _reward_backbone(job: Job, config: ExperimentConfig) -> str:
    from training.pipeline.models import build_tiny_sequence_classifier

    return _model_ref(job, config, config.reward_backbone, "tiny-reward-backbone", build_tiny_sequence_classifier)


def _stopped(run):
    if run.should_stop():
        raise JobCancelled()


# --- Inputs -------------------------------------------------------------------

SYNTHETIC_PERSONA_TEMPLATE = (
    "Synthetic persona {n} (built from criteria weights, not from a participant). "
    "What matters most to me in a reply is {top}; I also care about {second}. "
    "{style}"
)
PERSONA_STYLES = (
    "I prefer short, plain answers.",
    "I like it when someone takes time to understand me before suggesting anything.",
    "I don't want to be told what to do.",
    "I want practical next steps when I'm ready for them.",
    "I need to feel safe before I open up.",
)


def synthetic_personas(*, train: int, test: int, seed: int) -> list[dict]:
    """Personas with varied criteria weights, for runs with no survey cohort.
    Every one says it is synthetic, in its id and its text."""
    rng = random.Random(seed)
    keys = [c.key for c in THERAPEUTIC]
    personas = []
    for n in range(train + test):
        weights = {k: round(rng.uniform(0.5, 1.5), 3) for k in keys}
        weights[keys[n % len(keys)]] += 1.0
        ordered = sorted(keys, key=lambda k: -weights[k])
        personas.append({
            "persona_id": f"synthetic-{n:03d}",
            "text": SYNTHETIC_PERSONA_TEMPLATE.format(
                n=n, top=ALL_CRITERIA[ordered[0]].name.lower(), second=ALL_CRITERIA[ordered[1]].name.lower(),
                style=PERSONA_STYLES[n % len(PERSONA_STYLES)],
            ),
            "split": "train" if n < train else "test",
            "weights": weights,
        })
    return personas


def scenario_record(scenario: Scenario) -> dict:
    return {"scenario_id": f"s{scenario.pk}", "prompt": scenario.text, "split": scenario.split,
            "risk_level": scenario.risk_level, "topics": list(scenario.topics)}


def scenario_from_id(scenario_id: str) -> Scenario:
    return Scenario.objects.get(pk=int(scenario_id.removeprefix("s")))


def run_export_inputs(job: Job, run) -> StageOutcome:
    config = _config(job)
    work = job.work_dir()
    rng = random.Random(config.seed)
    if config.test_split == "stratified":
        # The whole bank, re-split: the test set stratified by risk level and topic (validation runs).
        from training.pipeline.splits import stratified_split

        pool = [scenario_record(s) for s in Scenario.objects.order_by("pk")]
        try:
            train_records, test_records = stratified_split(pool, train=config.train_scenarios, test=config.test_scenarios,
                                                           seed=config.seed)
        except ValueError as exc:
            raise JobRefused(f"{exc}; import more or lower the numbers") from None
        records = train_records + test_records
    else:
        records = []
        for split, count in (("train", config.train_scenarios), ("test", config.test_scenarios)):
            pool = list(Scenario.objects.filter(split=split).order_by("pk"))
            if len(pool) < count:
                raise JobRefused(f"the experiment asks for {count} {split} scenarios but only {len(pool)} exist; import more or lower the number")
            records += [scenario_record(s) for s in rng.sample(pool, count)]
    scenarios_path = work / "scenarios.jsonl"
    write_jsonl_atomic(scenarios_path, records)
    lineage = {"scenario_ids": [int(r["scenario_id"].removeprefix("s")) for r in records]}
    personas_path = work / "personas.jsonl"
    if config.persona_source == "survey":
        personas, dataset_version = _survey_personas(job, config, personas_path)
        lineage["dataset_versions"] = [dataset_version]
    else:
        personas = synthetic_personas(train=config.personas_train, test=config.personas_test, seed=config.seed)
        write_jsonl_atomic(personas_path, personas)
        lineage["personas"] = "synthetic"
    run.progress(1, 1)
    return StageOutcome(
        result={"scenarios_path": str(scenarios_path), "personas_path": str(personas_path),
                "train_scenarios": config.train_scenarios, "test_scenarios": config.test_scenarios, "personas": len(personas),
                "test_split": config.test_split},
        lineage=lineage,
        artifacts=[
            {"kind": Artifact.Kind.SCENARIOS, "name": "scenarios", "path": scenarios_path},
            {"kind": Artifact.Kind.PERSONAS, "name": "personas", "path": personas_path},
        ],
    )


def _survey_personas(job: Job, config: ExperimentConfig, path: Path):
    """Export the survey's selected personas as a dataset version (withdrawals
    mark it affected) and refuse to go on if one already is."""
    from survey import selectors as survey_selectors
    from survey import services as survey_services

    version = survey_services.personas_export_dataset(path=path, actor=None, study=_survey_study(config))
    problem = survey_selectors.dataset_version_withdrawal_problem(version)
    if problem:
        raise JobRefused(problem)
    from training.pipeline.io import load_personas

    return load_personas(path), version.pk


def _survey_study(config: ExperimentConfig):
    if not config.survey_study:
        return None
    from survey.models import Study

    return Study.objects.get(slug=config.survey_study)


def check_dataset_versions(job: Job):
    """A job refuses to start on a survey dataset version (personas, human
    rankings) that a withdrawal has marked affected."""
    version_ids = [v for lineage in job.experiment.jobs.values_list("lineage", flat=True)
                   for v in (lineage or {}).get("dataset_versions", [])]
    if not version_ids:
        return
    from survey import selectors as survey_selectors
    from survey.models import DatasetVersion

    for version_id in version_ids:
        version = DatasetVersion.objects.filter(pk=version_id).first()
        problem = survey_selectors.dataset_version_withdrawal_problem(version) if version else f"dataset version {version_id} no longer exists"
        if problem:
            raise JobRefused(f"{problem} This experiment cannot go on; start a new one to export a fresh version.")


# --- Generation, labels, preferences -------------------------------------------

def run_generate(job: Job, run) -> StageOutcome:
    from training.pipeline.generation import CandidateGenerationConfig, generate_candidates

    config = _config(job)
    inputs = _upstream(job, "scenarios").result
    output = job.work_dir() / "candidates.jsonl"
    base = _base_model(job, config)
    result = generate_candidates(
        CandidateGenerationConfig(
            model=base, scenarios_path=inputs["scenarios_path"], output_path=str(output), n=config.candidates_per_scenario,
            max_new_tokens=config.max_new_tokens, seed=config.seed, system_prompt=config.system_prompt, split="train",
            progress_bar=False,
        ),
        progress_callback=lambda done, total: run.progress(done, total),
        should_stop=run.should_stop,
    )
    _stopped(run)
    return StageOutcome(
        result={"candidates_path": str(output), "generated": result.generated, "skipped": result.skipped, "base_model": base},
        lineage={"base_model": base},
        artifacts=[{"kind": Artifact.Kind.CANDIDATES, "name": "candidates", "path": output}],
    )


def run_label(job: Job, run) -> StageOutcome:
    from training.pipeline.labeling import LabelingConfig, run_labeling

    config = _config(job)
    inputs = _upstream(job, "scenarios").result
    candidates = _upstream(job, "generate").result["candidates_path"]
    output = job.work_dir() / "labels.jsonl"
    result = run_labeling(
        LabelingConfig(
            candidates_path=candidates, scenarios_path=inputs["scenarios_path"], personas_path=inputs["personas_path"],
            output_path=str(output), judge=config.judge, criteria=job.params["criteria"],
            personas_per_scenario=config.personas_per_scenario, seed=config.seed, progress_bar=False,
        ),
        progress_callback=lambda done, total: run.progress(done, total),
        should_stop=run.should_stop,
    )
    _stopped(run)
    return StageOutcome(
        result={"labels_path": str(output), "labeled": result.labeled, "rejected": result.rejected, "judge": result.judge},
        lineage={"judge": result.judge},
        artifacts=[{"kind": Artifact.Kind.LABELS, "name": "labels", "path": output, "metrics": {"rejected": result.rejected}}],
    )


def run_preferences(job: Job, run) -> StageOutcome:
    from training.pipeline.preferences import PreferenceConfig, build_preference_dataset

    config = _config(job)
    inputs = _upstream(job, "scenarios").result
    output = job.work_dir() / "dataset"
    lineage = {}
    survey_path = None
    study = _survey_study(config)
    if study is not None:
        from survey import services as survey_services

        survey_path = job.work_dir() / "survey_rankings.jsonl"
        version = survey_services.response_rankings_export(study=study, path=survey_path)
        lineage["dataset_versions"] = [version.pk]
    clinician_path = None
    if config.clinician_studies:
        from annotation import services as annotation_services
        from annotation.models import RatingStudy

        clinician_path = job.work_dir() / "clinician_pairs.jsonl"
        text = "".join(annotation_services.preference_pairs_export(study=study, actor=None)
                       for study in RatingStudy.objects.filter(pk__in=config.clinician_studies).order_by("pk"))
        clinician_path.write_text(text)
        lineage["clinician_studies"] = list(config.clinician_studies)
    result = build_preference_dataset(PreferenceConfig(
        labels_path=_upstream(job, "label").result["labels_path"],
        candidates_path=_upstream(job, "generate").result["candidates_path"],
        scenarios_path=inputs["scenarios_path"],
        survey_path=str(survey_path) if survey_path else None,
        clinician_path=str(clinician_path) if clinician_path else None,
        criteria=job.experiment.jobs.get(key="label").params["criteria"],
        output_dir=str(output),
    ))
    run.progress(1, 1)
    return StageOutcome(
        result={"dataset_dir": str(output), "version": result.version, "counts": result.counts},
        lineage={"dataset": result.version, **lineage},
        artifacts=[{"kind": Artifact.Kind.DATASET, "name": "preferences", "path": output, "metrics": {"counts": result.counts}}],
    )


# --- Reward models and margins --------------------------------------------------

def run_reward_model(job: Job, run) -> StageOutcome:
    from training.pipeline.rewards import RewardModelConfig, train_reward_model

    config = _config(job)
    criterion = job.params["criterion"]
    dataset = _upstream(job, "preferences").result["dataset_dir"]
    output = job.work_dir() / "model"
    result = train_reward_model(RewardModelConfig(
        dataset_dir=dataset, criterion=criterion, output_dir=output, backbone=_reward_backbone(job, config),
        model_cache_dir=settings.MODEL_CACHE_DIR, max_steps=config.reward_max_steps, seed=config.seed,
        save_steps=max(1, config.policy_save_steps), validation_fraction=config.reward_validation_fraction,
    ))
    run.progress(1, 1)
    version = _register_model_version(job, kind=ModelVersion.Kind.REWARD, path=output, model_ref=config.reward_backbone,
                                      provenance={"criterion": criterion, "validation_accuracy": result.validation_accuracy})
    metrics = {"validation_accuracy": result.validation_accuracy, "train_accuracy": result.train_accuracy,
               "train_pairs": result.train_pairs, "validation_pairs": result.validation_pairs,
               "scale_mean": result.scale_mean, "scale_std": result.scale_std}
    return StageOutcome(
        result={"model_dir": str(output), **metrics},
        lineage={"dataset": _upstream(job, "preferences").result.get("version")},
        artifacts=[{"kind": Artifact.Kind.REWARD_MODEL, "name": f"reward-{criterion}", "path": output, "metrics": metrics,
                    "model_version": version}],
    )


def run_margins(job: Job, run) -> StageOutcome:
    from training.pipeline.rewards import compute_margins

    primary = job.params["primary"]
    weights = job.params["weights"]
    reward_dirs = {c: _upstream(job, f"reward:{c}").result["model_dir"] for c in weights if c != primary}
    output = job.work_dir() / "margins"
    path = compute_margins(_upstream(job, "preferences").result["dataset_dir"], primary, weights, reward_dirs, output)
    run.progress(1, 1)
    return StageOutcome(
        result={"margin_dataset_dir": str(path)},
        lineage={"reward_models": reward_dirs, "dataset": _upstream(job, "preferences").result.get("version")},
        artifacts=[{"kind": Artifact.Kind.MARGINS, "name": "margins", "path": path}],
    )


# --- Policies --------------------------------------------------------------------

def _sft_adapter(job: Job) -> str | None:
    """The SFT adapter a DPO-family policy starts from and uses as its reference."""
    sft = job.depends_on.filter(kind="sft").first()
    return sft.result["adapter_dir"] if sft else None


def _policy_config(job: Job, run):
    from training.pipeline.policies import PolicyConfig

    config = _config(job)
    return PolicyConfig(
        output_dir=job.work_dir() / "policy", base_model=_base_model(job, config), model_cache_dir=settings.MODEL_CACHE_DIR,
        base_adapter=_sft_adapter(job) if job.kind != "sft" else None,
        system_prompt=config.system_prompt, lora_rank=config.lora_rank, lora_alpha=2 * config.lora_rank,
        lora_init_seed=config.seed, beta=config.beta, learning_rate=config.learning_rate, max_steps=config.policy_max_steps,
        batch_size=config.policy_batch_size, save_steps=config.policy_save_steps, seed=config.seed,
        # 512, not 256: with the system prompt the bank's longest scenario is 390 prompt tokens, and at 256 TRL cut
        # the completion of 42 of its 172 scenarios (training SFT on nothing for the longest, dropping DPO pairs).
        max_length=512,
        progress_callback=run.progress, should_stop=run.should_stop,
    )


def _policy_outcome(job: Job, run, result, *, method: str, extra_lineage: dict) -> StageOutcome:
    _stopped(run)
    if not result.completed:
        raise JobCancelled()
    adapter = Path(result.adapter_dir or result.model_dir)
    config = _config(job)
    version = _register_model_version(job, kind=ModelVersion.Kind.ADAPTER, path=adapter, model_ref=config.base_model,
                                      provenance={"method": method, **job.params})
    lineage = {"dataset": _upstream(job, "preferences").result.get("version"), "base_model": config.base_model,
               "parent_checkpoint": _sft_adapter(job) if job.kind != "sft" else None, **extra_lineage}
    return StageOutcome(
        result={"adapter_dir": str(adapter), "metrics": result.metrics, "model_version": version.pk,
                "resumed_from": str(result.resumed_from) if result.resumed_from else None},
        lineage=lineage,
        artifacts=[{"kind": Artifact.Kind.ADAPTER, "name": job.key.replace(":", "-"), "path": adapter,
                    "metrics": result.metrics, "model_version": version}],
    )


@dataclass
class LaunchedPolicyResult:
    """What a policy run through `accelerate launch` left in its output folder."""

    adapter_dir: str | None
    model_dir: str | None
    metrics: dict
    completed: bool
    resumed_from: str | None = None


def _train_policy(job: Job, run, stage: str, table: dict, train_in_process):
    """Train in this process, or through `accelerate launch` on a multi-GPU worker."""
    if not settings.ATTUNE_ACCELERATE_NUM_PROCESSES:
        return train_in_process(table["policy"])
    import json

    from .launch import build_launch_command, run_launch, write_stage_toml

    policy = table["policy"]
    table = {**table, "policy": {k: v for k, v in policy.to_dict().items() if v is not None}}
    config_path = write_stage_toml(job.work_dir() / f"{stage}.toml", table)
    command = build_launch_command(stage=stage, stage_config=config_path, accelerate_config=settings.ATTUNE_ACCELERATE_CONFIG,
                                   num_processes=settings.ATTUNE_ACCELERATE_NUM_PROCESSES)
    code = run_launch(command, run=run, cwd=settings.BASE_DIR)
    _stopped(run)
    if code != 0:
        raise RuntimeError(f"`accelerate launch` exited with status {code}; see the job log")
    output = Path(policy.output_dir)
    record = json.loads((output / "policy.json").read_text())
    return LaunchedPolicyResult(adapter_dir=record["adapter_dir"], model_dir=record["model_dir"],
                                metrics=json.loads((output / "metrics.json").read_text()), completed=record["completed"])


def run_sft(job: Job, run) -> StageOutcome:
    from training.pipeline.policies import train_sft

    table = {"dataset_dir": _upstream(job, "preferences").result["dataset_dir"], "criterion": job.params["criterion"],
             "policy": _policy_config(job, run)}
    result = _train_policy(job, run, "sft", table, lambda policy: train_sft(policy, table["dataset_dir"], table["criterion"]))
    return _policy_outcome(job, run, result, method="sft", extra_lineage={})


def run_dpo(job: Job, run) -> StageOutcome:
    from training.pipeline.policies import train_dpo

    table = {"dataset_dir": _upstream(job, "preferences").result["dataset_dir"], "criterion": job.params["criterion"],
             "policy": _policy_config(job, run)}
    result = _train_policy(job, run, "dpo", table, lambda policy: train_dpo(policy, table["dataset_dir"], table["criterion"]))
    return _policy_outcome(job, run, result, method="dpo", extra_lineage={})


def run_joint_dpo(job: Job, run) -> StageOutcome:
    from training.pipeline.policies import train_joint_dpo

    table = {"dataset_dir": _upstream(job, "preferences").result["dataset_dir"], "weights": job.params["weights"],
             "policy": _policy_config(job, run)}
    result = _train_policy(job, run, "joint-dpo", table,
                           lambda policy: train_joint_dpo(policy, table["dataset_dir"], table["weights"]))
    return _policy_outcome(job, run, result, method="joint_dpo", extra_lineage={})


def run_modpo(job: Job, run) -> StageOutcome:
    from training.pipeline.policies import SafetyConstraint, train_modpo

    margins_job = job.depends_on.get(kind="margins")
    kwargs = {}
    floor = job.params.get("safety_floor")
    if floor is not None and "safety" in job.params["weights"] and job.params["primary"] != "safety":
        kwargs["safety"] = SafetyConstraint(floor=floor, every_n_steps=max(1, _config(job).policy_save_steps))
    table = {"margin_dataset_dir": margins_job.result["margin_dataset_dir"], "primary": job.params["primary"],
             "weights": job.params["weights"], "policy": _policy_config(job, run)}
    if "safety" in kwargs:
        table["safety"] = kwargs["safety"].to_dict()
    result = _train_policy(job, run, "modpo", table, lambda policy: train_modpo(
        policy, table["margin_dataset_dir"], table["weights"], table["primary"], **kwargs))
    return _policy_outcome(job, run, result, method="modpo", extra_lineage={"reward_models": margins_job.lineage.get("reward_models")})


def run_merge(job: Job, run) -> StageOutcome:
    from training.pipeline.policies import merge_adapters

    config = _config(job)
    weights = job.params["weights"]
    adapters = {c: _upstream(job, f"dpo:{c}").result["adapter_dir"] for c in weights}
    output = job.work_dir() / "merged"
    method = job.params.get("method", "cat")
    sft_adapter = _sft_adapter(job.depends_on.filter(kind="dpo").first())
    path = merge_adapters(_base_model(job, config), adapters, weights, output, method=method,
                          svd_rank=config.lora_rank * len(adapters) if method == "svd" else None,
                          base_adapter=sft_adapter, model_cache_dir=settings.MODEL_CACHE_DIR)
    run.progress(1, 1)
    version = _register_model_version(job, kind=ModelVersion.Kind.MERGED, path=Path(path), model_ref=config.base_model,
                                      provenance={"method": "merge", **job.params})
    return StageOutcome(
        result={"adapter_dir": str(path), "model_version": version.pk},
        lineage={"adapters": adapters, "weights": weights, "base_model": config.base_model, "parent_checkpoint": sft_adapter},
        artifacts=[{"kind": Artifact.Kind.MERGED, "name": job.key.replace(":", "-"), "path": Path(path), "model_version": version}],
    )


# --- Evaluation -------------------------------------------------------------------

def run_evaluate(job: Job, run) -> StageOutcome:
    from training.pipeline.evaluation import EvalGenerationSettings, EvalModel, EvaluationConfig, run_evaluation

    config = _config(job)
    inputs = _upstream(job, "scenarios").result
    base = _base_model(job, config)
    models = [EvalModel(name="base", model=base)]
    for key in job.params["models"]:
        if key != "base":
            # A policy folder knows the base (and SFT adapter) it was trained on.
            models.append(EvalModel(name=key, policy=_upstream(job, key).result["adapter_dir"]))
    reward_dirs = {j.params["criterion"]: j.result["model_dir"]
                   for j in job.experiment.jobs.filter(kind="reward_model", state=Job.State.SUCCEEDED)}
    criteria = list(config.evaluation_criteria)
    pareto = [c for c in ("empathy", "safety") if c in criteria]
    if len(pareto) < 2:
        pareto = (criteria + criteria)[:2] if len(criteria) == 1 else criteria[:2]
    output = job.work_dir() / "evaluation"
    result = run_evaluation(
        EvaluationConfig(
            models=models, scenarios_path=inputs["scenarios_path"], personas_path=inputs["personas_path"], output_dir=str(output),
            judge=config.judge, criteria=criteria, personas_per_scenario=config.personas_per_scenario, seed=config.seed,
            generation=EvalGenerationSettings(max_new_tokens=config.max_new_tokens, system_prompt=config.system_prompt, seed=config.seed),
            reward_models=reward_dirs, pareto=pareto, progress_bar=False,
        ),
        progress_callback=lambda done, total: run.progress(done, total),
        should_stop=run.should_stop,
    )
    _stopped(run)
    if result.stopped or not result.report_path:
        raise JobCancelled()
    _store_answers(job, output / "answers", [m.name for m in models])
    return StageOutcome(
        result={"evaluation_json": result.report_path, "judge_decisions": result.decisions_path,
                "answers_dir": str(output / "answers"), "plots": list(result.plots), "synthetic": result.synthetic},
        lineage={"models": [m.name for m in models], "reward_models": reward_dirs},
        artifacts=[{"kind": Artifact.Kind.EVALUATION, "name": "evaluation", "path": Path(result.report_path)},
                   {"kind": Artifact.Kind.EVALUATION, "name": "judge-decisions", "path": Path(result.decisions_path)}]
        + [{"kind": Artifact.Kind.PLOT, "name": Path(p).name, "path": Path(p)} for p in result.plots],
    )


def _store_answers(job: Job, answers_dir: Path, names: list[str]):
    """Evaluation answers become Response rows, so they can be sent for clinician rating."""
    from training.pipeline.evaluation import answers_file_name
    from training.pipeline.io import load_candidates

    for name in names:
        version = _base_version(job) if name == "base" else ModelVersion.objects.get(pk=_upstream(job, name).result["model_version"])
        for candidate in load_candidates(answers_dir / f"{answers_file_name(name)}.jsonl"):
            Response.objects.update_or_create(
                scenario=scenario_from_id(candidate.scenario_id), model_version=version, sample_index=0,
                defaults={"text": candidate.responses[0], "generation_settings": candidate.generation or {}},
            )


def _base_version(job: Job) -> ModelVersion:
    config = _config(job)
    version, _ = ModelVersion.objects.get_or_create(
        name=f"{job.experiment.name}/base", defaults={"kind": ModelVersion.Kind.BASE, "model_ref": config.base_model,
                                                       "provenance": {"experiment": job.experiment.pk}},
    )
    return version


def _register_model_version(job: Job, *, kind: str, path: Path, model_ref: str, provenance: dict) -> ModelVersion:
    from training.pipeline.io import sha256_file

    parent = _base_version(job) if kind != ModelVersion.Kind.REWARD else None
    weights = next((p for p in sorted(Path(path).glob("*.safetensors"))), None)
    version, _ = ModelVersion.objects.update_or_create(
        name=f"{job.experiment.name}/{job.key}",
        defaults={"kind": kind, "model_ref": model_ref, "path": str(path), "parent": parent,
                  "sha256": sha256_file(weights) if weights else "",
                  "provenance": {"experiment": job.experiment.pk, "job": job.pk, **provenance}},
    )
    from training.withdrawal import withdrawal_mark_for

    mark = withdrawal_mark_for(job)  # a withdrawal that came while this job ran
    if mark:
        version.provenance = {**version.provenance, "affected_by_withdrawal": mark}
        version.save(update_fields=["provenance"])
    return version


STAGES = {
    "export_inputs": run_export_inputs,
    "generate": run_generate,
    "label": run_label,
    "preferences": run_preferences,
    "reward_model": run_reward_model,
    "margins": run_margins,
    "sft": run_sft,
    "dpo": run_dpo,
    "joint_dpo": run_joint_dpo,
    "modpo": run_modpo,
    "merge": run_merge,
    "evaluate": run_evaluate,
}


def run_stage(job: Job, run) -> StageOutcome:
    if job.kind not in STAGES:
        raise JobRefused(f"unknown stage kind {job.kind!r}")
    check_dataset_versions(job)
    job.work_dir().mkdir(parents=True, exist_ok=True)
    return STAGES[job.kind](job, run)
