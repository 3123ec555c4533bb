"""core.input: control characters and repeated single-valued fields get a 400
with a clear message — never a 500 — and change nothing, on every URL."""
import json
import re

import pytest
from django.apps import apps
from django.urls import URLPattern, URLResolver, get_resolver

from annotation.models import Assignment, Judgment
from survey import selectors as survey_selectors
from survey import services as survey_services
from survey.models import Answer, Participant
from tests.annotation.factories import make_study, screen_answers
from tests.survey.factories import complete_participant, full_ranks, participant_through, study_with_responses

pytestmark = pytest.mark.django_db

NUL_VALUES = ["ab%00cd", "%00", "ab%01cd", "ab%7Fcd", "ab%C2%85cd"]  # NUL, SOH, DEL, C1 (NEL)


@pytest.fixture(autouse=True)
def _vocabulary(db, settings, tmp_path):
    from core.services import helplines_seed, vocabulary_seed

    vocabulary_seed()
    helplines_seed()
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


def url_patterns(resolver=None, prefix=""):
    """(route, pattern) for every URL the site serves, routes joined from the resolver tree."""
    resolver = resolver or get_resolver()
    for entry in resolver.url_patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from url_patterns(entry, route)
        elif isinstance(entry, URLPattern):
            yield route, entry


def fill(route: str, value: str) -> str:
    """A concrete path for a route, with every parameter replaced by ``value``."""
    path = re.sub(r"<(?:\w+:)?\w+>", value, route)
    path = re.sub(r"\(\?P<\w+>[^)]*\)", value, path)
    path = path.replace("^", "").replace("$", "").replace("\\Z", "").replace("\\.", ".").replace("\\", "")
    return "/" + path


def parameterised_routes():
    return [route for route, _ in url_patterns() if "<" in route or "(?P" in route]


def row_counts() -> dict:
    return {model._meta.label: model.objects.count() for model in apps.get_models()}


def participant_at_closing(study) -> Participant:
    """A participant who has answered everything up to the closing page."""
    participant = participant_through(study, "importance")
    keys = [c.key for c in survey_selectors.study_criteria()]
    survey_services.criteria_ranking_save(participant=participant, ranks=full_ranks(keys), order_confirmed=True)
    participant.refresh_from_db()
    plan = survey_services.scenarios_begin(participant=participant)
    participant.refresh_from_db()
    for number, _ in enumerate(plan, start=1):
        survey_services.response_ranking_save(participant=participant, number=number, ranks=None, skip=True)
    participant.refresh_from_db()
    return participant


@pytest.fixture
def survey_study():
    return study_with_responses()


def assert_refused(response, *, json_body=False):
    assert response.status_code == 400, (response.status_code, response.content[:300])
    if json_body:
        assert "control character" in response.json()["detail"] or "more than once" in response.json()["detail"]
    else:
        assert b"control character" in response.content or b"takes one value" in response.content


# --- Control characters -----------------------------------------------------------------------


def test_every_url_refuses_control_characters_in_its_parameters(client, researcher):
    routes = parameterised_routes()
    assert any("token" in r for r in routes) and any("admin" in r for r in routes)
    client.force_login(researcher)
    before = row_counts()
    for route in routes:
        for value in NUL_VALUES:
            path = fill(route, value)
            assert_refused(client.get(path))
            assert_refused(client.post(path, {"a": "b"}))
    assert row_counts() == before


def test_participant_token_urls_with_nul_are_400_not_500(client, survey_study):
    participant = survey_services.participant_start(study=survey_study)
    for step in ("", "consent/", "background/", "closing/", "withdraw/", "progress.json"):
        response = client.get(f"/study/r/{participant.token}%00/{step}")
        assert response.status_code == 400, step
    assert_refused(client.get("/study/r/%00/progress.json"), json_body=False)


