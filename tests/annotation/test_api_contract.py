"""The API tells the truth about itself: every status an operation answers with is in the OpenAPI
schema with the one error body; bodies are accepted as JSON only, with the schema's types (no 0 for a
boolean); the schema states the constraints the server enforces. Beside the schemathesis run
(test_api_schemathesis.py), hand-picked requests: each operation is called as anonymous, clinician and
researcher with good, malformed and wrongly typed bodies."""
import json

import pytest
from django.urls import reverse
from drf_spectacular.generators import SchemaGenerator

from annotation.models import JudgeDecision, Judgment
from tests.factories import ResearcherFactory

from .factories import make_study, screen_answers

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def schema():
    return SchemaGenerator().get_schema(request=None, public=True)


@pytest.fixture
def study():
    return make_study(n_items=2, n_clinicians=1, overlap=1)


def operation(schema, path, method):
    """The schema's operation for a concrete URL (path parameters matched by position)."""
    parts = path.strip("/").split("/")
    for template, operations in schema["paths"].items():
        tparts = template.strip("/").split("/")
        if len(tparts) == len(parts) and all(t == p or t.startswith("{") for t, p in zip(tparts, parts)):
            return operations[method.lower()]
    raise AssertionError(f"{method} {path} is not in the schema")


def send(client, method, url, body=None, content_type="application/json"):
    if method == "GET":
        return client.get(url)
    data = json.dumps(body) if content_type == "application/json" and not isinstance(body, str) else body
    return client.generic(method, url, data or "", content_type=content_type)


def requests_for(study):
    token = study.items.first().assignments.first().token
    item = study.items.first()
    answers = screen_answers(study, "left")
    urls = {
        "queue": reverse("annotation:api-queue"),
        "item": reverse("annotation:api-item", kwargs={"token": token}),
        "missing_item": reverse("annotation:api-item", kwargs={"token": "nope"}),
        "draft": reverse("annotation:api-draft", kwargs={"token": token}),
        "judgment": reverse("annotation:api-judgment", kwargs={"token": token}),
        "undo": reverse("annotation:api-undo", kwargs={"token": study.token}),
        "results": reverse("annotation:api-results", kwargs={"pk": study.pk}),
        "missing_results": reverse("annotation:api-results", kwargs={"pk": 999999}),
        "import": reverse("annotation:api-judge-import", kwargs={"pk": study.pk}),
    }
    judge_row = {"item": item.token, "criterion": "overall", "choice": "tie"}
    return [
        ("GET", urls["queue"], None, "application/json"),
        ("GET", urls["item"], None, "application/json"),
        ("GET", urls["missing_item"], None, "application/json"),
        ("POST", urls["draft"], {"choices": {"empathy": "left"}, "time_on_task_ms": None}, "application/json"),
        ("PUT", urls["draft"], {"unsafe_left": 0}, "application/json"),
        ("POST", urls["draft"], "unsafe_left=0", "application/x-www-form-urlencoded"),
        ("POST", urls["draft"], '{"choices": ', "application/json"),
        ("POST", urls["judgment"], {"choices": answers, "unsafe_right": "yes"}, "application/json"),
        ("POST", urls["judgment"], {"choices": {"empathy": "sideways"}}, "application/json"),
        ("POST", urls["judgment"], {"choices": answers}, "application/json"),
        ("POST", urls["judgment"], {"choices": answers}, "text/plain"),
        ("POST", urls["undo"], None, "application/json"),
        ("POST", urls["undo"], None, "application/json"),  # nothing left to undo: 409
        ("GET", urls["results"], None, "application/json"),
        ("GET", urls["missing_results"], None, "application/json"),
        ("POST", urls["import"], {"judge_name": "", "rows": []}, "application/json"),
        ("POST", urls["import"], {"judge_name": "j", "rows": [judge_row], "skip_unmatched": 0}, "application/json"),
        ("POST", urls["import"], "judge_name=j", "multipart/form-data; boundary=x"),
        ("POST", urls["import"], "judge_name=j&skip_unmatched=0", "application/x-www-form-urlencoded"),
        ("POST", urls["import"], {"judge_name": "j", "rows": [judge_row]}, "application/json"),
    ]


@pytest.mark.parametrize("role", ["anonymous", "clinician", "researcher"])
def test_every_status_an_operation_answers_is_in_the_schema(client, schema, study, role):
    if role == "clinician":
        client.force_login(study.memberships.first().clinician)
    elif role == "researcher":
        client.force_login(ResearcherFactory())
    seen = set()
    for method, url, body, content_type in requests_for(study):
        response = send(client, method, url, body, content_type)
        documented = operation(schema, url, method)["responses"]
        assert str(response.status_code) in documented, (role, method, url, body, response.status_code, response.content)
        seen.add(response.status_code)
        if response.status_code >= 400:
            body_json = response.json()
            assert set(body_json) == {"detail", "errors"} and body_json["detail"], (method, url, body_json)
            assert "invalid literal" not in response.content.decode()
    expected = {"anonymous": {403}, "clinician": {200, 400, 403, 404, 409, 415},
                "researcher": {200, 201, 400, 403, 404, 415}}[role]
    assert expected <= seen, (role, seen)


