"""The job runtime: claim, lease, heartbeat, run, duplicate deliveries, cancel, reaper."""
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AuditEvent
from training import services
from training.jobs import runtime
from training.models import Job, JobAttempt
from training.stages import StageOutcome

from ..factories import JobFactory


def test_run_records_progress_artifacts_and_queues_dependents(db, fake_stage, published, django_capture_on_commit_callbacks):
    first = JobFactory()
    second = JobFactory(experiment=first.experiment, state=Job.State.WAITING, queue="gpu")
    second.depends_on.add(first)
    with django_capture_on_commit_callbacks(execute=True):
        assert runtime.job_execute(job_id=first.pk) == Job.State.SUCCEEDED
    first.refresh_from_db()
    assert first.state == Job.State.SUCCEEDED and first.attempts == 1
    assert (first.progress_step, first.progress_total) == (3, 3)
    assert first.current_loss == pytest.approx(1 / 3)
    assert first.lineage == {"from": "test"}
    artifact = first.artifacts.get()
    assert len(artifact.sha256) == 64
    second.refresh_from_db()
    assert second.state == Job.State.QUEUED
    assert published == [(second.pk, "gpu")]


def test_duplicate_delivery_does_no_duplicate_work(db, fake_stage):
    job = JobFactory()
    assert runtime.job_execute(job_id=job.pk) == Job.State.SUCCEEDED
    assert runtime.job_execute(job_id=job.pk) == "skipped"
    assert fake_stage == [job.pk]
    job.refresh_from_db()
    assert job.attempts == 1


def test_a_live_lease_cannot_be_taken(db):
    job = JobFactory()
    assert runtime.job_claim(job_id=job.pk, owner="elsewhere:1") is not None
    assert runtime.job_claim(job_id=job.pk, owner="elsewhere:2") is None
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    claimed = runtime.job_claim(job_id=job.pk, owner="elsewhere:2")
    assert claimed.lease_owner == "elsewhere:2" and claimed.attempts == 2


def test_a_dead_local_holder_is_taken_over_at_once(db):
    import socket

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_owner = f"{socket.gethostname()}:{finished.stdout.strip()}"
    job = JobFactory(state=Job.State.RUNNING, lease_owner=dead_owner, attempts=1,
                     lease_expires_at=timezone.now() + timedelta(minutes=5))
    claimed = runtime.job_claim(job_id=job.pk, owner=runtime.worker_identity())
    assert claimed is not None and claimed.attempts == 2
    # A holder that is alive (this process) keeps its lease.
    assert runtime.job_claim(job_id=job.pk, owner="someone:else") is None


def test_repeated_crashes_are_capped(db):
    job = JobFactory(attempts=3, max_attempts=3)
    assert runtime.job_claim(job_id=job.pk, owner="w:1") is None
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and "gave up after 3 attempts" in job.error


def test_stage_error_fails_the_job_with_its_message(db, register_fake_stage):
    def broken(job, run):
        raise ValueError("the dataset has no pairs for 'empathy'")

    register_fake_stage(broken)
    job = JobFactory()
    assert runtime.job_execute(job_id=job.pk) == Job.State.FAILED
    job.refresh_from_db()
    assert job.error.startswith("the dataset has no pairs for 'empathy'")


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_running_job_at_its_next_step(register_fake_stage, settings, researcher):
    settings.ATTUNE_JOB_HEARTBEAT_SECONDS = 0.05
    started = threading.Event()
    steps = []

    def slow(job, run):
        started.set()
        for step in range(400):
            steps.append(step)
            run.progress(step, 400)
            run.check_cancelled()
            time.sleep(0.02)
        return StageOutcome()

    register_fake_stage(slow)
    job = JobFactory()
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("state", runtime.job_execute(job_id=job.pk)))
    worker.start()
    assert started.wait(10)
    time.sleep(0.2)
    assert services.job_cancel(job=Job.objects.get(pk=job.pk), actor=researcher) == "cancel requested"
    worker.join(20)
    assert outcome["state"] == Job.State.CANCELLED
    assert len(steps) < 400
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED
    assert AuditEvent.objects.filter(action="job.cancel", target_id=str(job.pk)).exists()


