"""People's data in experiments: survey personas and rankings and clinician-majority
pairs join the preference data, and a job refuses to run on a survey dataset
version that a withdrawal has affected, naming it."""
import pytest

from core.services import scenario_bank_load
from survey import services as survey_services
from survey.models import DatasetVersion
from tests.survey.factories import StudyFactory, complete_participant
from training import services
from training.jobs import runtime
from training.models import Job

from .factories import TINY_DEMO


def test_withdrawal_stops_training_on_the_affected_dataset(db, researcher, published, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    scenario_bank_load()
    study = StudyFactory()
    participants = [complete_participant(study) for _ in range(4)]
    survey_services.personas_build(study=study)
    survey_services.personas_select(study=study, total=4, train=2, test=2, min_quality=0.0)

    experiment = services.experiment_start(name="survey cohort", config={**TINY_DEMO, "persona_source": "survey", "survey_study": study.slug}, actor=researcher)
    inputs = experiment.jobs.get(key="scenarios")
    assert runtime.job_execute(job_id=inputs.pk) == Job.State.SUCCEEDED
    inputs.refresh_from_db()
    version = DatasetVersion.objects.get(pk=inputs.lineage["dataset_versions"][0])
    assert version.participants.count() == 4

    survey_services.participant_withdraw(participant=participants[0], via="resume_link")
    generate = experiment.jobs.get(key="generate")
    assert generate.state == Job.State.QUEUED
    assert runtime.job_execute(job_id=generate.pk) == Job.State.FAILED
    generate.refresh_from_db()
    assert version.label in generate.error and "withdrew" in generate.error
    assert not (generate.work_dir() / "candidates.jsonl").exists()

    # The job stays refused on a retry: the data it was built on is gone for good.
    assert services.job_retry(job=generate, actor=researcher) == "queued"
    assert runtime.job_execute(job_id=generate.pk) == Job.State.FAILED

    # A new experiment exports a new version without the withdrawn participant.
    again = services.experiment_start(name="survey cohort 2", config={**TINY_DEMO, "persona_source": "survey", "survey_study": study.slug}, actor=researcher)
    inputs = again.jobs.get(key="scenarios")
    assert runtime.job_execute(job_id=inputs.pk) == Job.State.SUCCEEDED
    inputs.refresh_from_db()
    fresh = DatasetVersion.objects.get(pk=inputs.lineage["dataset_versions"][0])
    assert fresh.pk != version.pk and fresh.affected_by_withdrawal_at is None
    assert participants[0].pk not in set(fresh.participants.values_list("pk", flat=True))
    assert fresh.participants.count() == 3


@pytest.mark.django_db(transaction=True)  # the heartbeat thread needs committed rows
def test_survey_rankings_join_the_preference_data(researcher, published, settings, tmp_path):
    import json
    from pathlib import Path

    from tests.survey.factories import study_with_responses

    settings.ARTIFACT_ROOT = tmp_path
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    scenario_bank_load()
    study = study_with_responses()
    for _ in range(3):
        complete_participant(study)
    config = {**TINY_DEMO, "survey_study": study.slug}
    experiment = services.experiment_start(name="with human rankings", config=config, actor=researcher)
    for key in ("scenarios", "generate", "label", "preferences"):
        job = experiment.jobs.get(key=key)
        assert runtime.job_execute(job_id=job.pk) == Job.State.SUCCEEDED, job.key
    preferences = experiment.jobs.get(key="preferences")
    card = json.loads((Path(preferences.result["dataset_dir"]) / "card.json").read_text())
    sources = json.dumps(card)
    assert "survey" in sources and "judge:" in sources
    assert preferences.lineage["dataset_versions"]
    with pytest.raises(services.ConfigError, match="no survey study with the slug 'nope'"):
        services.experiment_start(name="bad study", config={**TINY_DEMO, "survey_study": "nope"}, actor=researcher)


@pytest.mark.django_db(transaction=True)
def test_clinician_majority_pairs_join_the_preference_data(researcher, settings, tmp_path):
    import json
    from pathlib import Path

    from annotation import services as annotation_services
    from annotation.models import Assignment
    from tests.annotation.factories import make_study, screen_answers

    settings.ARTIFACT_ROOT = tmp_path
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    scenario_bank_load()
    study = make_study(n_items=2, n_clinicians=2, overlap=2)
    for assignment in Assignment.objects.filter(study=study):
        # Both clinicians prefer source A on every dimension.
        annotation_services.judgment_submit(assignment=assignment, clinician=assignment.clinician,
                                            choices=screen_answers(study, "left" if assignment.left_is_a else "right"))
    experiment = services.experiment_start(name="with clinicians", config={**TINY_DEMO, "clinician_studies": [study.pk]},
                                           actor=researcher)
    for key in ("scenarios", "generate", "label", "preferences"):
        job = experiment.jobs.get(key=key)
        assert runtime.job_execute(job_id=job.pk) == Job.State.SUCCEEDED, job.error
    preferences = experiment.jobs.get(key="preferences")
    counts = preferences.result["counts"]
    # make_study's criteria are empathy and safety: two items' majority pairs for each.
    assert counts["empathy"]["by_source"]["clinician"] == 2 and counts["safety"]["by_source"]["clinician"] == 2
    assert preferences.lineage["clinician_studies"] == [study.pk]
    with pytest.raises(services.ConfigError, match="no rating study with id"):
        services.experiment_start(name="bad", config={**TINY_DEMO, "clinician_studies": [999999]}, actor=researcher)
