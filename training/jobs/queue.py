"""The one publish hook: `job_publish(job)` wakes a worker for a queued job once
the transaction commits. The backend is chosen by ``settings.ATTUNE_JOB_QUEUE``:

- ``"celery"``: send the job's task to its Celery queue (``default`` or ``gpu``) and
  record ``published_at`` on the job row (how recovery tells a lost publish from a wait);
- ``"inline"``: run the job in this process, after commit, one job at a time in
  the order they were published (``manage.py run_experiment`` and tests).

Both backends name the Celery task instead of importing it, so this module
imports nothing of the runtime that calls it."""
from __future__ import annotations

from contextlib import contextmanager

from django.conf import settings
from django.db import transaction

RUN_JOB_TASK = "training.tasks.run_job"
# Routed to the "gpu" queue by name (CELERY_TASK_ROUTES "*.gpu_*").
GPU_RUN_JOB_TASK = "training.tasks.gpu_run_job"


def job_task_name(queue: str) -> str:
    return GPU_RUN_JOB_TASK if queue == "gpu" else RUN_JOB_TASK


class CeleryJobQueue:
    def publish(self, *, job_id: int, queue: str) -> None:
        """Send the wake-up, then note on the job row that the broker has it: a queued job without that note
        lost its publish (the process died after commit) and the recovery loop republishes it within seconds."""
        from celery import current_app
        from django.utils import timezone

        from training.models import Job

        current_app.send_task(job_task_name(queue), args=[job_id], queue=queue)
        Job.objects.filter(pk=job_id, state=Job.State.QUEUED).update(published_at=timezone.now())


class InlineJobQueue:
    """Runs published jobs in this process. A job that finishes publishes its
    dependents, which join the same queue instead of nesting.

    Inside `held()` jobs only collect in `pending`, as (job id, queue) pairs,
    until `run_pending()`: the one-process run reports each job as it ends, and
    tests look at what was published."""

    def __init__(self):
        self.pending: list[tuple[int, str]] = []
        self._held = 0
        self._running = False

    def publish(self, *, job_id: int, queue: str) -> None:
        self.pending.append((job_id, queue))
        if not self._held:
            self.run_pending()

    def run_pending(self, *, report=None) -> None:
        """Run queued jobs until none is left; `report(job_id, state)` after each
        (an exception it raises stops the run, leaving the rest pending)."""
        if self._running:
            return
        from celery import current_app

        # What a worker does at start: import the apps' task modules (autodiscovery), so the task is known by name.
        current_app.loader.import_default_modules()
        self._running = True
        try:
            while self.pending:
                job_id, queue = self.pending.pop(0)
                state = current_app.tasks[job_task_name(queue)](job_id)
                if report is not None:
                    report(job_id, state)
        finally:
            self._running = False

    @contextmanager
    def held(self):
        self._held += 1
        try:
            yield self.pending
        finally:
            self._held -= 1
            if not self._held:
                self.pending.clear()


inline_queue = InlineJobQueue()
JOB_QUEUES = {"celery": CeleryJobQueue(), "inline": inline_queue}


def job_queue():
    """The backend named by settings.ATTUNE_JOB_QUEUE."""
    name = settings.ATTUNE_JOB_QUEUE
    if name not in JOB_QUEUES:
        raise ValueError(f"ATTUNE_JOB_QUEUE must be one of: {', '.join(JOB_QUEUES)} (got {name!r})")
    return JOB_QUEUES[name]


def job_publish(job) -> None:
    """Wake a worker for `job` after the current transaction commits (at once outside one)."""
    job_id, queue = job.pk, job.queue
    transaction.on_commit(lambda: job_queue().publish(job_id=job_id, queue=queue))
