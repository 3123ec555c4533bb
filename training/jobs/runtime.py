"""The job runtime: claim a job's lease, keep it with a heartbeat, run its
stage and record how it ended; requeue jobs whose lease lapsed. Job state lives
in the database; a Celery message only wakes a worker up, so every write here is
a conditional UPDATE or runs under a row lock (DESIGN.md §8)."""
from __future__ import annotations

import hashlib
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

from training.models import Artifact, Job, JobAttempt
from training.pipeline.io import sha256_file
from training.stages import run_stage

from .errors import JobCancelled, JobRefused
from .eta import StepTimeEstimator
from .joblog import JobLogFile, captured_logs, job_log_path
from .queue import job_publish

logger = logging.getLogger(__name__)
LOG_TAIL_CHARS = 8000


# --- Queueing ------------------------------------------------------------------

def job_enqueue(*, job: Job) -> bool:
    """Move a waiting/failed/cancelled job to queued and publish it after commit."""
    updated = Job.objects.filter(pk=job.pk, state__in=[Job.State.WAITING, Job.State.FAILED, Job.State.CANCELLED]).update(
        state=Job.State.QUEUED, enqueued_at=timezone.now(),
    )
    if updated:
        job_publish(job)
    return bool(updated)


def job_enqueue_ready_dependents(job: Job):
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
    or the job is not runnable (a duplicate or stale delivery). Each claim opens
    a JobAttempt; an attempt left open by a holder that died is closed as lost."""
    now = timezone.now()
    lease_until = now + timedelta(seconds=settings.ATTUNE_JOB_LEASE_SECONDS)
    with transaction.atomic():
        job = Job.objects.select_for_update().filter(pk=job_id).first()
        if job is None:
            return None
        if job.state == Job.State.QUEUED and not job.cancel_requested:
            lost_at = _lease_end(job, now)  # only used when the reaper requeued it from a dead holder
        elif job.state == Job.State.RUNNING and job.lease_expires_at and job.lease_expires_at < now and not job.cancel_requested:
            lost_at = job.lease_expires_at
        elif (job.state == Job.State.RUNNING and job.lease_owner and job.lease_owner != owner
              and _owner_is_dead(job.lease_owner)):
            # The previous holder was killed on this host (e.g. its worker child died): take over now.
            lost_at = now
        else:
            return None
        attempts_close_lost(job=job, at=lost_at)
        Job.objects.filter(pk=job_id).update(
            state=Job.State.RUNNING, lease_owner=owner, lease_expires_at=lease_until, heartbeat_at=now,
            attempts=F("attempts") + 1, started_at=now, finished_at=None, error="",
        )
        last = job.attempt_records.order_by("-number").values_list("number", flat=True).first() or 0
        JobAttempt.objects.create(job=job, number=last + 1, worker=owner, started_at=now)
    job = Job.objects.select_related("experiment").get(pk=job_id)
    if job.attempts > job.max_attempts:
        job_finish(job, owner=owner, state=Job.State.FAILED,
                    error=f"gave up after {job.max_attempts} attempts: the job crashed its worker each time")
        return None
    return job


def _lease_end(job: Job, now):
    """When the last holder's lease ran out: its expiry, or (cleared by the reaper) its last heartbeat plus a lease."""
    if job.lease_expires_at:
        return min(job.lease_expires_at, now)
    if job.heartbeat_at:
        return min(job.heartbeat_at + timedelta(seconds=settings.ATTUNE_JOB_LEASE_SECONDS), now)
    return now


def attempts_close_lost(*, job: Job, at,
                        error: str = "the worker stopped answering (lease expired) and the job was taken over") -> int:
    """Close the job's open attempts as lost at `at` (their holder died or stopped answering)."""
    return JobAttempt.objects.filter(job=job, ended_at__isnull=True).update(
        outcome=JobAttempt.Outcome.LOST, ended_at=at, error=error,
    )


