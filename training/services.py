"""Writes for experiments and jobs: start, claim, heartbeat, finish, cancel,
retry, reap. Job state lives in the database; Celery messages only wake a
worker up, so every write here is a conditional UPDATE or runs under a row lock."""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone

from core.services import audit_record
from training.pipeline.io import sha256_file

from .models import Artifact, Experiment, Job  # noqa: F401
from .plans import ConfigError, build_plan, validate_config

logger = logging.getLogger(__name__)
LOG_TAIL_CHARS = 8000


class JobCancelled(Exception):
    """Raised inside a stage when a researcher cancelled the job."""


class JobRefused(Exception):
    """A job that must not run (e.g. its dataset was affected by a withdrawal)."""


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
        audit_record(actor=actor, action="experiment.start", target=experiment,
                     details={"preset": checked.preset, "jobs": len(plan)})
        for spec in plan:
            if not spec.depends_on:
                job_enqueue(job=jobs[spec.key])
    return experiment


# --- Queueing ------------------------------------------------------------------

def _publish(job_id: int, queue: str):
    from . import tasks

    task = tasks.gpu_run_job if queue == Job.Queue.GPU else tasks.run_job
    task.apply_async(args=[job_id], queue=queue)


def job_enqueue(*, job: Job) -> bool:
    """Move a waiting/failed/cancelled job to queued and publish it after commit."""
    updated = Job.objects.filter(pk=job.pk, state__in=[Job.State.WAITING, Job.State.FAILED, Job.State.CANCELLED]).update(
        state=Job.State.QUEUED, enqueued_at=timezone.now(),
    )
    if updated:
        transaction.on_commit(lambda: _publish(job.pk, job.queue))
    return bool(updated)


def _enqueue_ready_dependents(job: Job):
    for dependent in job.dependents.filter(state=Job.State.WAITING):
        if not dependent.depends_on.exclude(state=Job.State.SUCCEEDED).exists():
            job_enqueue(job=dependent)


# --- Claiming and running ------------------------------------------------------