def test_reaper_requeues_stalled_jobs_and_fails_repeat_offenders(db, published, django_capture_on_commit_callbacks, settings):
    past = timezone.now() - timedelta(minutes=5)
    stalled = JobFactory(state=Job.State.RUNNING, lease_owner="gone:1", lease_expires_at=past, attempts=1)
    exhausted = JobFactory(state=Job.State.RUNNING, lease_owner="gone:2", lease_expires_at=past, attempts=3, max_attempts=3)
    healthy = JobFactory(state=Job.State.RUNNING, lease_owner="alive:1", lease_expires_at=timezone.now() + timedelta(minutes=1))
    lost = JobFactory(state=Job.State.QUEUED, enqueued_at=timezone.now() - timedelta(seconds=settings.ATTUNE_JOB_REPUBLISH_SECONDS + 5))
    with django_capture_on_commit_callbacks(execute=True):
        counts = runtime.jobs_reap()
    assert counts == {"requeued": 1, "failed": 1, "republished": 1}
    for job in (stalled, exhausted, healthy):
        job.refresh_from_db()
    assert stalled.state == Job.State.QUEUED and stalled.lease_owner == ""
    assert exhausted.state == Job.State.FAILED and "heartbeat stopped" in exhausted.error
    assert healthy.state == Job.State.RUNNING
    assert sorted(published) == sorted([(stalled.pk, stalled.queue), (lost.pk, lost.queue)])


def test_an_unknown_stage_kind_is_refused(db):
    job = JobFactory(kind="no_such_stage")
    assert runtime.job_execute(job_id=job.pk) == Job.State.FAILED
    job.refresh_from_db()
    assert job.error == "unknown stage kind 'no_such_stage'"


def test_recovery_republishes_a_lost_publish_after_a_short_grace_and_only_once(db, published,
                                                                               django_capture_on_commit_callbacks, settings):
    settings.ATTUNE_JOB_UNPUBLISHED_GRACE_SECONDS = 20
    now = timezone.now()
    lost = JobFactory(enqueued_at=now - timedelta(seconds=25))  # committed, never published
    waiting = JobFactory(enqueued_at=now - timedelta(seconds=300), published_at=now - timedelta(seconds=299))
    requeued_lost = JobFactory(enqueued_at=now - timedelta(seconds=25), published_at=now - timedelta(seconds=400))
    fresh = JobFactory(enqueued_at=now - timedelta(seconds=5))  # its publish may still be on its way
    with django_capture_on_commit_callbacks(execute=True):
        assert runtime.jobs_reap()["republished"] == 2
    assert sorted(job_id for job_id, _ in published) == sorted([lost.pk, requeued_lost.pk])
    published.clear()
    # The next pass, seconds later, sends nothing again: the republish restarted the clock.
    with django_capture_on_commit_callbacks(execute=True):
        assert runtime.jobs_reap()["republished"] == 0
    assert published == []