class JobRun:
    """What a stage sees of its job: progress reporting, cancellation, logging.
    Log lines go to the job's log file at once (written through); progress,
    the log tail kept on the row and cancellation are exchanged with the
    database at each heartbeat, so a fast loop does not hammer it."""

    def __init__(self, job: Job, owner: str, *, clock=time.monotonic):
        self.job = job
        self.owner = owner
        self._lock = threading.Lock()
        self._progress = {}
        self._eta = StepTimeEstimator(clock=clock)
        self._log_lines: list[str] = []
        self._log_file = JobLogFile(job_log_path(job.work_dir()))
        self._captured = captured_logs(self._log_captured, skip_logger=__name__)
        self._cancelled = False
        self._lost = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"heartbeat-{job.pk}", daemon=True)

    # Stage-facing API
    def progress(self, step: int, total: int, loss: float | None = None):
        with self._lock:
            eta = self._eta.report(int(step), int(total)) if total else None
            self._progress = {"progress_step": int(step), "progress_total": int(total), "current_loss": loss, "eta_seconds": eta}

    def metrics(self, step: int, values: dict):
        """A trainer's logged metrics at one logging step (HF Trainer on_log)."""
        shown = " ".join(f"{name}={_metric(value)}" for name, value in values.items())
        total = self._progress.get("progress_total")
        self.log(f"step {step}{f'/{total}' if total else ''}: {shown}")

    def log(self, message: str, level: str = ""):
        logger.info("[job %s %s] %s", self.job.pk, self.job.key, message)
        entry = self._log_file.write(message, level)
        with self._lock:
            self._log_lines.append(entry)

    def _log_captured(self, message: str, level: str):
        entry = self._log_file.write(message, level)
        with self._lock:
            self._log_lines.append(entry)

    def should_stop(self) -> bool:
        return self._cancelled or self._lost

    def check_cancelled(self):
        if self.should_stop():
            raise JobCancelled()

    # Heartbeat
    def __enter__(self):
        self._log_file.open()
        self._captured.__enter__()
        self._thread.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if isinstance(exc, JobCancelled):
            self.log("stopped: cancelled" if self._cancelled else "stopped: this worker no longer holds the job")
        elif isinstance(exc, JobRefused):
            self.log(f"refused: {exc}", "ERROR")
        elif exc is not None:
            entry = self._log_file.write_traceback(exc)
            with self._lock:
                self._log_lines.append(entry)
        self._captured.__exit__(exc_type, exc, tb)
        self._stop.set()
        self._thread.join(timeout=30)
        self.flush()
        self._log_file.close()
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


