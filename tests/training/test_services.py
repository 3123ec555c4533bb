"""Researchers' writes: start an experiment, cancel and retry its jobs, send a model for rating."""
import pytest

from core.models import AuditEvent
from training import services
from training.models import Experiment, Job
from training.plans import ConfigError

from .factories import JobFactory


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


def test_a_misspelt_judge_setting_starts_nothing(db, researcher, published, django_capture_on_commit_callbacks):
    judge = {"backend": "http", "base_url": "http://127.0.0.1:8001/v1", "model": "judge", "modle": "x"}
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(ConfigError) as caught:
        services.experiment_start(name="bad judge", config={"preset": "cpu_demo", "judge": judge}, actor=researcher)
    assert any(m.startswith("judge: unknown key 'modle'; allowed: base_url, model,") for m in caught.value.messages)
    assert not Experiment.objects.exists() and not Job.objects.exists() and published == []
    assert not AuditEvent.objects.filter(action="experiment.start").exists()


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