def test_a_job_waiting_behind_a_long_one_is_not_republished_until_the_broker_timeout(db, published, settings,
                                                                                    django_capture_on_commit_callbacks):
    now = timezone.now()
    stale = now - timedelta(seconds=settings.ATTUNE_JOB_REPUBLISH_SECONDS + 5)
    JobFactory(enqueued_at=now - timedelta(seconds=settings.ATTUNE_JOB_REPUBLISH_SECONDS - 5),
               published_at=now - timedelta(seconds=settings.ATTUNE_JOB_REPUBLISH_SECONDS - 6))
    broker_lost = JobFactory(enqueued_at=stale, published_at=stale + timedelta(seconds=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert runtime.jobs_reap()["republished"] == 1
    assert [job_id for job_id, _ in published] == [broker_lost.pk]


def test_the_celery_publish_records_that_the_broker_has_the_job(db, monkeypatch):
    from celery import current_app

    from training.jobs import queue

    sent = []
    monkeypatch.setattr(current_app, "send_task", lambda name, args, queue: sent.append((name, args, queue)))
    job = JobFactory(enqueued_at=timezone.now())
    assert job.published_at is None
    queue.CeleryJobQueue().publish(job_id=job.pk, queue="gpu")
    job.refresh_from_db()
    assert sent == [(queue.GPU_RUN_JOB_TASK, [job.pk], "gpu")]
    assert job.published_at is not None and job.published_at >= job.enqueued_at


def test_the_recovery_loop_passes_until_stopped(db, monkeypatch):
    from training.jobs import recovery

    passes = []
    stop = threading.Event()

    def reap():
        passes.append(time.monotonic())
        if len(passes) == 2:
            raise RuntimeError("database restarting")  # a failed pass does not end the loop
        if len(passes) == 4:
            stop.set()
        return {}

    monkeypatch.setattr(recovery, "jobs_reap", reap)
    recovery.recovery_loop(stop=stop, interval=0.01)
    assert len(passes) == 4


# --- Attempts ------------------------------------------------------------------

def test_each_claim_opens_an_attempt_and_the_finish_closes_it(db, fake_stage):
    job = JobFactory()
    assert runtime.job_execute(job_id=job.pk) == Job.State.SUCCEEDED
    attempt = job.attempt_records.get()
    assert (attempt.number, attempt.outcome, attempt.error) == (1, JobAttempt.Outcome.SUCCEEDED, "")
    assert attempt.worker == runtime.worker_identity()
    assert attempt.started_at <= attempt.ended_at


def test_a_takeover_closes_the_dead_attempt_as_lost_at_its_lease_expiry_and_starts_afresh(db):
    job = JobFactory()
    first = runtime.job_claim(job_id=job.pk, owner="gone:1")
    Job.objects.filter(pk=job.pk).update(error="stale message of attempt 1")
    expired_at = timezone.now() - timedelta(seconds=30)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=expired_at)
    second = runtime.job_claim(job_id=job.pk, owner="w:2")
    assert second.started_at > first.started_at and second.error == ""
    lost, current = job.attempt_records.order_by("number")
    assert (lost.number, lost.worker, lost.outcome, lost.ended_at) == (1, "gone:1", JobAttempt.Outcome.LOST, expired_at)
    assert (current.number, current.worker, current.outcome, current.ended_at) == (2, "w:2", JobAttempt.Outcome.RUNNING, None)
    assert current.started_at == second.started_at
    runtime.job_finish(second, owner="w:2", state=Job.State.FAILED, error="boom")
    current.refresh_from_db()
    assert (current.outcome, current.error) == (JobAttempt.Outcome.FAILED, "boom")


def test_a_dead_local_holders_attempt_is_closed_as_lost(db):
    import socket

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_owner = f"{socket.gethostname()}:{finished.stdout.strip()}"
    job = JobFactory()
    runtime.job_claim(job_id=job.pk, owner=dead_owner)
    claimed = runtime.job_claim(job_id=job.pk, owner=runtime.worker_identity())
    assert claimed is not None
    assert list(job.attempt_records.values_list("number", "outcome")) == [(1, "lost"), (2, "running")]


def test_a_job_requeued_by_the_reaper_closes_the_old_attempt_on_its_next_claim(db, published, django_capture_on_commit_callbacks):
    job = JobFactory()
    runtime.job_claim(job_id=job.pk, owner="gone:1")
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=5))
    with django_capture_on_commit_callbacks(execute=True):
        runtime.jobs_reap()
    runtime.job_claim(job_id=job.pk, owner="w:2")
    assert list(job.attempt_records.values_list("worker", "outcome")) == [("gone:1", "lost"), ("w:2", "running")]


