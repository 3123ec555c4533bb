"""Clinician pages over HTTP: queue, item, form posts, undo; bad posts get a
clear 4xx and change nothing; nothing reachable names the sources."""
import pytest
from django.urls import reverse

from annotation.models import Assignment, Judgment, JudgmentRevision
from annotation.services import rating_study_close
from core.models import AuditEvent
from tests.factories import ClinicianFactory, ResearcherFactory

from .factories import assert_blind, identifying_strings, make_study, secret_scenarios, secret_sources, small_criteria_set

pytestmark = pytest.mark.django_db


@pytest.fixture
def blind_study():
    from annotation.services import rating_study_create

    source_a, source_b = secret_sources()
    clinicians = [ClinicianFactory() for _ in range(2)]
    study = rating_study_create(
        name="secret-modpo-empathy-safety against baseline", source_a=source_a, source_b=source_b,
        scenarios=secret_scenarios(3, source_a, source_b), criteria_set=small_criteria_set(), clinicians=clinicians,
        overlap=1, actor=ResearcherFactory(), open_now=True,
    )
    return study, clinicians, identifying_strings(source_a, source_b) + [study.name]


def _form(study, value="left", **extra):
    from annotation.selectors import study_dimension_keys

    data = {f"choice-{key}": value for key in study_dimension_keys(study)}
    data.update(extra)
    return data


def _snapshot():
    return (Judgment.objects.count(), JudgmentRevision.objects.count(),
            list(Assignment.objects.order_by("pk").values_list("status", "draft")), AuditEvent.objects.count())


def test_queue_needs_a_clinician(client):
    assert client.get("/rate/").status_code == 302
    client.force_login(ResearcherFactory())
    assert client.get("/rate/").status_code == 403
    client.force_login(ClinicianFactory())
    response = client.get("/rate/")
    assert response.status_code == 200 and "No rating study has been assigned" in response.content.decode()


def test_clinician_rates_an_item_and_moves_on(client, blind_study):
    study, (clinician, _), secrets = blind_study
    client.force_login(clinician)
    queue = client.get(reverse("annotation:queue")).content.decode()
    assert "0 of 2" in queue or "0 of 1" in queue
    first = Assignment.objects.filter(study=study, clinician=clinician).order_by("position").first()
    response = client.get(reverse("annotation:next", kwargs={"study_token": study.token}))
    assert response["Location"] == reverse("annotation:item", kwargs={"token": first.token})
    page = client.get(response["Location"])
    html = page.content.decode()
    assert page.status_code == 200
    assert first.item.scenario.text in html
    assert first.item.response_a.text in html and first.item.response_b.text in html
    assert "Keyboard shortcuts" in html
    assert_blind(html, secrets, "the item page")
    first.refresh_from_db()
    assert first.first_shown_at is not None
    response = client.post(page.request["PATH_INFO"], _form(study, "right", unsafe_left="on", comment="ok", time_on_task_ms="2500"))
    assert response.status_code == 302
    judgment = Judgment.objects.get(assignment=first)
    assert judgment.time_on_task_ms == 2500 and judgment.comment == "ok"
    assert (judgment.unsafe_a if first.left_is_a else judgment.unsafe_b) is True
    # Double submit: the same post again changes nothing.
    client.post(page.request["PATH_INFO"], _form(study, "right", unsafe_left="on", comment="ok", time_on_task_ms="2500"))
    assert JudgmentRevision.objects.filter(assignment=first).count() == 1


@pytest.mark.parametrize("case,status,text", [
    ("unknown_dimension", 400, "unknown dimension"),
    ("missing_dimension", 400, "please choose for every dimension"),
    ("not_yours", 403, "not in your queue"),
    ("closed", 409, "closed"),
])
def test_bad_posts_get_a_clear_4xx_and_change_nothing(client, blind_study, case, status, text):
    study, (owner, other), secrets = blind_study
    assignment = Assignment.objects.filter(study=study, clinician=owner).first()
    data = _form(study)
    client.force_login(owner)
    if case == "unknown_dimension":
        data["choice-charisma"] = "left"
    elif case == "missing_dimension":
        data.pop("choice-safety")
    elif case == "not_yours":
        client.force_login(other)
    elif case == "closed":
        rating_study_close(study=study, actor=None)
    before = _snapshot()
    response = client.post(reverse("annotation:item", kwargs={"token": assignment.token}), data)
    assert response.status_code == status
    body = response.content.decode()
    assert text in body.lower()
    assert_blind(body, secrets, "the error page")
    assert _snapshot() == before


def test_other_clinicians_items_are_forbidden_and_unknown_ones_missing(client, blind_study):
    study, (owner, other), _ = blind_study
    theirs = Assignment.objects.filter(study=study, clinician=owner).first()
    client.force_login(other)
    assert client.get(reverse("annotation:item", kwargs={"token": theirs.token})).status_code == 403
    assert client.get(reverse("annotation:item", kwargs={"token": "not-a-token"})).status_code == 404
    outsider = ClinicianFactory()
    client.force_login(outsider)
    assert client.get(reverse("annotation:next", kwargs={"study_token": study.token})).status_code == 403
    assert client.post(reverse("annotation:undo", kwargs={"study_token": study.token})).status_code == 403


def test_undo_over_http(client):
    study = make_study(n_items=2, n_clinicians=1, overlap=1)
    clinician = study.memberships.first().clinician
    client.force_login(clinician)
    undo_url = reverse("annotation:undo", kwargs={"study_token": study.token})
    assert client.post(undo_url).status_code == 409  # nothing to undo yet
    first = Assignment.objects.filter(study=study, clinician=clinician).order_by("position").first()
    client.post(reverse("annotation:item", kwargs={"token": first.token}), _form(study, "tie"))
    response = client.post(undo_url)
    assert response.status_code == 302 and response["Location"] == reverse("annotation:item", kwargs={"token": first.token})
    page = client.get(response["Location"]).content.decode()
    assert page.count('value="tie" checked') == 3  # the withdrawn answers are back on the form
    assert not Judgment.objects.exists()


def test_closed_study_item_page(client, blind_study):
    study, (owner, _), _ = blind_study
    rating_study_close(study=study, actor=None)
    assignment = Assignment.objects.filter(study=study, clinician=owner).first()
    client.force_login(owner)
    assert client.get(reverse("annotation:item", kwargs={"token": assignment.token})).status_code == 409