def test_error_responses_are_documented_with_the_error_body(schema):
    for path, operations in schema["paths"].items():
        for method, op in operations.items():
            responses = op["responses"]
            for code in ("400", "403", "429"):
                assert code in responses, (method, path, code)
                ref = responses[code]["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/Error"), (method, path, code)
            assert "401" not in responses  # session authentication answers 403, and says so
            if "requestBody" in op:
                assert set(op["requestBody"]["content"]) == {"application/json"}, (method, path)
                assert "415" in responses, (method, path)
    assert "WWW-Authenticate" in schema["paths"]["/rate/api/queue/"]["get"]["responses"]["403"]["description"]


def test_the_schema_states_the_constraints_the_server_enforces(schema):
    components = schema["components"]["schemas"]
    judge_import = components["JudgeImport"]["properties"]
    assert judge_import["rows"]["minItems"] == 1
    assert judge_import["judge_name"]["minLength"] == 1 and judge_import["judge_name"]["maxLength"] == 200
    assert judge_import["skip_unmatched"]["type"] == "boolean"
    answers = components["Answers"]["properties"]
    assert answers["time_on_task_ms"]["minimum"] == 0 and "null" in answers["time_on_task_ms"]["type"]
    assert answers["comment"]["maxLength"] == 5000
    assert "left" in json.dumps(answers["choices"]) and "tie" in json.dumps(answers["choices"])


def test_extra_fields_are_allowed_but_guarded_like_the_rest(schema, client, study):
    # The server ignores a field a body does not declare, but the input guard still refuses a control
    # character in it (found by schemathesis: a nested key in an extra field); the schema says both.
    answers = schema["components"]["schemas"]["Answers"]
    assert answers["additionalProperties"] == {"$ref": "#/components/schemas/GuardedJSON"}
    assert answers["propertyNames"]["pattern"].startswith("^[^\\u0000")
    assignment = study.items.first().assignments.first()
    client.force_login(assignment.clinician)
    url = reverse("annotation:api-draft", args=[assignment.token])
    ignored = client.put(url, data=json.dumps({"extra": {"nested": [1, "two"]}}), content_type="application/json")
    refused = client.put(url, data=json.dumps({"extra": {"bad\u009akey": 1}}), content_type="application/json")
    assert ignored.status_code == 200
    assert refused.status_code == 400 and "control character" in refused.json()["detail"]


def test_a_form_body_is_refused_and_a_boolean_must_be_a_boolean(client, study):
    client.force_login(study.memberships.first().clinician)
    token = study.items.first().assignments.first().token
    url = reverse("annotation:api-judgment", kwargs={"token": token})
    answers = screen_answers(study, "left")
    form = client.post(url, {"choices": "x", "unsafe_left": "0"})
    assert form.status_code == 415 and form.json()["errors"] == [], form.content
    for value in (0, 1, "true", "0", None):
        refused = client.post(url, json.dumps({"choices": answers, "unsafe_left": value}), content_type="application/json")
        assert refused.status_code == 400 and "unsafe_left" in " ".join(refused.json()["errors"]), value
    assert not Judgment.objects.exists()
    accepted = client.post(url, json.dumps({"choices": answers, "unsafe_left": False, "time_on_task_ms": None}),
                           content_type="application/json")
    assert accepted.status_code == 200


def test_judge_import_errors_are_written_for_people(client, study):
    client.force_login(ResearcherFactory())
    url = reverse("annotation:api-judge-import", kwargs={"pk": study.pk})
    rows = [{"scenario_id": "s²", "criterion": "overall", "choice": "tie"}]
    response = client.post(url, json.dumps({"judge_name": "j", "rows": rows}), content_type="application/json")
    assert response.status_code == 400
    text = " ".join(response.json()["errors"])
    assert "invalid literal" not in text and "is not in this study" in text
    assert not JudgeDecision.objects.exists()


def test_too_many_requests_get_the_documented_429(client, schema, study, monkeypatch):
    from core import throttling

    monkeypatch.setattr(throttling.UserRateThrottle, "rate", "3/min", raising=False)
    client.force_login(study.memberships.first().clinician)
    url = reverse("annotation:api-queue")
    statuses = [client.get(url).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    refused = client.get(url)
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    assert set(refused.json()) == {"detail", "errors"}
    assert "429" in operation(schema, url, "GET")["responses"]
