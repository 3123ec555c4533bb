"""The job state machine: claim, run, duplicate deliveries, cancel, retry, reaper."""
import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from core.models import AuditEvent
from training import services, stages
from training.models import Job
from training.plans import ConfigError
from training.stages import StageOutcome

from .factories import JobFactory


@pytest.fixture
def fake_stage(monkeypatch, tmp_path):
    calls = []

    def run(job, run):
        calls.append(job.pk)
        for step in range(1, 4):
            run.progress(step, 3, loss=1.0 / step)
            run.check_cancelled()
        path = tmp_path / f"out-{job.pk}.txt"
        path.write_text("result")
        return StageOutcome(result={"path": str(path)}, lineage={"from": "test"},
                            artifacts=[{"kind": "evaluation", "name": "out", "path": path}])

    monkeypatch.setitem(stages.STAGES, "fake", run)
    monkeypatch.setattr(stages, "check_dataset_versions", lambda job: None)
    return calls


def test_experiment_start_creates_jobs_and_queues_roots_after_commit(db, researcher, published, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        experiment = services.experiment_start(name="demo one", config={"preset": "cpu_demo", "base_model": "tiny"}, actor=researcher)
    jobs = {job.key: job for job in experiment.jobs.all()}
    assert jobs["scenarios"].state == Job.State.QUEUED
    assert all(job.state == Job.State.WAITING for key, job in jobs.items() if key != "scenarios")
    assert published == [(jobs["scenarios"].pk, "default")]
    assert AuditEvent.objects.filter(action="experiment.start", target_id=str(experiment.pk)).exists()


def test_bad_config_starts_nothing(db, researcher, published, django_capture_on_commit_callbacks):
    from training.models import Experiment

    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ConfigError, match="lora_rank"):
        services.experiment_start(name="bad", config={"preset": "cpu_demo", "lora_rank": -1}, actor=researcher)
    assert not Experiment.objects.exists() and not Job.objects.exists()
    assert not AuditEvent.objects.filter(action="experiment.start").exists()
    assert published == []
    with django_capture_on_commit_callbacks(execute=True):
        services.experiment_start(name="dup", config={"preset": "cpu_demo"}, actor=researcher)
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ConfigError, match="already exists"):
        services.experiment_start(name="dup", config={"preset": "cpu_demo"}, actor=researcher)
    assert Experiment.objects.count() == 1 and len(published) == 1


def test_run_records_progress_artifacts_and_queues_dependents(db, fake_stage, published, django_capture_on_commit_callbacks):
    first = JobFactory()
    second = JobFactory(experiment=first.experiment, state=Job.State.WAITING, queue="gpu")
    second.depends_on.add(first)
    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_execute(job_id=first.pk) == Job.State.SUCCEEDED
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
    assert services.job_execute(job_id=job.pk) == Job.State.SUCCEEDED
    assert services.job_execute(job_id=job.pk) == "skipped"
    assert fake_stage == [job.pk]
    job.refresh_from_db()
    assert job.attempts == 1