def test_nul_in_a_free_text_field_is_400_and_saves_nothing(client, survey_study):
    participant = participant_at_closing(survey_study)
    before = row_counts()
    response = client.post(f"/study/r/{participant.token}/closing/", {"participant": participant.token, "feedback": "kind\x00words"})
    assert_refused(response)
    assert b"form field &#x27;feedback&#x27;" in response.content
    assert row_counts() == before
    participant.refresh_from_db()
    assert participant.status == Participant.Status.IN_PROGRESS
    # Tab, newline and carriage return are ordinary text.
    response = client.post(f"/study/r/{participant.token}/closing/",
                           {"participant": participant.token, "feedback": "line one\r\nline\ttwo"})
    assert response.status_code == 303
    assert Answer.objects.get(participant=participant, item_key="closing.feedback").text.startswith("line one")


@pytest.mark.parametrize("field, value", [("feedback", "a\x00"), ("x\x00", "a"), ("feedback", "a\x1b[31m"), ("feedback", "a\x7f"),
                                          ("feedback", "a\x85")])
def test_nul_in_any_field_name_or_value(client, survey_study, field, value):
    participant = participant_at_closing(survey_study)
    response = client.post(f"/study/r/{participant.token}/closing/", {"participant": participant.token, field: value})
    assert_refused(response)


def test_query_strings_headers_and_cookies(client, survey_study):
    assert_refused(client.get(f"/study/{survey_study.slug}/?PROLIFIC_PID=%00x"))
    assert_refused(client.get(f"/study/{survey_study.slug}/?x%00=1"))
    assert_refused(client.get("/", HTTP_USER_AGENT="bot\x00"))
    client.cookies["sessionid"] = "abcdefgh\x00ijk"
    assert_refused(client.get("/"))


def test_every_post_endpoint_refuses_a_nul_field(client, researcher, survey_study):
    """With real tokens and ids in the URL, a NUL anywhere in the POST is a 400 before any view runs."""
    participant = participant_at_closing(survey_study)
    study = make_study(n_items=1, n_clinicians=1, overlap=1, keys=("empathy",))
    assignment = Assignment.objects.get(study=study)
    values = {"token": participant.token, "slug": survey_study.slug, "study_token": study.token, "pk": str(study.pk),
              "number": "1", "index": "0", "name": "funnel", "to": "closed"}
    client.force_login(researcher)
    before = row_counts()
    for route, _ in url_patterns():
        path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", lambda m: values.get(m.group(1), "1"), route)
        path = fill(path[1:], "1")
        body = {"participant": participant.token, "feedback": "x\x00", "comment": "x\x00", "code": "ABCDE-\x0023456",
                "username": "someone\x00", "password": "pw", "name": "n\x00", "csrfmiddlewaretoken": "t"}
        assert_refused(client.post(path, body))
        assert_refused(client.post(path, json.dumps({"comment": "ok", "choices": {"empathy": ["left\x00"]}}),
                                   content_type="application/json"), json_body=True)
    assert row_counts() == before
    assert not Judgment.objects.filter(assignment=assignment).exists()


def test_clinician_rating_and_api_refuse_nul(client, survey_study):
    study = make_study(n_items=1, n_clinicians=1, overlap=1, keys=("empathy",))
    assignment = Assignment.objects.get(study=study)
    client.force_login(assignment.clinician)
    choices = {f"choice-{k}": v for k, v in screen_answers(study).items()}
    assert_refused(client.post(f"/rate/item/{assignment.token}/", {**choices, "comment": "fine\x00"}))
    assert_refused(client.get(f"/rate/item/{assignment.token}%00/"))
    api = f"/rate/api/items/{assignment.token}/judgment/"
    response = client.post(api, json.dumps({"choices": screen_answers(study), "comment": "a\u0000b"}), content_type="application/json")
    assert_refused(response, json_body=True)
    # Nested, and in a key.
    response = client.post(api, json.dumps({"choices": {"empathy\u0000": "left"}}), content_type="application/json")
    assert_refused(response, json_body=True)
    assert_refused(client.get(f"/rate/api/items/{assignment.token}%00/"), json_body=True)
    assert not Judgment.objects.exists()
    # The same answer without the NUL is saved.
    response = client.post(api, json.dumps({"choices": screen_answers(study), "comment": "a\nb"}), content_type="application/json")
    assert response.status_code == 200


