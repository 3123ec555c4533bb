"""The one publish hook: nothing is published before commit; the inline queue
runs jobs in this process, dependents after their prerequisites, without nesting."""
import pytest
from django.db import transaction

from training.jobs import queue, runtime
from training.models import Job

from ..factories import JobFactory


@pytest.mark.django_db(transaction=True)
def test_the_inline_queue_runs_a_job_and_its_dependents_after_commit(settings, fake_stage):
    settings.ATTUNE_JOB_QUEUE = "inline"
    first = JobFactory(state=Job.State.WAITING)
    second = JobFactory(experiment=first.experiment, state=Job.State.WAITING, queue="gpu")
    second.depends_on.add(first)
    with transaction.atomic():
        assert runtime.job_enqueue(job=first)
        assert fake_stage == []  # not before commit
    assert fake_stage == [first.pk, second.pk]
    assert set(Job.objects.values_list("state", flat=True)) == {Job.State.SUCCEEDED}
    assert queue.inline_queue.pending == []


@pytest.mark.django_db(transaction=True)
def test_a_held_inline_queue_keeps_jobs_until_run_pending(settings, fake_stage):
    settings.ATTUNE_JOB_QUEUE = "inline"
    job = JobFactory(state=Job.State.WAITING)
    with queue.inline_queue.held() as pending:
        runtime.job_enqueue(job=job)
        assert pending == [(job.pk, job.queue)] and fake_stage == []
        ran = []
        queue.inline_queue.run_pending(report=lambda job_id, state: ran.append((job_id, state)))
        assert ran == [(job.pk, Job.State.SUCCEEDED)] and pending == []


def test_an_unknown_queue_setting_names_the_choices(settings):
    settings.ATTUNE_JOB_QUEUE = "carrier-pigeon"
    with pytest.raises(ValueError, match="must be one of: celery, inline"):
        queue.job_queue()
