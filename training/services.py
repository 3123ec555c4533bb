"""Researchers' writes for experiments and jobs: start, cancel, retry, send for
rating. Running jobs is the runtime's (training.jobs.runtime)."""
from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.audit import AuditAction, audit_record

from .jobs.runtime import job_enqueue
from .models import Experiment, Job
from .plans import ConfigError, build_plan, validate_config



# --- Experiments -------------------------------------------------------------

def experiment_output_dir(name: str) -> Path:
    safe = "".join(ch if ch.isalnum() or ch in "-_" else "-" for ch in name).strip("-") or "experiment"
    return Path(settings.ARTIFACT_ROOT) / "experiments" / safe


def experiment_start(*, name: str, config: dict, actor=None) -> Experiment:
    """Validate the configuration, create the experiment and its jobs, and
    queue the jobs with no prerequisites once the transaction commits.
    Raises ConfigError (nothing is written) when the configuration cannot run."""
    name = (name or "").strip()
    problems = []
    if not name:
        problems.append("the experiment needs a name")
    elif Experiment.objects.filter(name=name).exists():
        problems.append(f"an experiment named {name!r} already exists")
    try:
        checked = validate_config(config)
    except ConfigError as exc:
        raise ConfigError(problems + exc.messages) from None
    if checked.survey_study:
        from survey.models import Study

        if not Study.objects.filter(slug=checked.survey_study).exists():
            problems.append(f"there is no survey study with the slug {checked.survey_study!r}")
    if checked.clinician_studies:
        from annotation.models import RatingStudy

        missing = set(checked.clinician_studies) - set(RatingStudy.objects.filter(pk__in=checked.clinician_studies).values_list("pk", flat=True))
        if missing:
            problems.append(f"no rating study with id(s) {', '.join(map(str, sorted(missing)))}")
    if problems:
        raise ConfigError(problems)
    plan = build_plan(checked)
    with transaction.atomic():
        experiment = Experiment.objects.create(
            name=name, preset=checked.preset, config=checked.to_dict(), created_by=actor if actor and actor.is_authenticated else None,
            output_dir=str(experiment_output_dir(name)),
        )
        jobs = {}
        for position, spec in enumerate(plan):
            jobs[spec.key] = Job.objects.create(
                experiment=experiment, key=spec.key, kind=spec.kind, queue=spec.queue, params=spec.params, position=position,
            )
        for spec in plan:
            if spec.depends_on:
                jobs[spec.key].depends_on.set([jobs[key] for key in spec.depends_on])
        audit_record(actor=actor, action=AuditAction.EXPERIMENT_START, target=experiment,
                     details={"preset": checked.preset, "jobs": len(plan)})
        for spec in plan:
            if not spec.depends_on:
                job_enqueue(job=jobs[spec.key])
    return experiment


# --- Researcher actions -------------------------------------------------------

