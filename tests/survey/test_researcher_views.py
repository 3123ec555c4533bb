"""Researcher dashboard, plots, exports, weight vectors, personas, flags: staff only, audited."""
import pytest

from core.models import AuditEvent
from survey import services
from survey.models import CrisisFlag, DatasetVersion, Persona, WeightVector
from tests.factories import ClinicianFactory, UserFactory
from tests.survey.factories import background_data, complete_participant

pytestmark = pytest.mark.django_db


@pytest.fixture
def cohort(study):
    # Prolific participants are those who arrive with a Prolific id.
    people = [complete_participant(study, source="university") if i % 2 else
              complete_participant(study, prolific={"PROLIFIC_PID": f"pp{i}", "SESSION_ID": f"s{i}"}) for i in range(4)]
    data = background_data(gender="self_describe")
    data["background.gender"]["text"] = "I have thought about suicide"
    people.append(complete_participant(study, background=data))
    return people


def test_only_researchers_get_in(client, study):
    paths = [f"/study/manage/", f"/study/manage/{study.slug}/", f"/study/manage/{study.slug}/plots/importance.svg"]
    for path in paths:
        assert client.get(path)["Location"].startswith("/accounts/login/")
    for user in (ClinicianFactory(), UserFactory(is_staff=True)):
        client.force_login(user)
        for path in paths:
            assert client.get(path).status_code == 403
        assert client.post(f"/study/manage/{study.slug}/export/", {"kind": "answers"}).status_code == 403
    assert not DatasetVersion.objects.exists()


def test_dashboard_shows_funnel_statistics_and_flags(client, researcher, study, cohort):
    client.force_login(researcher)
    page = client.get(f"/study/manage/{study.slug}/").content.decode()
    assert 'data-funnel="completed">5<' in page and 'data-funnel="crisis_flagged">1<' in page
    assert "Empathy" in page and "Plackett–Luce" in page and cohort[-1].pseudonym in page
    for name in ("importance", "top-share", "plackett-luce", "agreement"):
        plot = client.get(f"/study/manage/{study.slug}/plots/{name}.svg")
        assert plot["Content-Type"] == "image/svg+xml" and plot.content.startswith(b"<?xml")
    assert client.get(f"/study/manage/{study.slug}/plots/nope.svg").status_code == 404
    assert study.title in client.get("/study/manage/").content.decode()


def test_dashboard_renders_for_an_empty_study(client, researcher, study):
    client.force_login(researcher)
    assert client.get(f"/study/manage/{study.slug}/").status_code == 200
    for name in ("importance", "top-share", "plackett-luce", "agreement"):
        assert client.get(f"/study/manage/{study.slug}/plots/{name}.svg").status_code == 200


def test_export_download_and_withdrawal_block(client, researcher, study, cohort):
    client.force_login(researcher)
    for kind in ("answers", "answers-with-text", "criteria-rankings", "response-rankings"):
        assert client.post(f"/study/manage/{study.slug}/export/", {"kind": kind}).status_code == 302
    assert DatasetVersion.objects.count() == 4
    version = DatasetVersion.objects.filter(kind="survey_answers").order_by("pk").first()
    assert version.created_by == researcher
    download = client.get(f"/study/manage/datasets/{version.pk}/files/0/")
    assert download.status_code == 200 and cohort[0].pseudonym in b"".join(download.streaming_content).decode()
    assert AuditEvent.objects.filter(action="survey.dataset_download", actor=researcher).count() == 1
    services.participant_withdraw(participant=cohort[0], via="code")
    blocked = client.get(f"/study/manage/datasets/{version.pk}/files/0/")
    assert blocked.status_code == 409 and "withdrew" in blocked.content.decode()
    # Personas need a selection first: a clear message, no dataset.
    response = client.post(f"/study/manage/{study.slug}/export/", {"kind": "personas"}, follow=True)
    assert "no selected personas" in response.content.decode()


def test_weight_vector_and_persona_forms(client, researcher, study, cohort):
    client.force_login(researcher)
    client.post(f"/study/manage/{study.slug}/weights/", {"name": "prolific", "cohort_field": "source", "cohort_value": "prolific",
                                                          "method": "plackett_luce"})
    vector = WeightVector.objects.get(name="prolific")
    assert vector.participant_count == 2 and vector.created_by == researcher
    response = client.post(f"/study/manage/{study.slug}/weights/", {"name": "x", "cohort_field": "age_group", "cohort_value": "99"},
                           follow=True)
    assert "is not a value of" in response.content.decode()
    client.post(f"/study/manage/{study.slug}/personas/", {"action": "build"})
    client.post(f"/study/manage/{study.slug}/personas/", {"action": "select", "total": "4", "train": "3", "test": "1", "seed": "2",
                                                           "min_quality": "0"})
    assert Persona.objects.filter(selected=True).count() == 4
    assert client.post(f"/study/manage/{study.slug}/export/", {"kind": "personas"}).status_code == 302
    assert DatasetVersion.objects.filter(kind="personas").count() == 1
    response = client.post(f"/study/manage/{study.slug}/personas/", {"action": "select", "total": "lots"}, follow=True)
    assert "whole numbers" in response.content.decode()


def test_crisis_flag_review(client, researcher, study, cohort):
    client.force_login(researcher)
    flag = CrisisFlag.objects.get()
    client.post(f"/study/manage/flags/{flag.pk}/review/")
    flag.refresh_from_db()
    assert flag.reviewed_by == researcher and flag.reviewed_at is not None
    assert AuditEvent.objects.filter(action="survey.crisis_flag_review").exists()
    assert cohort[-1].pseudonym not in client.get(f"/study/manage/{study.slug}/").content.decode().split("Crisis flags to review")[1].split("</section>")[0]
