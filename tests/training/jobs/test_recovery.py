"""The recovery loop on a real worker: a lost publish is recovered within seconds, and reaping goes on
while a long job occupies the only worker (the `make demo` setup). Each test prints what it measured."""
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from tests.conftest import RecoveryProcess, WorkerProcess, wait_for
from training.jobs.queue import JOB_QUEUES
from training.models import Job

from ..factories import JobFactory
from ..worker_app import SLEEP_KIND

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]

WORKER_APP = "tests.training.worker_app"
# "Well under a minute": the defaults give a 20 s grace and a 5 s pass interval; the margin is for 2 busy cores.
LOST_PUBLISH_BOUND_S = 45
REAP_BOUND_S = 30


def start(*processes):
    for process in processes:
        process.start()
    wait_for(lambda: all(("ready." in p.log() or "a pass every" in p.log()) for p in processes), 90, processes,
             "the worker and the recovery loop to start")
    return processes


def stop(*processes):
    for process in processes:
        process.stop()


def test_a_lost_publish_is_recovered_on_a_real_worker(capsys):
    worker = WorkerProcess(queues="default", name="lost-publish", app=WORKER_APP)
    recovery = RecoveryProcess(name="recovery-lost-publish")
    processes = start(worker, recovery)
    try:
        # Committed as job_enqueue commits it, but the process "died" before its on-commit publish.
        job = JobFactory(kind=SLEEP_KIND, params={"seconds": 0}, state=Job.State.QUEUED, enqueued_at=timezone.now())
        wait_for(lambda: Job.objects.get(pk=job.pk).state == Job.State.SUCCEEDED, LOST_PUBLISH_BOUND_S + 30, processes,
                 "the job whose publish was lost to run")
    finally:
        stop(*processes)
    committed_at = job.enqueued_at  # the row as committed; recovery moves enqueued_at when it republishes
    job.refresh_from_db()
    recovered_s = (job.started_at - committed_at).total_seconds()
    with capsys.disabled():
        print(f"\nlost publish: claimed {recovered_s:.1f} s after it was committed "
              f"(grace 20 s, a pass every 5 s; bound {LOST_PUBLISH_BOUND_S} s)")
    assert recovered_s <= LOST_PUBLISH_BOUND_S
    assert job.attempts == 1 and "not claimed" not in worker.log()  # one delivery, no duplicate work


def test_reaping_goes_on_while_a_long_job_holds_the_only_worker(capsys):
    # The demo's worker: one process for both queues, one task at a time.
    worker = WorkerProcess(queues="default,gpu", name="single", pool="prefork", app=WORKER_APP)
    recovery = RecoveryProcess(name="recovery-single")
    processes = start(worker, recovery)
    try:
        long_job = JobFactory(kind=SLEEP_KIND, params={"seconds": 120}, queue="gpu", state=Job.State.QUEUED,
                              enqueued_at=timezone.now())
        JOB_QUEUES["celery"].publish(job_id=long_job.pk, queue="gpu")
        wait_for(lambda: Job.objects.get(pk=long_job.pk).state == Job.State.RUNNING, 60, processes, "the long job to start")

        now = timezone.now()
        # A job whose worker died a minute ago: its lease has just lapsed.
        orphan = JobFactory(kind=SLEEP_KIND, params={"seconds": 0}, state=Job.State.RUNNING, attempts=1,
                            lease_owner="lost-host:4242", heartbeat_at=now - timedelta(seconds=60),
                            lease_expires_at=now, started_at=now - timedelta(seconds=90))
        lapsed_at = time.monotonic()
        wait_for(lambda: Job.objects.get(pk=orphan.pk).state == Job.State.QUEUED, REAP_BOUND_S, processes,
                 "the orphaned job to be requeued while the long job runs")
        requeued_s = time.monotonic() - lapsed_at
        assert Job.objects.get(pk=long_job.pk).state == Job.State.RUNNING  # reaped while the worker was busy

        Job.objects.filter(pk=long_job.pk).update(cancel_requested=True)
        wait_for(lambda: Job.objects.get(pk=orphan.pk).state == Job.State.SUCCEEDED, 60, processes,
                 "the requeued job to run once the worker is free")
    finally:
        stop(*processes)
    orphan.refresh_from_db()
    assert orphan.attempts == 2
    assert Job.objects.get(pk=long_job.pk).state == Job.State.CANCELLED
    with capsys.disabled():
        print(f"\nlost worker: requeued {requeued_s:.1f} s after its lease lapsed, while the only worker was "
              f"busy with a long job (a pass every 5 s; bound {REAP_BOUND_S} s)")