def job_cancel(*, job: Job, actor=None) -> str:
    """Cancel a job: at once if it has not started, at its next step if running."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.state in (Job.State.WAITING, Job.State.QUEUED):
            Job.objects.filter(pk=job.pk).update(state=Job.State.CANCELLED, finished_at=timezone.now(), error="cancelled before it started")
            outcome = "cancelled"
        elif job.state == Job.State.RUNNING:
            Job.objects.filter(pk=job.pk).update(cancel_requested=True)
            outcome = "cancel requested"
        else:
            return f"not cancelled: the job has already {job.state}"
        audit_record(actor=actor, action=AuditAction.JOB_CANCEL, target=job, details={"key": job.key, "outcome": outcome})
    return outcome


def job_retry(*, job: Job, actor=None) -> str:
    """Queue a failed or cancelled job again (its checkpoints are kept, so training resumes)."""
    with transaction.atomic():
        job = Job.objects.select_for_update().get(pk=job.pk)
        if job.state not in (Job.State.FAILED, Job.State.CANCELLED):
            return f"not retried: the job is {job.state}"
        Job.objects.filter(pk=job.pk).update(attempts=0, cancel_requested=False, error="", finished_at=None)
        blocked = job.depends_on.exclude(state=Job.State.SUCCEEDED).exists()
        if blocked:
            Job.objects.filter(pk=job.pk).update(state=Job.State.WAITING)
        else:
            job_enqueue(job=job)
        audit_record(actor=actor, action=AuditAction.JOB_RETRY, target=job, details={"key": job.key})
    return "waiting for earlier stages" if blocked else "queued"


# --- Back to clinicians -----------------------------------------------------------

def experiment_send_for_rating(*, experiment: Experiment, model_key: str, n_scenarios: int, clinicians, overlap, actor):
    """Create a blinded rating study of one trained model against the base model on
    N test scenarios (through the annotation app's service), and give it the
    evaluation judge's decisions on the same items for the judge-vs-clinician comparison.

    The study's secret seed (drawn by the annotation service, never chosen here)
    samples the scenarios and decides by a coin which model is source A. The
    study opens at once unless its self-identification screen found replies to
    review first; then it stays a draft (``study.state``) until a researcher has."""
    from annotation import services as annotation_services
    from core.models import CriteriaSet, ModelVersion, Response
    from training.pipeline.io import read_jsonl

    from .models import ExperimentRatingStudy

    evaluate = experiment.jobs.filter(kind="evaluate").first()
    if evaluate is None or evaluate.state != Job.State.SUCCEEDED:
        raise ConfigError(["the experiment's evaluation has not finished; send models for rating after it succeeds"])
    models = evaluate.params.get("models", [])
    if model_key not in models or model_key == "base":
        raise ConfigError([f"choose one of the experiment's trained models: {', '.join(m for m in models if m != 'base')}"])
    if not isinstance(n_scenarios, int) or n_scenarios < 1:
        raise ConfigError(["the number of scenarios must be at least 1"])
    chosen = ModelVersion.objects.get(pk=experiment.jobs.get(key=model_key).result["model_version"])
    base = ModelVersion.objects.get(name=f"{experiment.name}/base")
    both = set(Response.objects.filter(model_version=chosen).values_list("scenario_id", flat=True)) & set(
        Response.objects.filter(model_version=base).values_list("scenario_id", flat=True))
    if len(both) < n_scenarios:
        raise ConfigError([f"only {len(both)} test scenarios have answers from both models; ask for at most that many"])
    criteria_set = CriteriaSet.objects.get(key=experiment.config["criteria_set"])
    with transaction.atomic():
        study = annotation_services.rating_study_create(
            name=f"{experiment.name}: {model_key} vs base", source_a=chosen, source_b=base, scenarios=sorted(both),
            sample_size=n_scenarios, criteria_set=criteria_set, clinicians=clinicians, overlap=overlap, actor=actor,
            open_now=True, description=f"Sent from experiment {experiment.name!r}.",
        )
        chosen_is_a = study.source_a_id == chosen.pk
        ExperimentRatingStudy.objects.create(experiment=experiment, rating_study=study, model_key=model_key)
        dimensions = {c.key for c in criteria_set.ordered_criteria()} | {"overall"}
        rows = [row for row in read_jsonl(Path(evaluate.result["judge_decisions"]))
                if row.get("criterion") in dimensions and {row.get("model_a"), row.get("model_b")} == {model_key, "base"}]
        judge = evaluate.lineage.get("judge") or experiment.jobs.get(key="label").result.get("judge", {})
        annotation_services.judge_decisions_import(
            study=study, judge_name=f"evaluation judge ({judge.get('name', 'judge') if isinstance(judge, dict) else judge})",
            actor=actor, rows=rows, skip_unmatched=True,
            source_names={model_key: "source_a", "base": "source_b"} if chosen_is_a else {model_key: "source_b", "base": "source_a"},
        )
        audit_record(actor=actor, action=AuditAction.EXPERIMENT_SEND_FOR_RATING, target=experiment,
                     details={"rating_study": study.pk, "model": model_key, "scenarios": n_scenarios})
    return study