def _metric(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


ATTEMPT_OUTCOMES = {Job.State.SUCCEEDED: JobAttempt.Outcome.SUCCEEDED, Job.State.FAILED: JobAttempt.Outcome.FAILED,
                    Job.State.CANCELLED: JobAttempt.Outcome.CANCELLED}


def job_finish(job: Job, *, owner: str, state: str, error: str = "", result=None, lineage=None, artifacts=()):
    with transaction.atomic():
        locked = Job.objects.select_for_update().get(pk=job.pk)
        if locked.lease_owner != owner or locked.state != Job.State.RUNNING:
            logger.warning("job %s finished by %s but is now held by %s (%s); result dropped", job.pk, owner, locked.lease_owner, locked.state)
            return False
        now = timezone.now()
        fields = dict(state=state, finished_at=now, lease_owner="", lease_expires_at=None, error=error[-8000:])
        if result is not None:
            fields["result"] = result
        if lineage is not None:
            fields["lineage"] = lineage
        if state == Job.State.SUCCEEDED:
            fields.update(cancel_requested=False)
        Job.objects.filter(pk=job.pk).update(**fields)
        JobAttempt.objects.filter(job=locked, worker=owner, ended_at__isnull=True).update(
            outcome=ATTEMPT_OUTCOMES[state], ended_at=now, error=error[-8000:])
        for artifact in artifacts:
            artifact_register(job=locked, **artifact)
        if state == Job.State.SUCCEEDED:
            job_enqueue_ready_dependents(locked)
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
    digest = hashlib.sha256()
    for file in sorted(p for p in directory.rglob("*") if p.is_file() and "checkpoint-" not in str(p.relative_to(directory))):
        digest.update(str(file.relative_to(directory)).encode())
        digest.update(sha256_file(file).encode())
    return digest.hexdigest()


def job_execute(*, job_id: int) -> str:
    """Run one job to completion in this worker process. Returns the final
    state, or "skipped" when the delivery was a duplicate."""
    owner = worker_identity()
    job = job_claim(job_id=job_id, owner=owner)
    if job is None:
        logger.info("job %s: not claimed by %s (duplicate or stale delivery)", job_id, owner)
        return "skipped"
    run = JobRun(job, owner)
    try:
        with run:
            run.log(f"attempt {job.attempts} on {owner}: {job.kind} stage {job.key!r} started")
            outcome = run_stage(job, run)
            run.log(f"stage finished ({len(outcome.artifacts)} artifact(s))")
    except JobCancelled:
        state = Job.State.CANCELLED if not run._lost else "lost"
        if state == Job.State.CANCELLED:
            job_finish(job, owner=owner, state=Job.State.CANCELLED, error="cancelled by a researcher")
        return state
    except JobRefused as exc:
        job_finish(job, owner=owner, state=Job.State.FAILED, error=str(exc))
        return Job.State.FAILED
    except Exception as exc:  # noqa: BLE001 - a stage failure is recorded on the job, not lost
        logger.exception("job %s failed", job_id)
        job_finish(job, owner=owner, state=Job.State.FAILED, error=f"{exc}\n\n{traceback.format_exc()}")
        return Job.State.FAILED
    job_finish(job, owner=owner, state=Job.State.SUCCEEDED, result=outcome.result, lineage=outcome.lineage,
                artifacts=outcome.artifacts)
    return Job.State.SUCCEEDED



# --- Recovery -------------------------------------------------------------------

def jobs_reap() -> dict:
    """One recovery pass (run every few seconds by `training.jobs.recovery`): requeue running jobs whose
    lease lapsed (or fail them after max_attempts); republish queued jobs whose publish after commit never
    happened (no published_at since they were queued) once a short grace has passed, and queued jobs the
    broker accepted but nobody claimed after ATTUNE_JOB_REPUBLISH_SECONDS (a broker that lost messages).
    A job waiting behind a long one has a recent published_at and is left alone, so nothing is sent twice
    while it waits; a duplicate that does go out is harmless (claiming is conditional)."""
    now = timezone.now()
    counts = {"requeued": 0, "failed": 0, "republished": 0}
    with transaction.atomic():
        stalled = Job.objects.select_for_update(skip_locked=True).filter(state=Job.State.RUNNING, lease_expires_at__lt=now)
        for job in stalled:
            if job.attempts >= job.max_attempts:
                error = f"heartbeat stopped on attempt {job.attempts} of {job.max_attempts}; not retried again"
                # No later claim will close the last attempt: close it here, at the moment its lease ran out.
                attempts_close_lost(job=job, at=job.lease_expires_at, error=error)
                Job.objects.filter(pk=job.pk).update(
                    state=Job.State.FAILED, finished_at=now, lease_owner="", lease_expires_at=None, error=error,
                )
                counts["failed"] += 1
            else:
                Job.objects.filter(pk=job.pk).update(state=Job.State.QUEUED, lease_owner="", lease_expires_at=None, enqueued_at=now)
                job_publish(job)
                counts["requeued"] += 1
        unpublished = Q(published_at__isnull=True) | Q(published_at__lt=F("enqueued_at"))
        grace = now - timedelta(seconds=settings.ATTUNE_JOB_UNPUBLISHED_GRACE_SECONDS)
        unclaimed = now - timedelta(seconds=settings.ATTUNE_JOB_REPUBLISH_SECONDS)
        lost = Job.objects.select_for_update(skip_locked=True).filter(
            (unpublished & Q(enqueued_at__lt=grace)) | Q(enqueued_at__lt=unclaimed), state=Job.State.QUEUED,
        )
        for job in lost:
            Job.objects.filter(pk=job.pk).update(enqueued_at=now)
            job_publish(job)
            counts["republished"] += 1
    if any(counts.values()):
        logger.warning("job recovery: %s", counts)
    return counts
