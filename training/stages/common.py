"""What every stage runner shares: the outcome it returns, its experiment's
configuration and upstream jobs, model references, model-version records, and
the withdrawal check made before any stage runs."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from core.models import ModelVersion
from training.jobs.errors import JobCancelled, JobRefused
from training.models import Job
from training.plans import TINY, ExperimentConfig


@dataclass


class StageOutcome:
    result: dict = field(default_factory=dict)
    lineage: dict = field(default_factory=dict)
    artifacts: list = field(default_factory=list)  # dicts for runtime.artifact_register


def experiment_config(job: Job) -> ExperimentConfig:
    return ExperimentConfig(**job.experiment.config)


def upstream(job: Job, key: str) -> Job:
    return job.experiment.jobs.get(key=key)


def _model_ref(job: Job, config: ExperimentConfig, ref: str, folder: str, build) -> str:
    """The model reference to use: "tiny" becomes a tiny model built once in the experiment folder."""
    if ref != TINY:
        return ref
    path = Path(job.experiment.output_dir) / folder
    if not (path / "config.json").exists():
        build(path, seed=config.seed)
    return str(path)


def base_model(job: Job, config: ExperimentConfig) -> str:
    from training.pipeline.models import build_tiny_causal_lm

    return _model_ref(job, config, config.base_model, "tiny-base", build_tiny_causal_lm)


def reward_backbone(job: Job, config: ExperimentConfig) -> str:
    from training.pipeline.models import build_tiny_sequence_classifier

    return _model_ref(job, config, config.reward_backbone, "tiny-reward-backbone", build_tiny_sequence_classifier)


def stop_if_asked(run):
    if run.should_stop():
        raise JobCancelled()


def survey_study(config: ExperimentConfig):
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


def base_model_version(job: Job) -> ModelVersion:
    config = experiment_config(job)
    version, _ = ModelVersion.objects.get_or_create(
        name=f"{job.experiment.name}/base", defaults={"kind": ModelVersion.Kind.BASE, "model_ref": config.base_model,
                                                       "provenance": {"experiment": job.experiment.pk}},
    )
    return version


def model_version_register(job: Job, *, kind: str, path: Path, model_ref: str, provenance: dict) -> ModelVersion:
    from training.pipeline.io import sha256_file

    parent = base_model_version(job) if kind != ModelVersion.Kind.REWARD else None
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
