"""The survey admin: consent versioning, persona editing, participant withdrawal, actions."""
import pytest

from core.models import AuditEvent
from survey.models import ConsentVersion, DatasetVersion, Participant, Persona
from tests.survey.factories import complete_participant

pytestmark = pytest.mark.django_db


def test_changing_consent_text_creates_a_new_version(client, researcher, study):
    early = complete_participant(study)
    client.force_login(researcher)
    v1 = ConsentVersion.objects.get(study=study)
    response = client.post(f"/admin/survey/consentversion/{v1.pk}/change/",
                           {"information_sheet": "Revised sheet.", "statements": "One\nTwo"})
    assert response.status_code == 302, response.content.decode()[:2000]
    v1.refresh_from_db()
    assert v1.information_sheet == "About the study."  # the old version is untouched
    v2 = ConsentVersion.objects.get(study=study, version=2)
    assert v2.information_sheet == "Revised sheet." and v2.created_by == researcher
    assert early.consent.consent_version == v1
    assert AuditEvent.objects.filter(action="survey.consent_publish").count() == 1


def test_persona_is_editable_in_the_admin(client, researcher, study):
    persona = complete_participant(study).persona
    client.force_login(researcher)
    assert client.get(f"/admin/survey/persona/{persona.pk}/change/").status_code == 200
    response = client.post(f"/admin/survey/persona/{persona.pk}/change/", {"text": "A rewritten persona.", "split": "test"})
    assert response.status_code == 302
    persona.refresh_from_db()
    assert (persona.text, persona.edited, persona.split, persona.selected) == ("A rewritten persona.", True, "test", True)


def test_admin_withdraw_action_and_exports(client, researcher, study):
    participant = complete_participant(study)
    client.force_login(researcher)
    client.post("/admin/survey/study/", {"action": "export_answers", "_selected_action": [study.pk]})
    assert DatasetVersion.objects.filter(kind="survey_answers").count() == 1
    other = complete_participant(study)
    page = client.get(f"/admin/survey/participant/{other.pk}/change/").content.decode()
    assert other.pseudonym in page and other.token not in page
    response = client.post("/admin/survey/participant/", {"action": "withdraw", "_selected_action": [participant.pk]}, follow=True)
    assert "1 participant(s) withdrawn" in response.content.decode()
    assert participant.pseudonym not in response.content.decode()
    assert not Participant.objects.filter(pk=participant.pk).exists()
    assert DatasetVersion.objects.get().affected_by_withdrawal_at is not None
    assert AuditEvent.objects.get(action="survey.participant_withdraw").actor == researcher
    for name in ("study", "participant", "persona", "datasetversion", "weightvector", "crisisflag", "personaselection", "consentversion"):
        assert client.get(f"/admin/survey/{name}/").status_code == 200, name


def test_study_changes_are_audited(client, researcher, study):
    client.force_login(researcher)
    response = client.get(f"/admin/survey/study/{study.pk}/change/")
    assert response.status_code == 200
    assert not Persona.objects.exists()


def test_adding_consent_text_in_the_admin_publishes_the_next_version(client, researcher, study):
    client.force_login(researcher)
    response = client.post("/admin/survey/consentversion/add/",
                           {"study": study.pk, "information_sheet": "Sheet two.", "statements": "Only one"})
    assert response.status_code == 302
    assert list(study.consent_versions.values_list("version", flat=True).order_by("version")) == [1, 2]


def test_admin_index_links_each_survey_study_dashboard(client, researcher, study):
    from tests.survey.factories import StudyFactory

    other = StudyFactory(slug="second-study", title="Second study")
    client.force_login(researcher)
    page = client.get("/admin/").content.decode()
    for s in (study, other):
        assert f'href="/study/manage/{s.slug}/"' in page and s.title in page


def test_crisis_flag_admin_is_titled_and_shows_field_text_time_and_review_state(client, researcher, study):
    from survey import services
    from survey.models import CrisisFlag

    participant = complete_participant(study, feedback="Some days I want to die")
    flag = CrisisFlag.objects.get(participant=participant)
    client.force_login(researcher)
    listing = client.get("/admin/survey/crisisflag/").content.decode()
    assert "Closing feedback" in listing and "Some days I want to die" in listing and "Not reviewed" in listing
    assert participant.pseudonym in listing
    page = client.get(f"/admin/survey/crisisflag/{flag.pk}/change/").content.decode()
    assert "CrisisFlag object" not in page
    assert f"Crisis language from {participant.pseudonym} in “Closing feedback”" in page
    assert "Some days I want to die" in page
    services.crisis_flag_review(flag=flag, actor=researcher)
    page = client.get(f"/admin/survey/crisisflag/{flag.pk}/change/").content.decode()
    assert f"by {researcher}" in page and "Not reviewed" not in page


def test_crisis_flags_are_for_researchers_only(client, study):
    from django.contrib.auth.models import Permission

    from survey.models import CrisisFlag
    from tests.factories import UserFactory

    flag = CrisisFlag.objects.get(participant=complete_participant(study, feedback="I want to die"))
    # Staff with the model's view permission but not in the Researchers group still sees nothing.
    staff = UserFactory(is_staff=True)
    staff.user_permissions.add(Permission.objects.get(codename="view_crisisflag"))
    client.force_login(staff)
    assert client.get("/admin/survey/crisisflag/").status_code == 403
    assert client.get(f"/admin/survey/crisisflag/{flag.pk}/change/").status_code == 403
    assert "I want to die" not in client.get("/admin/").content.decode()