def test_a_job_failed_by_recovery_after_its_last_attempt_has_that_attempt_closed_as_lost(db, published):
    job = JobFactory(max_attempts=1)
    runtime.job_claim(job_id=job.pk, owner="gone:1")
    expired = timezone.now() - timedelta(seconds=5)
    Job.objects.filter(pk=job.pk).update(lease_expires_at=expired)
    assert runtime.jobs_reap()["failed"] == 1
    attempt = job.attempt_records.get()
    assert (attempt.outcome, attempt.ended_at) == ("lost", expired)
    assert "not retried again" in attempt.error


def test_retry_numbers_attempts_on_after_the_earlier_ones(db, register_fake_stage, researcher):
    def broken(job, run):
        raise ValueError("no pairs")

    register_fake_stage(broken)
    job = JobFactory()
    runtime.job_execute(job_id=job.pk)
    services.job_retry(job=Job.objects.get(pk=job.pk), actor=researcher)
    runtime.job_execute(job_id=job.pk)
    assert list(job.attempt_records.values_list("number", "outcome")) == [(1, "failed"), (2, "failed")]


# --- The job's log --------------------------------------------------------------

def test_the_log_file_has_stage_messages_metrics_warnings_log_records_and_the_traceback(db, register_fake_stage, tmp_path):
    import logging
    import warnings

    def noisy(job, run):
        run.log("loading the dataset")
        run.progress(1, 4, loss=0.7)
        run.metrics(1, {"loss": 0.6931, "learning_rate": 0.0005})
        warnings.warn("tokenizer has no pad token", UserWarning)
        logging.getLogger("training.pipeline.generation").info("generated 12 candidates")
        logging.getLogger("somewhere.else").warning("disk nearly full")
        logging.getLogger("somewhere.else").info("chatter that stays out")
        raise ValueError("the dataset has no pairs")

    register_fake_stage(noisy)
    job = JobFactory(experiment__output_dir=str(tmp_path / "exp"))
    assert runtime.job_execute(job_id=job.pk) == Job.State.FAILED
    text = (job.work_dir() / "job.log").read_text()
    for expected in ("attempt 1 on", "loading the dataset", "step 1/4: loss=0.6931 learning_rate=0.0005",
                     "UserWarning: tokenizer has no pad token", "generated 12 candidates", "WARNING somewhere.else: disk nearly full",
                     "ERROR Traceback (most recent call last)", "ValueError: the dataset has no pairs"):
        assert expected in text, expected
    assert "chatter that stays out" not in text
    assert text.count("loading the dataset") == 1
    job.refresh_from_db()
    assert "ValueError: the dataset has no pairs" in job.log_tail


def test_the_log_is_written_through_before_the_heartbeat(db, register_fake_stage, tmp_path, settings):
    settings.ATTUNE_JOB_HEARTBEAT_SECONDS = 3600
    seen = {}

    def peek(job, run):
        run.log("first line")
        seen["file"] = (job.work_dir() / "job.log").read_text()
        seen["row"] = Job.objects.get(pk=job.pk).log_tail
        return StageOutcome()

    register_fake_stage(peek)
    job = JobFactory(experiment__output_dir=str(tmp_path / "exp"))
    runtime.job_execute(job_id=job.pk)
    assert "first line" in seen["file"] and "first line" not in seen["row"]


def test_job_run_estimates_from_its_clock(db, tmp_path):
    now = [0.0]
    job = JobFactory(experiment__output_dir=str(tmp_path / "exp"))
    run = runtime.JobRun(job, "w:1", clock=lambda: now[0])
    now[0] = 40.0  # model loading
    run.progress(1, 11)
    assert run._progress["eta_seconds"] is None
    for step in range(2, 5):
        now[0] += 3.0
        run.progress(step, 11)
    assert run._progress["eta_seconds"] == pytest.approx(3.0 * 7)
