"""Withdrawal (survey.services.withdrawal): what is deleted, what is marked, and the ways in."""
import csv
from pathlib import Path

import pytest

from core.models import AuditEvent, AuditSubject
from survey import selectors, services
from survey.exceptions import StepNotAvailable
from survey.models import Answer, ConsentRecord, CriteriaRanking, ImportanceRating, Participant, Persona, ResponseRanking
from tests.survey.factories import background_data, complete_participant

pytestmark = pytest.mark.django_db


def test_withdrawal_deletes_answers_marks_versions_and_later_exports_exclude(study, tmp_path):
    stays = complete_participant(study)
    leaves = complete_participant(study)
    services.personas_select(study=study, total=2, train=1, test=1, seed=0, min_quality=0)
    answers = services.survey_answers_export(study=study)
    personas = services.personas_export_jsonl(path=tmp_path / "personas.jsonl", study=study)
    vector = services.weight_vector_create(study=study, name="all", n_boot=10)
    unrelated = services.dataset_version_create(kind="training", participants=[stays], files=[tmp_path / "personas.jsonl"])
    assert selectors.dataset_version_withdrawal_problem(answers) is None

    marked = services.participant_withdraw(participant=leaves, via="resume_link")

    assert sorted(marked) == sorted([answers.pk, personas.pk, vector.dataset_version_id])
    # Nothing of theirs is left: not even the emptied participant row.
    assert not Participant.objects.filter(pk=leaves.pk).exists()
    for model in (Answer, ImportanceRating, CriteriaRanking, ResponseRanking, ConsentRecord, Persona):
        assert not model.objects.filter(participant_id=leaves.pk).exists(), model
    assert selectors.study_funnel(study)["withdrawn"] == 1 and selectors.study_funnel(study)["started"] == 2
    # The versions that held them stay, marked, with their hashes; their files are gone from disk.
    for version in (answers, personas, vector.dataset_version):
        version.refresh_from_db()
        assert version.files_deleted_at is not None and version.sha256 and version.participant_count == 2
        assert not any(Path(f["path"]).exists() for f in version.files)
        assert list(version.participants.all()) == [stays]
    for version in (answers, personas):
        problem = selectors.dataset_version_withdrawal_problem(version)
        assert f"dataset version #{version.pk}" in problem and "withdrew" in problem
    assert selectors.dataset_version_withdrawal_problem(unrelated) is None
    with pytest.raises(ValueError, match="withdrew"):
        selectors.weight_vectors_for_training(study=study, names=["all"])
    # Later exports leave them out.
    later = services.survey_answers_export(study=study)
    rows = list(csv.DictReader(open(later.files[0]["path"])))
    assert [r["participant"] for r in rows] == [stays.pseudonym]
    assert list(later.participants.all()) == [stays]
    # The audit row records the withdrawal and what was marked under a subject key that now leads nowhere,
    # with no id of theirs and nothing they answered.
    event = AuditEvent.objects.get(action="survey.participant_withdraw")
    assert event.target_type == "survey.participant" and event.target_id == "" and event.actor_label == "participant"
    assert event.subject_key and not AuditSubject.objects.filter(key=event.subject_key).exists()
    assert set(event.details) == {"study", "via", "previous_status", "dataset_versions_marked", "files_deleted"}
    assert event.details["files_deleted"] == 3
    # Idempotent.
    assert services.participant_withdraw(participant=leaves, via="code") == []


def test_withdrawal_by_code_page(client, study):
    from tests.core.test_ratelimit import fresh_address

    participant, address = complete_participant(study), fresh_address()  # failures are counted per address too
    response = client.post("/study/withdraw/", REMOTE_ADDR=address, data={"code": participant.withdrawal_code.lower().replace("-", " "), "confirm": "yes"})
    assert response.status_code == 200 and "You have withdrawn" in response.content.decode()
    assert not Participant.objects.filter(pk=participant.pk).exists()
    from survey.models import new_withdrawal_code

    # A fresh unknown code each run: failures are counted per code in the (shared) cache.
    assert client.post("/study/withdraw/", REMOTE_ADDR=address, data={"code": new_withdrawal_code(), "confirm": "yes"}).status_code == 400
    # The same code again: not found, and told kindly that there is nothing more to do.
    again = client.post("/study/withdraw/", REMOTE_ADDR=address, data={"code": participant.withdrawal_code, "confirm": "yes"})
    assert again.status_code == 400 and "If you have already withdrawn" in again.content.decode()


def test_withdrawal_from_the_resume_link_mid_survey(client, study):
    participant = services.participant_start(study=study)
    version = selectors.consent_version_current(study)
    services.consent_give(participant=participant, consent_version_id=version.pk, agreed=[0, 1, 2])
    assert client.post(f"/study/r/{participant.token}/withdraw/", {"participant": participant.token}).status_code == 400
    response = client.post(f"/study/r/{participant.token}/withdraw/", {"participant": participant.token, "confirm": "yes"})
    # The end page is addressed by nothing of theirs; their own link now leads to a kind 404.
    assert response["Location"] == "/study/withdraw/done/"
    assert "You have withdrawn" in client.get(response["Location"]).content.decode()
    assert not ConsentRecord.objects.filter(participant_id=participant.pk).exists()
    gone = client.get(f"/study/r/{participant.token}/background/")
    assert gone.status_code == 404 and "If you withdrew from the study" in gone.content.decode()
    # A page still open in another tab: nothing is saved, and the person is sent to the end page.
    with pytest.raises(StepNotAvailable):
        services.background_save(participant=participant, data=background_data())