def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_is_dead(owner: str) -> bool:
    """True when the lease holder was a process on this host that no longer exists."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def job_claim(*, job_id: int, owner: str) -> Job | None:
    """Take the job's lease, or return None when another live worker holds it
    or the job is not runnable (a duplicate or stale delivery)."""
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.ATTUNE_JOB_LEASE_SECONDS)
    runnable = Q(state=Job.State.QUEUED) | Q(state=Job.State.RUNNING, lease_expires_at__lt=now)
    updated = Job.objects.filter(runnable, pk=job_id, cancel_requested=False).update(
        state=Job.State.RUNNING, lease_owner=owner, lease_expires_at=lease_until, heartbeat_at=now,
        attempts=F("attempts") + 1, started_at=now, error="",
    )
    if not updated:
        with transaction.atomic():
            job = Job.objects.select_for_update(skip_locked=True).filter(pk=job_id, state=Job.State.RUNNING).first()
            if job is None or not job.lease_owner or job.lease_owner == owner or not _owner_is_dead(job.lease_owner):
                return None
            # The previous holder was killed on this host (e.g. its worker child died): take over now.
            Job.objects.filter(pk=job_id).update(
                lease_owner=owner, lease_expires_at=lease_until, heartbeat_at=now, attempts=F("attempts") + 1,
            )
    job = Job.objects.select_related("experiment").get(pk=job_id)
    if job.attempts > job.max_attempts:
        _job_finish(job, owner=owner, state=Job.State.FAILED,
                    error=f"gave up after {job.max_attempts} attempts: the job crashed its worker each time")
        return None
    return job


class JobRun:
    """What a stage sees of its job: progress reporting, cancellation, logging.
    Progress and cancellation are throttled so a fast loop does not hammer the database."""

    def __init__(self, job: Job, owner: str):
        self.job = job
        self.owner = owner
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._progress = {}
        self._log_lines: list[str] = []
        self._cancelled = False
        self._lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job.pk}", daemon=True)

    # Stage-facing API
    def progress(self, step: int, total: int, loss: float | None = None):
        with self._lock:
            eta = None
            if step and total and step <= total:
                elapsed = time.monotonic() - self.started
                eta = elapsed / step * (total - step)
            self._progress = {"progress_step": int(step), "progress_total": int(total), "current_loss": loss, "eta_seconds": eta}

    def log(self, message: str):
        logger.info("[job %s %s] %s", self.job.pk, self.job.key, message)
        with self._lock:
            self._log_lines.append(f"{timezone.now():%H:%M:%S} {message}")

    def should_stop(self) -> bool:
        return self._cancelled or self._lost

    def check_cancelled(self):
        if self.should_stop():
            raise JobCancelled()

    # Heartbeat
    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=30)
        self.flush()
        return False

    def _beat(self):
        try:
            while not self._stop.wait(settings.ATTUNE_JOB_HEARTBEAT_SECONDS):
                self.flush()
        finally:
            connection.close()

    def flush(self):
        with self._lock:
            fields = dict(self._progress)
            lines, self._log_lines = self._log_lines, []
        now = timezone.now()
        fields.update(heartbeat_at=now, lease_expires_at=now + timedelta(seconds=settings.ATTUNE_JOB_LEASE_SECONDS))
        with transaction.atomic():
            job = Job.objects.select_for_update().filter(pk=self.job.pk).first()
            if job is None or job.lease_owner != self.owner or job.state != Job.State.RUNNING:
                self._lost = True  # another worker took over, or the job was reaped
                return
            if lines:
                fields["log_tail"] = ((job.log_tail + "\n" if job.log_tail else "") + "\n".join(lines))[-LOG_TAIL_CHARS:]
            Job.objects.filter(pk=job.pk).update(**fields)
            self._cancelled = job.cancel_requested


def _job_finish(job: Job, *, owner: str, state: str, error: str = "", result=None, lineage=None, artifacts=()):
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.lease_owner != owner or locked.state != Job.State.RUNNING:
            logger.warning("job %s finished by %s but is now held by %s (%s); result dropped", job.pk, owner, locked.lease_owner, locked.state)
            return False
        fields = dict(state=state, finished_at=timezone.now(), lease_owner="", lease_expires_at=None, error=error[-8000:])
        if result is not None:
            fields["result"] = result
        if lineage is not None:
            fields["lineage"] = lineage
        if state == Job.State.SUCCEEDED:
            fields.update(cancel_requested=False)
        Job.objects.filter(pk=job.pk).update(**fields)
        for artifact in artifacts:
            artifact_register(job=locked, **artifact)
        if state == Job.State.SUCCEEDED:
            _enqueue_ready_dependents(locked)
    return True


def artifact_register(*, job: Job, kind: str, name: str, path, metrics=None, model_version=None) -> Artifact:
    path = Path(path)
    digest = sha256_file(path) if path.is_file() else _sha256_tree(path)
    artifact, _ = Artifact.objects.update_or_create(
        job=job, name=name,
        defaults=dict(kind=kind, path=str(path), sha256=digest, metrics=metrics or {}, model_version=model_version),
    )
    return artifact


def _sha256_tree(directory: Path) -> str:
    """A digest of a directory: every file's relative path and content."""
    import hashlib

    digest = hashlib.sha256()
    for file in sorted(p for p in directory.rglob("*") if p.is_file() and "checkpoint-" not in str(p.relative_to(directory))):
        digest.update(str(file.relative_to(directory)).encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def job_execute(*, job_id: int) -> str:
    """Run one job to completion in this worker process. Returns the final
    state, or "skipped" when the delivery was a duplicate."""
    from .stages import run_stage

    owner = worker_identity()
    job = job_claim(job_id=job_id, owner=owner)
    if job is None:
        logger.info("job %s: not claimed by %s (duplicate or stale delivery)", job_id, owner)
        return "skipped"
    run = JobRun(job, owner)
    try:
        with run:
            run.log(f"attempt {job.attempts} on {owner}")
            outcome = run_stage(job, run)
    except JobCancelled:
        run.log("cancelled")
        run.flush()
        state = Job.State.CANCELLED if not run._lost else "lost"
        if state == Job.State.CANCELLED:
            _job_finish(job, owner=owner, state=Job.State.CANCELLED, error="cancelled by a researcher")
        return state
    except JobRefused as exc:
        _job_finish(job, owner=owner, state=Job.State.FAILED, error=str(exc))
        return Job.State.FAILED
    except Exception as exc:  # noqa: BLE001 - a stage failure is recorded on the job, not lost
        logger.exception("job %s failed", job_id)
        _job_finish(job, owner=owner, state=Job.State.FAILED, error=f"{exc}\n\n{traceback.format_exc()}")
        return Job.State.FAILED
    _job_finish(job, owner=owner, state=Job.State.SUCCEEDED, result=outcome.result, lineage=outcome.lineage,
                artifacts=outcome.artifacts)
    return Job.State.SUCCEEDED


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
        audit_record(actor=actor, action="job.cancel", target=job, details={"key": job.key, "outcome": outcome})
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
        audit_record(actor=actor, action="job.retry", target=job, details={"key": job.key})
    return "waiting for earlier stages" if blocked else "queued"


def jobs_reap() -> dict:
    """Periodic check: requeue running jobs whose heartbeat stopped (or fail
    them after max_attempts), and republish queued jobs whose message was lost."""
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0, "republished": 0}
    with transaction.atomic():
        stalled = Job.objects.select_for_update(skip_locked=True).filter(state=Job.State.RUNNING, lease_expires_at__lt=now)
        for job in stalled:
            if job.attempts >= job.max_attempts:
                Job.objects.filter(pk=job.pk).update(
                    state=Job.State.FAILED, finished_at=now, lease_owner="", lease_expires_at=None,
                    error=f"heartbeat stopped on attempt {job.attempts} of {job.max_attempts}; not retried again",
                )
                counts["failed"] += 1
            else:
                Job.objects.filter(pk=job.pk).update(state=Job.State.QUEUED, lease_owner="", lease_expires_at=None, enqueued_at=now)
                transaction.on_commit(lambda pk=job.pk, q=job.queue: _publish(pk, q))
                counts["requeued"] += 1
        lost_before = now - timedelta(seconds=settings.ATTUNE_JOB_REPUBLISH_SECONDS)
        for job in Job.objects.select_for_update(skip_locked=True).filter(state=Job.State.QUEUED, enqueued_at__lt=lost_before):
            Job.objects.filter(pk=job.pk).update(enqueued_at=now)
            transaction.on_commit(lambda pk=job.pk, q=job.queue: _publish(pk, q))
            counts["republished"] += 1
    if any(counts.values()):
        logger.warning("job reaper: %s", counts)
    return counts


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
        audit_record(actor=actor, action="experiment.send_for_rating", target=experiment,
                     details={"rating_study": study.pk, "model": model_key, "scenarios": n_scenarios})
    return study