def test_withdrawal_by_code_and_sign_in_refuse_nul(client, survey_study):
    participant = complete_participant(survey_study)
    code = participant.withdrawal_code
    assert_refused(client.post("/study/withdraw/", {"code": code + "\x00", "confirm": "yes"}))
    participant.refresh_from_db()
    assert participant.status == Participant.Status.COMPLETED
    from axes.models import AccessAttempt

    assert_refused(client.post("/accounts/login/", {"username": "x\x00", "password": "y"}))
    assert_refused(client.post("/admin/login/", {"username": "x\x00", "password": "y"}))
    assert not AccessAttempt.objects.exists()


# --- Repeated fields ----------------------------------------------------------------------------


def test_a_single_valued_field_sent_twice_is_refused(client, survey_study):
    participant = participant_at_closing(survey_study)
    response = client.post(f"/study/r/{participant.token}/closing/",
                           {"participant": participant.token, "feedback": ["first", "second"]})
    assert_refused(response)
    assert b"feedback" in response.content
    participant.refresh_from_db()
    assert participant.status == Participant.Status.IN_PROGRESS and not Answer.objects.filter(item_key="closing.feedback").exists()
    assert_refused(client.get(f"/study/{survey_study.slug}/?source=a&source=b"))


def test_checkbox_groups_still_take_several_values(client, survey_study):
    from tests.survey.test_views import background_post, consent_post

    participant = survey_services.participant_start(study=survey_study)
    response = client.post(f"/study/r/{participant.token}/consent/", {"participant": participant.token, **consent_post(participant)})
    assert response.status_code == 303
    survey_services.eligibility_submit(participant=participant,
                                       answers={q.key: q.eligible_answer for q in survey_study.eligibility_questions.all()})
    data = background_post()
    assert isinstance(data["background.diagnoses"], list) and len(data["background.diagnoses"]) > 1
    response = client.post(f"/study/r/{participant.token}/background/", {"participant": participant.token, **data})
    assert response.status_code == 303
    # ... but a single-valued question on the same page may not repeat.
    participant2 = survey_services.participant_start(study=survey_study)
    survey_services.consent_give(participant=participant2, consent_version_id=survey_selectors.consent_version_current(survey_study).pk,
                                 agreed=range(len(survey_selectors.consent_version_current(survey_study).statement_list)))
    response = client.post(f"/study/r/{participant2.token}/consent/",
                           {"participant": [participant2.token, participant2.token], **consent_post(participant2)})
    assert_refused(response)


def test_repeated_fields_on_rating_withdrawal_sign_in_and_admin_forms(client, researcher, survey_study):
    study = make_study(n_items=1, n_clinicians=1, overlap=1, keys=("empathy",))
    assignment = Assignment.objects.get(study=study)
    client.force_login(assignment.clinician)
    choices = {f"choice-{k}": v for k, v in screen_answers(study).items()}
    assert_refused(client.post(f"/rate/item/{assignment.token}/", {**choices, "comment": ["a", "b"]}))
    assert not Judgment.objects.exists()
    client.logout()
    assert_refused(client.post("/study/withdraw/", {"code": ["AAAAA-22222", "BBBBB-33333"], "confirm": "yes"}))
    assert_refused(client.post("/accounts/login/", {"username": ["a", "b"], "password": "x"}))
    client.force_login(researcher)
    response = client.post("/admin/training/experiment/start/", {"name": ["one", "two"], "preset": "cpu_demo", "config": ""})
    assert_refused(response)
    from training.models import Experiment

    assert not Experiment.objects.exists()


