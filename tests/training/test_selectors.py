"""Reads for the experiment pages: what recovery will do about a job that looks stuck."""
from datetime import timedelta

from django.utils import timezone

from training.models import Job
from training.selectors import experiment_status, job_recovery_note

from .factories import JobFactory


def test_a_running_job_with_a_live_heartbeat_has_no_note(db):
    now = timezone.now()
    job = JobFactory.build(state=Job.State.RUNNING, lease_owner="w:1", heartbeat_at=now - timedelta(seconds=5),
                           lease_expires_at=now + timedelta(seconds=55), attempts=1)
    assert job_recovery_note(job, now=now) == ""


def test_a_lost_worker_says_when_it_was_lost_and_when_the_job_is_retried(db, settings):
    settings.ATTUNE_RECOVERY_INTERVAL_SECONDS = 5
    now = timezone.now()
    lost_at = now - timedelta(seconds=40)
    job = JobFactory.build(state=Job.State.RUNNING, lease_owner="w:1", heartbeat_at=lost_at,
                           lease_expires_at=lost_at + timedelta(seconds=60), attempts=1, max_attempts=3)
    note = job_recovery_note(job, now=now)
    retry_by = timezone.localtime(lost_at + timedelta(seconds=65)).strftime("%H:%M:%S")
    assert note.startswith(f"worker lost at {timezone.localtime(lost_at):%Y-%m-%d %H:%M:%S}")
    assert f"will be retried at" in note and retry_by in note and "attempt 2 of 3" in note

    job.attempts = 3
    assert "will be marked failed" in job_recovery_note(job, now=now)


def test_a_lease_that_lapsed_is_a_lost_worker_even_with_a_recent_heartbeat(db):
    now = timezone.now()
    job = JobFactory.build(state=Job.State.RUNNING, lease_owner="w:1", heartbeat_at=now - timedelta(seconds=1),
                           lease_expires_at=now - timedelta(seconds=1), attempts=1)
    assert "worker lost at" in job_recovery_note(job, now=now)


def test_a_queued_job_whose_publish_was_lost_says_it_will_be_sent_again(db, settings):
    settings.ATTUNE_JOB_UNPUBLISHED_GRACE_SECONDS = 20
    now = timezone.now()
    lost = JobFactory.build(state=Job.State.QUEUED, enqueued_at=now - timedelta(seconds=30))
    assert "will be sent again" in job_recovery_note(lost, now=now)
    fresh = JobFactory.build(state=Job.State.QUEUED, enqueued_at=now - timedelta(seconds=3))
    published = JobFactory.build(state=Job.State.QUEUED, enqueued_at=now - timedelta(seconds=300),
                                 published_at=now - timedelta(seconds=299))
    assert job_recovery_note(fresh, now=now) == job_recovery_note(published, now=now) == ""


def test_experiment_status_and_the_job_list_show_the_note(db, admin_client):
    now = timezone.now()
    job = JobFactory(state=Job.State.RUNNING, lease_owner="w:1", heartbeat_at=now - timedelta(minutes=5),
                     lease_expires_at=now - timedelta(minutes=4), attempts=1)
    (row,) = experiment_status(experiment=job.experiment)["jobs"]
    assert row["recovery"].startswith("worker lost at")
    page = admin_client.get("/admin/training/job/")
    assert page.status_code == 200 and b"worker lost at" in page.content
