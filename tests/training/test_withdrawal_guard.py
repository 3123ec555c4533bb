"""A job refuses to run on a survey dataset version that a withdrawal has
affected, naming it; a fresh export leaves the withdrawn participant out."""
import pytest

from core.services import scenario_bank_load
from survey import services as survey_services
from survey.models import DatasetVersion
from tests.survey.factories import StudyFactory, complete_participant
from training import services
from training.models import Job

from .test_stages import TINY_DEMO


@pytest.fixture
def published(monkeypatch):
    sent = []
    monkeypatch.setattr(services, "_publish", lambda job_id, queue: sent.append((job_id, queue)))
    return sent


def test_withdrawal_stops_training_on_the_affected_dataset(db, researcher, published, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    scenario_bank_load()
    study = StudyFactory()
    participants = [complete_participant(study) for _ in range(4)]
    survey_services.personas_build(study=study)
    survey_services.personas_select(study=study, total=4, train=2, test=2, min_quality=0.0)

    experiment = services.experiment_start(name="survey cohort", config={**TINY_DEMO, "persona_source": "survey"}, actor=researcher)
    inputs = experiment.jobs.get(key="scenarios")
    assert services.job_execute(job_id=inputs.pk) == Job.State.SUCCEEDED
    inputs.refresh_from_db()
    version = DatasetVersion.objects.get(pk=inputs.lineage["dataset_version"])
    assert version.participants.count() == 4

    survey_services.participant_withdraw(participant=participants[0], via="resume_link")
    generate = experiment.jobs.get(key="generate")
    assert generate.state == Job.State.QUEUED
    assert services.job_execute(job_id=generate.pk) == Job.State.FAILED
    generate.refresh_from_db()
    assert version.label in generate.error and "withdrew" in generate.error
    assert not (generate.work_dir() / "candidates.jsonl").exists()

    # The job stays refused on a retry: the data it was built on is gone for good.
    assert services.job_retry(job=generate, actor=researcher) == "queued"
    assert services.job_execute(job_id=generate.pk) == Job.State.FAILED

    # A new experiment exports a new version without the withdrawn participant.
    again = services.experiment_start(name="survey cohort 2", config={**TINY_DEMO, "persona_source": "survey"}, actor=researcher)
    inputs = again.jobs.get(key="scenarios")
    assert services.job_execute(job_id=inputs.pk) == Job.State.SUCCEEDED
    inputs.refresh_from_db()
    fresh = DatasetVersion.objects.get(pk=inputs.lineage["dataset_version"])
    assert fresh.pk != version.pk and fresh.affected_by_withdrawal_at is None
    assert participants[0].pk not in set(fresh.participants.values_list("pk", flat=True))
    assert fresh.participants.count() == 3
