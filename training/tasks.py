"""Thin Celery tasks: each names a job by id; the database decides whether to run it."""
from celery import shared_task

from .jobs import queue, runtime

# acks_late + reject_on_worker_lost: a worker child killed mid-job (OOM,
# SIGKILL) puts the message back, and job_claim lets the new delivery take over.
JOB_TASK_OPTIONS = dict(acks_late=True, reject_on_worker_lost=True, ignore_result=True)


@shared_task(name=queue.RUN_JOB_TASK, **JOB_TASK_OPTIONS)
def run_job(job_id: int) -> str:
    return runtime.job_execute(job_id=job_id)


@shared_task(name=queue.GPU_RUN_JOB_TASK, **JOB_TASK_OPTIONS)
def gpu_run_job(job_id: int) -> str:
    return runtime.job_execute(job_id=job_id)

# Recovery (lapsed leases, lost publishes) is not a task: it runs in its own process, where a long
# job cannot hold it up (training.jobs.recovery).