def test_json_with_a_repeated_key_is_refused(client):
    study = make_study(n_items=1, n_clinicians=1, overlap=1, keys=("empathy",))
    assignment = Assignment.objects.get(study=study)
    client.force_login(assignment.clinician)
    body = '{"comment": "first", "comment": "second", "choices": {}}'
    response = client.post(f"/rate/api/items/{assignment.token}/draft/", body, content_type="application/json")
    assert_refused(response, json_body=True)
    assert "comment" in response.json()["detail"]


def test_admin_pages_that_declare_their_fields_are_checked(client, researcher):
    """The rating-study creation page takes several clinicians and scenarios, but one name."""
    client.force_login(researcher)
    from annotation.models import RatingStudy
    from tests.factories import ClinicianFactory

    clinicians = [ClinicianFactory(), ClinicianFactory()]
    url = "/admin/annotation/ratingstudy/add/"
    response = client.post(url, {"name": ["one", "two"], "clinicians": [str(c.pk) for c in clinicians], "overlap": "all"})
    assert_refused(response)
    # Several clinicians are fine: the form answers (here with its own errors), the guard does not.
    response = client.post(url, {"name": "one", "clinicians": [str(c.pk) for c in clinicians], "overlap": "all"})
    assert response.status_code in (200, 400) and b"takes one value" not in response.content
    assert not RatingStudy.objects.exists()


def test_participant_error_pages_keep_the_support_link(client, survey_study):
    participant = survey_services.participant_start(study=survey_study)
    response = client.post(f"/study/r/{participant.token}/closing/", {"participant": participant.token, "feedback": "a\x00"})
    assert_refused(response)
    assert b"Need support now?" in response.content
    assert b"Need support now?" not in client.get("/admin/?q=%00").content


def test_utf8_text_in_a_header_is_not_mistaken_for_a_control_character(client):
    # "café…" as UTF-8 bytes, decoded Latin-1 the way WSGI hands headers to Django: contains U+0080.
    header = "café…".encode().decode("latin-1")
    assert "\x80" in header
    assert client.get("/", HTTP_USER_AGENT=header).status_code == 200


def test_admin_add_and_change_pages_refuse_repeated_single_fields(client, researcher):
    from core.models import CriteriaSet, Criterion, Helpline

    client.force_login(researcher)
    helpline = {"region": "Testland", "name": "Listening line", "phone": "123", "text_contact": "", "url": "", "hours": "",
                "description": "", "order": "0", "active": "on"}
    response = client.post("/admin/core/helpline/add/", {**helpline, "name": ["Listening line", "Other line"]})
    assert_refused(response)
    assert not Helpline.objects.filter(region="Testland").exists()
    assert client.post("/admin/core/helpline/add/", helpline).status_code == 302
    line = Helpline.objects.get(region="Testland")
    assert_refused(client.post(f"/admin/core/helpline/{line.pk}/change/", {**helpline, "phone": ["1", "2"]}))
    line.refresh_from_db()
    assert line.phone == "123"
    # An inline formset's fields are single-valued too.
    criterion = Criterion.objects.first()
    criteria_set = {"key": "guard-set", "name": "Guard set", "description": "", "members-TOTAL_FORMS": "1",
                    "members-INITIAL_FORMS": "0", "members-MIN_NUM_FORMS": "0", "members-MAX_NUM_FORMS": "1000",
                    "members-0-criterion": [str(criterion.pk), str(criterion.pk)]}
    assert_refused(client.post("/admin/core/criteriaset/add/", criteria_set))
    assert not CriteriaSet.objects.filter(key="guard-set").exists()
    # The list page's action checkboxes still take several values.
    other = Helpline.objects.create(region="Testland", name="Second line")
    response = client.post("/admin/core/helpline/", {"action": "delete_selected", "_selected_action": [line.pk, other.pk]})
    assert response.status_code == 200 and b"Are you sure" in response.content
