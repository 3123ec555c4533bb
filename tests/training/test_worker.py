"""Jobs on a real Celery worker process: duplicate deliveries and a worker
child killed with SIGKILL in the middle of training."""
import os
import signal
import time

import pytest

from core.services import scenario_bank_load
from tests.conftest import WorkerProcess, wait_for
from training import services
from training.jobs.queue import JOB_QUEUES
from training.models import Job

from .factories import TINY_DEMO

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def artifact_root(settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    return {"ATTUNE_ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT), "ATTUNE_MODEL_CACHE": str(settings.MODEL_CACHE_DIR)}


def test_duplicate_delivery_runs_the_job_once(researcher, artifact_root):
    scenario_bank_load()
    experiment = services.experiment_start(name="dup delivery", config=TINY_DEMO, actor=researcher)
    job = experiment.jobs.get(key="scenarios")
    # The same wake-up delivered three times (e.g. a Redis visibility-timeout redelivery).
    JOB_QUEUES["celery"].publish(job_id=job.pk, queue=job.queue)
    JOB_QUEUES["celery"].publish(job_id=job.pk, queue=job.queue)
    worker = WorkerProcess(queues="default", extra_env=artifact_root, name="dup").start()
    try:
        wait_for(lambda: Job.objects.get(pk=job.pk).state == Job.State.SUCCEEDED, 60, worker, "the job to succeed")
        wait_for(lambda: worker.log().count("not claimed") >= 2, 30, worker, "the duplicate deliveries to be skipped")
    finally:
        worker.stop()
    job.refresh_from_db()
    assert job.attempts == 1
    assert job.log_tail.count("attempt 1 on") == 1 and "attempt 2" not in job.log_tail
    assert job.artifacts.count() == 2


def test_killed_training_resumes_from_its_checkpoint(researcher, artifact_root, settings):
    scenario_bank_load()
    total_steps = 20
    config = {**TINY_DEMO, "policy_max_steps": total_steps, "policy_save_steps": 5}
    experiment = services.experiment_start(name="crash test", config=config, actor=researcher)
    sft = experiment.jobs.get(key="sft")
    checkpoints = sft.work_dir() / "policy"
    # Prefork, like the GPU worker: the parent sees its child die and puts the task back.
    worker = WorkerProcess(extra_env={**artifact_root, "ATTUNE_JOB_HEARTBEAT_SECONDS": "0.5"}, name="crash", pool="prefork").start()
    try:
        def first_checkpoint():
            return any(p.name.startswith("checkpoint-") and (p / "COMPLETE").exists() for p in checkpoints.rglob("checkpoint-*"))

        wait_for(first_checkpoint, 240, worker, "the SFT job's first complete checkpoint")
        sft.refresh_from_db()
        assert sft.state == Job.State.RUNNING
        child_pid = int(sft.lease_owner.rsplit(":", 1)[1])
        assert child_pid != worker.process.pid
        os.kill(child_pid, signal.SIGKILL)
        wait_for(lambda: Job.objects.get(pk=sft.pk).state in Job.FINISHED, 240, worker, "the SFT job to finish after the kill")
    finally:
        worker.stop()
    sft.refresh_from_db()
    assert sft.state == Job.State.SUCCEEDED, sft.error
    assert sft.attempts == 2
    assert sft.result["resumed_from"] and "checkpoint-" in sft.result["resumed_from"]
    assert sft.result["metrics"]["global_step"] == total_steps


def test_a_killed_attempts_log_survives_and_each_attempt_is_recorded(researcher, artifact_root):
    """A worker child killed with SIGKILL between heartbeats: the lines it logged
    are in job.log (written through), though they never reached the job row; its
    attempt is closed as lost and the takeover is a new attempt with its own start."""
    from training.models import JobAttempt

    scenario_bank_load()
    config = {**TINY_DEMO, "policy_max_steps": 30, "policy_save_steps": 10}
    experiment = services.experiment_start(name="log kill test", config=config, actor=researcher)
    sft = experiment.jobs.get(key="sft")
    log_path = sft.work_dir() / "job.log"
    # No heartbeat during the attempt: whatever the row shows of the log was not written by it.
    worker = WorkerProcess(extra_env={**artifact_root, "ATTUNE_JOB_HEARTBEAT_SECONDS": "3600"}, name="logkill", pool="prefork").start()
    try:
        wait_for(lambda: log_path.exists() and "step 3/30: loss=" in log_path.read_text(), 240, worker, "the SFT job's metrics in its log")
        sft.refresh_from_db()
        assert sft.state == Job.State.RUNNING
        child_pid = int(sft.lease_owner.rsplit(":", 1)[1])
        first_started = sft.started_at
        os.kill(child_pid, signal.SIGKILL)
        before_kill = log_path.read_text()
        assert "step 3/30" not in Job.objects.get(pk=sft.pk).log_tail
        wait_for(lambda: Job.objects.get(pk=sft.pk).state in Job.FINISHED, 240, worker, "the SFT job to finish after the kill")
    finally:
        worker.stop()
    sft.refresh_from_db()
    assert sft.state == Job.State.SUCCEEDED, sft.error
    text = log_path.read_text()
    assert text.startswith(before_kill)  # attempt 1's lines, up to the kill, are all there
    assert "attempt 1 on" in before_kill and "training sft" in before_kill
    assert "attempt 2 on" in text and "step 30/30: loss=" in text  # killed before its first checkpoint: from scratch
    lost, second = sft.attempt_records.order_by("number")
    assert (lost.outcome, second.outcome) == (JobAttempt.Outcome.LOST, JobAttempt.Outcome.SUCCEEDED)
    assert lost.worker != second.worker and lost.ended_at <= second.started_at
    assert sft.started_at == second.started_at > first_started and sft.error == ""


@pytest.mark.slow
def test_a_whole_worker_killed_mid_training_is_recovered_and_the_job_finishes_once(researcher, artifact_root, capsys):
    """The whole worker (parent and child) SIGKILLed mid-training, as a lost machine or an OOM-killed container
    loses it, with `manage.py recover_jobs` running and the default lease (60 s), heartbeat (10 s) and pass
    interval (5 s); a new worker is started at once, as a supervisor would. Measures kill → requeued →
    claimed → finished (about lease + a pass, then the resume)."""
    from tests.conftest import RecoveryProcess
    from training.models import JobAttempt

    scenario_bank_load()
    config = {**TINY_DEMO, "policy_max_steps": 40, "policy_save_steps": 5}
    experiment = services.experiment_start(name="whole worker kill", config=config, actor=researcher)
    sft = experiment.jobs.get(key="sft")
    checkpoints = sft.work_dir() / "policy"
    recovery = RecoveryProcess(extra_env=artifact_root, name="recovery-whole-kill").start()
    worker = WorkerProcess(extra_env=artifact_root, name="whole-kill", pool="prefork").start()
    second = WorkerProcess(extra_env=artifact_root, name="whole-kill-new", pool="prefork")
    try:
        def first_checkpoint():
            return any((p / "COMPLETE").exists() for p in checkpoints.rglob("checkpoint-*"))

        wait_for(first_checkpoint, 300, worker, "the SFT job's first complete checkpoint")
        sft.refresh_from_db()
        assert sft.state == Job.State.RUNNING
        child_pid = int(sft.lease_owner.rsplit(":", 1)[1])
        os.kill(worker.process.pid, signal.SIGKILL)
        os.kill(child_pid, signal.SIGKILL)
        killed = time.monotonic()
        worker.process.wait()
        second.start()
        wait_for(lambda: Job.objects.get(pk=sft.pk).state != Job.State.RUNNING or
                 Job.objects.get(pk=sft.pk).lease_owner != sft.lease_owner, 150, second, "the job to be requeued")
        requeued = time.monotonic()
        wait_for(lambda: Job.objects.get(pk=sft.pk).attempts == 2 and Job.objects.get(pk=sft.pk).state == Job.State.RUNNING
                 or Job.objects.get(pk=sft.pk).state in Job.FINISHED, 120, second, "the new worker to claim it")
        claimed = time.monotonic()
        wait_for(lambda: Job.objects.get(pk=sft.pk).state in Job.FINISHED, 300, second, "the SFT job to finish")
        finished = time.monotonic()
    finally:
        for process in (worker, second, recovery):
            process.stop()
    sft.refresh_from_db()
    assert sft.state == Job.State.SUCCEEDED, sft.error
    assert sft.attempts == 2 and "checkpoint-" in (sft.result["resumed_from"] or "")
    assert sft.result["metrics"]["global_step"] == 40
    lost, taken_over = sft.attempt_records.order_by("number")
    assert (lost.outcome, taken_over.outcome) == (JobAttempt.Outcome.LOST, JobAttempt.Outcome.SUCCEEDED)
    with capsys.disabled():
        print(f"\nwhole worker killed: requeued {requeued - killed:.1f} s after the kill, claimed by the new worker "
              f"{claimed - killed:.1f} s, finished {finished - killed:.1f} s (resume and the rest of training "
              f"{finished - claimed:.1f} s)")
    assert requeued - killed <= 60 + 10 + 5 + 30  # lease + heartbeat + a pass, and margin for 2 busy cores
