"""Reads for the experiment pages: job status and the experiment report."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.utils import timezone

from .models import Experiment, Job

# A running job whose heartbeat is this many intervals late is taken for lost (its lease will lapse).
_MISSED_HEARTBEATS = 3


def _clock(moment) -> str:
    return timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S %Z")


def job_recovery_note(job: Job, *, now=None) -> str:
    """What recovery will do about a job that looks stuck, in words; "" when nothing is wrong.

    Computed from the row alone (lease, heartbeat, publish time) and the recovery settings: a running job
    whose heartbeat stopped reads "worker lost at …, will be retried at …" (or "… will be marked failed"
    on its last attempt) instead of "running"; a queued job whose wake-up never reached the broker says
    when it will be sent again."""
    now = now or timezone.now()
    interval = timedelta(seconds=settings.ATTUNE_RECOVERY_INTERVAL_SECONDS)
    if job.state == Job.State.RUNNING and job.lease_expires_at is not None:
        late = timedelta(seconds=_MISSED_HEARTBEATS * settings.ATTUNE_JOB_HEARTBEAT_SECONDS)
        beat = job.heartbeat_at or job.started_at
        if job.lease_expires_at >= now and (beat is None or now - beat <= late):
            return ""
        lost_at = _clock(beat) if beat else "an unknown time"
        by = _clock(max(job.lease_expires_at, now) + interval)
        if job.attempts >= job.max_attempts:
            return f"worker lost at {lost_at}; will be marked failed by {by} (attempt {job.attempts} of {job.max_attempts})"
        return f"worker lost at {lost_at}, will be retried at {by} (attempt {job.attempts + 1} of {job.max_attempts})"
    if job.state == Job.State.QUEUED and job.enqueued_at is not None:
        if job.published_at is None or job.published_at < job.enqueued_at:
            grace = timedelta(seconds=settings.ATTUNE_JOB_UNPUBLISHED_GRACE_SECONDS)
            if now - job.enqueued_at > grace:
                return f"message to the worker lost; will be sent again by {_clock(max(job.enqueued_at + grace, now) + interval)}"
    return ""


def experiment_status(*, experiment: Experiment) -> dict:
    jobs = []
    for job in experiment.jobs.prefetch_related("depends_on", "artifacts").order_by("position"):
        jobs.append({
            "id": job.pk,
            "key": job.key,
            "kind": job.kind,
            "queue": job.queue,
            "state": job.state,
            "step": job.progress_step,
            "total": job.progress_total,
            "percent": round(100 * job.progress_step / job.progress_total, 1) if job.progress_total else (100.0 if job.state == Job.State.SUCCEEDED else 0.0),
            "loss": job.current_loss,
            "eta_seconds": job.eta_seconds,
            "attempts": job.attempts,
            "heartbeat_at": job.heartbeat_at.isoformat() if job.heartbeat_at else None,
            "cancel_requested": job.cancel_requested,
            "error": job.error.splitlines()[0] if job.error else "",
            "log_tail": job.log_tail[-2000:],
            "depends_on": sorted(d.key for d in job.depends_on.all()),
            "artifacts": [{"kind": a.kind, "name": a.name, "path": a.path, "sha256": a.sha256} for a in job.artifacts.all()],
            "lineage": job.lineage,
            "withdrawal": job.withdrawal_note,
            "recovery": job_recovery_note(job),
        })
    states = [j["state"] for j in jobs]
    if states and all(s == Job.State.SUCCEEDED for s in states):
        overall = "succeeded"
    elif any(s == Job.State.RUNNING for s in states) or any(s == Job.State.QUEUED for s in states):
        overall = "running"
    elif any(s == Job.State.FAILED for s in states):
        overall = "failed"
    elif any(s == Job.State.CANCELLED for s in states):
        overall = "cancelled"
    else:
        overall = "waiting"
    withdrawn = sorted({pk for j in experiment.jobs.all() for pk in (j.withdrawn_dataset_versions or [])})
    return {"experiment": experiment.pk, "name": experiment.name, "state": overall, "jobs": jobs,
            "withdrawn_dataset_versions": withdrawn}


def experiment_evaluation(*, experiment: Experiment) -> dict | None:
    """The evaluate stage's evaluation.json, or None before it has run."""
    job = experiment.jobs.filter(kind="evaluate", state=Job.State.SUCCEEDED).first()
    if job is None:
        return None
    path = Path(job.result.get("evaluation_json", ""))
    if not path.is_file():
        return None
    return json.loads(path.read_text())


def experiment_reward_models(*, experiment: Experiment) -> list[dict]:
    rows = []
    for job in experiment.jobs.filter(kind="reward_model", state=Job.State.SUCCEEDED).order_by("position"):
        rows.append({"criterion": job.params.get("criterion"), **{k: job.result.get(k) for k in ("validation_accuracy", "train_accuracy", "train_pairs", "validation_pairs")}})
    return rows
