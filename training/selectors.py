"""Reads for the experiment pages: job status and the experiment report."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.urls import reverse
from django.utils import timezone

from . import registry
from .jobs.joblog import job_log_path, read_log_tail
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


LIST_LOG_CHARS = 2000
PAGE_LOG_CHARS = 12000


def job_log_tail(*, job: Job, max_chars: int) -> str:
    """The end of the job's log: its log file (written through, so it has the lines
    a killed attempt wrote last), or the row's tail when the file is gone."""
    text = read_log_tail(job_log_path(job.work_dir()), max_chars)
    return (job.log_tail or "")[-max_chars:] if text is None else text


def job_url(job: Job) -> str:
    return reverse("admin:training_job_change", args=[job.pk])


def job_progress(*, job: Job, log_chars: int = LIST_LOG_CHARS) -> dict:
    """What the live pages show of one job and refresh as it runs."""
    return {
        "id": job.pk,
        "url": job_url(job),
        "key": job.key,
        "kind": job.kind,
        "queue": job.queue,
        "state": job.state,
        "state_label": job.get_state_display(),
        "step": job.progress_step,
        "total": job.progress_total,
        "percent": round(100 * job.progress_step / job.progress_total, 1) if job.progress_total else (100.0 if job.state == Job.State.SUCCEEDED else 0.0),
        "loss": job.current_loss,
        "eta_seconds": job.eta_seconds if job.state == Job.State.RUNNING else None,
        "attempts": job.attempts,
        "heartbeat_at": job.heartbeat_at.isoformat() if job.heartbeat_at else None,
        "cancel_requested": job.cancel_requested,
        "can_cancel": job.state in (Job.State.WAITING, Job.State.QUEUED, Job.State.RUNNING),
        "can_retry": job.state in (Job.State.FAILED, Job.State.CANCELLED),
        "error": job.error.splitlines()[0] if job.error else "",
        "log_tail": job_log_tail(job=job, max_chars=log_chars),
        "recovery": job_recovery_note(job),
    }


def experiment_status(*, experiment: Experiment) -> dict:
    jobs = []
    for job in experiment.jobs.select_related("experiment").prefetch_related("depends_on", "artifacts").order_by("position"):
        jobs.append({
            **job_progress(job=job),
            "depends_on": sorted(d.key for d in job.depends_on.all()),
            "artifacts": [{"kind": a.kind, "name": a.name, "path": a.path, "sha256": a.sha256} for a in job.artifacts.all()],
            "lineage": job.lineage,
            "withdrawal": job.withdrawal_note,
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


# --- The job page --------------------------------------------------------------

def _path_size(path: Path) -> int | None:
    if path.is_file():
        return path.stat().st_size
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return None


def job_artifacts(*, job: Job) -> list[dict]:
    return [{"kind": a.get_kind_display(), "name": a.name, "path": a.path, "size": _path_size(Path(a.path)),
             "sha256": a.sha256, "model_version": a.model_version} for a in job.artifacts.select_related("model_version")]


def job_lineage(*, job: Job) -> dict:
    """Inputs (the jobs it consumed and their artifacts, and what the stage recorded reading)
    and outputs (its artifacts and the jobs that consume them)."""
    inputs = [{"job": upstream, "url": job_url(upstream), "artifacts": list(upstream.artifacts.all())}
              for upstream in job.depends_on.order_by("position").prefetch_related("artifacts")]
    consumers = [{"job": dependent, "url": job_url(dependent)} for dependent in job.dependents.order_by("position")]
    recorded = [{"name": name.replace("_", " "), "value": value if isinstance(value, str) else json.dumps(value, default=str)}
                for name, value in sorted((job.lineage or {}).items()) if value not in (None, "", [], {})]
    return {"inputs": inputs, "recorded": recorded, "outputs": job_artifacts(job=job), "consumers": consumers}


def job_attempts(*, job: Job) -> list[dict]:
    rows = []
    for attempt in job.attempt_records.order_by("number"):
        # An attempt left open on a job that is no longer running was lost without a takeover (e.g. reaped and failed).
        lost_open = attempt.ended_at is None and job.state != Job.State.RUNNING
        outcome = "Lost (never closed)" if lost_open else attempt.get_outcome_display()
        ended = attempt.ended_at
        duration = (ended - attempt.started_at).total_seconds() if ended else None
        rows.append({"number": attempt.number, "worker": attempt.worker, "started_at": attempt.started_at, "ended_at": ended,
                     "duration_seconds": duration, "outcome": outcome, "outcome_key": "lost" if lost_open else attempt.outcome,
                     "error": attempt.error})
    return rows


def job_page(*, job: Job) -> dict:
    return {"job": job, "progress": job_progress(job=job, log_chars=PAGE_LOG_CHARS), "log_path": str(job_log_path(job.work_dir())),
            "artifacts": job_artifacts(job=job),
            "lineage": job_lineage(job=job), "attempts": job_attempts(job=job)}


# --- The experiment's settings ---------------------------------------------------

def experiment_settings(*, experiment: Experiment) -> list[dict]:
    """The experiment's configuration as labelled rows, in the config dataclass's
    field order, each marked when it is its preset's default."""
    from dataclasses import fields

    from .plans import SETTING_LABELS, ConfigError, ExperimentConfig, default_config

    config = experiment.config or {}
    try:
        defaults = default_config(experiment.preset)
    except ConfigError:
        defaults = ExperimentConfig().to_dict()
    rows, known = [], set()
    for f in fields(ExperimentConfig):
        known.add(f.name)
        if f.name not in config:
            continue
        value = config[f.name]
        shown = _setting_value(value)
        if f.name == "preset" and value in registry.PRESETS:
            shown = registry.PRESETS[value].label  # the name the start form offers, not the registry key
        rows.append({"name": f.name, "label": f.metadata.get("label") or SETTING_LABELS.get(f.name) or setting_label(f.name),
                     "help": f.metadata.get("help", ""), "value": shown,
                     "is_default": f.name in defaults and value == defaults[f.name]})
    for name in sorted(set(config) - known):  # from an older version of the plan
        rows.append({"name": name, "label": setting_label(name), "help": "", "value": _setting_value(config[name]), "is_default": False})
    return rows


SETTING_WORDS = {"lora": "LoRA", "modpo": "MODPO", "dpo": "DPO", "sft": "SFT", "eta": "ETA"}


def setting_label(name: str) -> str:
    words = [SETTING_WORDS.get(word, word) for word in name.split("_")]
    return " ".join([words[0][:1].upper() + words[0][1:]] + words[1:])


def _setting_value(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) if value else "—"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {_setting_value(v)}" for k, v in value.items()) if value else "—"
    return str(value)