def test_a_live_lease_cannot_be_taken(db):
    job = JobFactory()
    assert services.job_claim(job_id=job.pk, owner="elsewhere:1") is not None
    assert services.job_claim(job_id=job.pk, owner="elsewhere:2") is None
    Job.objects.filter(pk=job.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    claimed = services.job_claim(job_id=job.pk, owner="elsewhere:2")
    assert claimed.lease_owner == "elsewhere:2" and claimed.attempts == 2


def test_a_dead_local_holder_is_taken_over_at_once(db):
    import socket

    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_owner = f"{socket.gethostname()}:{finished.stdout.strip()}"
    job = JobFactory(state=Job.State.RUNNING, lease_owner=dead_owner, attempts=1,
                     lease_expires_at=timezone.now() + timedelta(minutes=5))
    claimed = services.job_claim(job_id=job.pk, owner=services.worker_identity())
    assert claimed is not None and claimed.attempts == 2
    # A holder that is alive (this process) keeps its lease.
    assert services.job_claim(job_id=job.pk, owner="someone:else") is None


def test_repeated_crashes_are_capped(db):
    job = JobFactory(attempts=3, max_attempts=3)
    assert services.job_claim(job_id=job.pk, owner="w:1") is None
    job.refresh_from_db()
    assert job.state == Job.State.FAILED and "gave up after 3 attempts" in job.error


def test_stage_error_fails_the_job_with_its_message(db, monkeypatch):
    def broken(job, run):
        raise ValueError("the dataset has no pairs for 'empathy'")

    monkeypatch.setitem(stages.STAGES, "fake", broken)
    monkeypatch.setattr(stages, "check_dataset_versions", lambda job: None)
    job = JobFactory()
    assert services.job_execute(job_id=job.pk) == Job.State.FAILED
    job.refresh_from_db()
    assert job.error.startswith("the dataset has no pairs for 'empathy'")


@pytest.mark.django_db(transaction=True)
def test_cancel_stops_a_running_job_at_its_next_step(monkeypatch, settings, researcher):
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

    monkeypatch.setitem(stages.STAGES, "fake", slow)
    monkeypatch.setattr(stages, "check_dataset_versions", lambda job: None)
    job = JobFactory()
    outcome = {}
    worker = threading.Thread(target=lambda: outcome.setdefault("state", services.job_execute(job_id=job.pk)))
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


def test_cancel_and_retry_a_queued_job(db, researcher, published, django_capture_on_commit_callbacks):
    job = JobFactory()
    assert services.job_cancel(job=job, actor=researcher) == "cancelled"
    job.refresh_from_db()
    assert job.state == Job.State.CANCELLED
    with django_capture_on_commit_callbacks(execute=True):
        assert services.job_retry(job=job, actor=researcher) == "queued"
    job.refresh_from_db()
    assert job.state == Job.State.QUEUED and job.attempts == 0
    assert published == [(job.pk, job.queue)]
    assert services.job_retry(job=job, actor=researcher).startswith("not retried")


def test_reaper_requeues_stalled_jobs_and_fails_repeat_offenders(db, published, django_capture_on_commit_callbacks, settings):
    past = timezone.now() - timedelta(minutes=5)
    stalled = JobFactory(state=Job.State.RUNNING, lease_owner="gone:1", lease_expires_at=past, attempts=1)
    exhausted = JobFactory(state=Job.State.RUNNING, lease_owner="gone:2", lease_expires_at=past, attempts=3, max_attempts=3)
    healthy = JobFactory(state=Job.State.RUNNING, lease_owner="alive:1", lease_expires_at=timezone.now() + timedelta(minutes=1))
    lost = JobFactory(state=Job.State.QUEUED, enqueued_at=timezone.now() - timedelta(seconds=settings.ATTUNE_JOB_REPUBLISH_SECONDS + 5))
    with django_capture_on_commit_callbacks(execute=True):
        counts = services.jobs_reap()
    assert counts == {"requeued": 1, "failed": 1, "republished": 1}
    for job in (stalled, exhausted, healthy):
        job.refresh_from_db()
    assert stalled.state == Job.State.QUEUED and stalled.lease_owner == ""
    assert exhausted.state == Job.State.FAILED and "heartbeat stopped" in exhausted.error
    assert healthy.state == Job.State.RUNNING
    assert sorted(published) == sorted([(stalled.pk, stalled.queue), (lost.pk, lost.queue)])


# --- Send for rating ----------------------------------------------------------------


def _evaluated_experiment(tmp_path, n_scenarios=6):
    """An experiment whose evaluation finished: a trained model and the base,
    each with an answer per test scenario, and the judge's decisions on them."""
    import json

    from core.models import ModelVersion
    from tests.factories import ResponseFactory, ScenarioFactory

    from .factories import ExperimentFactory

    experiment = ExperimentFactory()
    trained = ModelVersion.objects.create(name=f"{experiment.name}/dpo", kind=ModelVersion.Kind.CHECKPOINT, model_ref="ckpt")
    base = ModelVersion.objects.create(name=f"{experiment.name}/base", kind=ModelVersion.Kind.BASE, model_ref="tiny")
    decisions = tmp_path / f"judge-{experiment.pk}.jsonl"
    rows = []
    for i in range(n_scenarios):
        scenario = ScenarioFactory()
        ResponseFactory(scenario=scenario, model_version=trained, text=f"A warm, reflective reply {i}.")
        ResponseFactory(scenario=scenario, model_version=base, text=f"A brief reply {i}.")
        rows.append({"scenario_id": f"s{scenario.pk}", "criterion": "overall", "model_a": "dpo", "model_b": "base",
                     "majority": "a"})
    decisions.write_text("".join(json.dumps(r) + "\n" for r in rows))
    JobFactory(experiment=experiment, key="dpo", kind="dpo", state=Job.State.SUCCEEDED, result={"model_version": trained.pk})
    JobFactory(experiment=experiment, key="evaluate", kind="evaluate", state=Job.State.SUCCEEDED,
               params={"models": ["base", "dpo"]}, result={"judge_decisions": str(decisions)},
               lineage={"judge": {"name": "rubric"}})
    return experiment, trained, base


def _send(experiment, clinicians, researcher, n=4):
    return services.experiment_send_for_rating(experiment=experiment, model_key="dpo", n_scenarios=n,
                                               clinicians=clinicians, overlap="all", actor=researcher)


def test_send_for_rating_draws_a_fresh_seed_and_a_coin_for_source_a(db, researcher, tmp_path):
    from annotation.models import Assignment
    from tests.factories import ClinicianFactory

    clinicians = [ClinicianFactory() for _ in range(3)]
    studies, trained_first = [], set()
    for _ in range(12):
        experiment, trained, base = _evaluated_experiment(tmp_path)
        study = _send(experiment, clinicians, researcher)
        assert {study.source_a_id, study.source_b_id} == {trained.pk, base.pk}
        trained_first.add(study.source_a_id == trained.pk)
        # The judge preferred the trained model everywhere: whichever label it got, the decisions follow it.
        expected = "a" if study.source_a_id == trained.pk else "b"
        assert set(study.judge_decisions.values_list("choice", flat=True)) == {expected}
        studies.append(study)
    assert trained_first == {True, False}  # the same side 12 times running: p = 2**-11
    assert len({s.seed for s in studies}) == len(studies)
    sides = {tuple(Assignment.objects.filter(study=s).order_by("clinician_id", "position").values_list("left_is_a", flat=True))
             for s in studies}
    assert len(sides) > 1  # same sizes, different position patterns


def test_send_for_rating_takes_no_seed(db, researcher, tmp_path):
    from tests.factories import ClinicianFactory

    experiment, _, _ = _evaluated_experiment(tmp_path)
    with pytest.raises(TypeError):
        services.experiment_send_for_rating(experiment=experiment, model_key="dpo", n_scenarios=2,
                                            clinicians=[ClinicianFactory()], overlap=1, actor=researcher, seed=0)


def test_send_for_rating_refuses_a_rater_with_researcher_access(db, researcher, tmp_path):
    from annotation.exceptions import InvalidInput
    from annotation.models import RatingStudy
    from tests.factories import ClinicianFactory

    experiment, _, _ = _evaluated_experiment(tmp_path)
    staff_clinician = ClinicianFactory(is_staff=True)
    with pytest.raises(InvalidInput, match="researcher access"):
        _send(experiment, [ClinicianFactory(), staff_clinician], researcher, n=2)
    assert not RatingStudy.objects.exists()


def test_the_experiment_report_leaves_out_rating_results_for_the_study_s_raters(db, researcher, tmp_path):
    from types import SimpleNamespace

    from core import roles
    from tests.factories import ClinicianFactory
    from training.reports import experiment_report_context

    experiment, _, _ = _evaluated_experiment(tmp_path)
    rater = ClinicianFactory()
    _send(experiment, [rater], researcher, n=2)
    rater.is_staff = True
    rater.save()
    rater.groups.add(roles.ensure_groups())
    assert len(experiment_report_context(experiment=experiment, request=SimpleNamespace(user=researcher))["rating"]) == 1
    assert experiment_report_context(experiment=experiment, request=SimpleNamespace(user=rater))["rating"] == []


def test_send_for_rating_over_http_names_the_researcher_it_refuses(db, client, researcher, tmp_path):
    from annotation.models import RatingStudy
    from tests.factories import ClinicianFactory

    experiment, _, _ = _evaluated_experiment(tmp_path)
    staff_clinician = ClinicianFactory(is_staff=True)
    client.force_login(researcher)
    response = client.post(f"/admin/training/experiment/{experiment.pk}/send-for-rating/", {
        "model_key": "dpo", "n_scenarios": 2, "clinicians": [ClinicianFactory().pk, staff_clinician.pk], "overlap": "1"})
    assert response.status_code == 400
    assert "researcher access" in response.content.decode() and staff_clinician.username in response.content.decode()
    assert not RatingStudy.objects.exists()
