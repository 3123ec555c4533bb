"""The JSON API: clinicians in screen terms and tokens only; researchers get
results and import judge decisions; bad requests get a clear 4xx."""
import json

import pytest
from django.urls import reverse

from annotation.models import Assignment, JudgeDecision, Judgment
from annotation.services import rating_study_close
from tests.factories import ClinicianFactory, ResearcherFactory

from .factories import assert_blind, identifying_strings, make_study, screen_answers

pytestmark = pytest.mark.django_db


def post_json(client, url, data):
    return client.post(url, json.dumps(data), content_type="application/json")


@pytest.fixture
def study():
    return make_study(n_items=3, n_clinicians=2, overlap=2)


def test_clinician_api_round_trip_is_blind(client, study):
    clinician = study.memberships.first().clinician
    secrets = identifying_strings(study.source_a, study.source_b) + [study.name]
    client.force_login(clinician)
    queue = client.get(reverse("annotation:api-queue"))
    assert queue.status_code == 200
    entry = queue.json()["studies"][0]
    assert (entry["done"], entry["total"]) == (0, 3)
    token = entry["next_item"]
    item = client.get(reverse("annotation:api-item", kwargs={"token": token}))
    payload = item.json()
    assert payload["left"]["label"] == "Response A" and payload["post"]
    assert [d["key"] for d in payload["dimensions"]] == ["empathy", "safety", "overall"]
    for body in (queue.content.decode(), item.content.decode()):
        assert_blind(body, [s for s in secrets if not s.isdigit()], "the API")
    assert set(payload) == {"item", "position", "progress", "open", "post", "left", "right", "dimensions",
                            "unsafe_left", "unsafe_right", "comment", "done"}

    draft = post_json(client, reverse("annotation:api-draft", kwargs={"token": token}),
                      {"choices": {"empathy": "left"}, "comment": "thinking", "time_on_task_ms": 1200})
    assert draft.status_code == 200
    assert client.get(reverse("annotation:api-item", kwargs={"token": token})).json()["dimensions"][0]["choice"] == "left"

    saved = post_json(client, reverse("annotation:api-judgment", kwargs={"token": token}),
                      {"choices": screen_answers(study, "tie"), "unsafe_right": True})
    assert saved.status_code == 200
    assert saved.json()["progress"] == {"done": 1, "total": 3} and saved.json()["next_item"] not in (None, token)
    undo = client.post(reverse("annotation:api-undo", kwargs={"token": study.token}))
    assert undo.status_code == 200 and undo.json() == {"item": token}
    assert not Judgment.objects.exists()


@pytest.mark.parametrize("case,status", [
    ("unknown_dimension", 400), ("bad_value", 400), ("malformed", 400), ("not_yours", 403), ("closed", 409), ("unknown", 404),
])
def test_bad_api_posts_change_nothing(client, study, case, status):
    owner = study.memberships.first().clinician
    assignment = Assignment.objects.filter(study=study, clinician=owner).first()
    token = assignment.token
    body = {"choices": screen_answers(study)}
    client.force_login(owner)
    if case == "unknown_dimension":
        body["choices"]["charisma"] = "left"
    elif case == "bad_value":
        body["choices"]["empathy"] = "a"
    elif case == "malformed":
        body = {"choices": ["left"], "unsafe_left": "perhaps"}
    elif case == "not_yours":
        client.force_login(ClinicianFactory())
    elif case == "closed":
        rating_study_close(study=study, actor=None)
    elif case == "unknown":
        token = "no-such-item"
    for name in ("annotation:api-draft", "annotation:api-judgment"):
        response = post_json(client, reverse(name, kwargs={"token": token}), body)
        assert response.status_code == status, response.content
        assert response.json()["detail"]
    assignment.refresh_from_db()
    assert assignment.draft == {} and not Judgment.objects.exists()


def test_researcher_api(client, study):
    clinician = study.memberships.first().clinician
    client.force_login(clinician)
    results_url = reverse("annotation:api-results", kwargs={"pk": study.pk})
    import_url = reverse("annotation:api-judge-import", kwargs={"pk": study.pk})
    assert client.get(results_url).status_code == 403
    assert post_json(client, import_url, {"judge_name": "j", "rows": [{"x": 1}]}).status_code == 403
    client.force_login(ResearcherFactory())
    results = client.get(results_url)
    assert results.status_code == 200 and results.json()["study"]["source_a"]["name"] == study.source_a.name
    item = study.items.first()
    bad = post_json(client, import_url, {"judge_name": "j", "rows": [{"item": item.token, "criterion": "charm", "choice": "tie"}]})
    assert bad.status_code == 400 and "unknown dimension" in " ".join(bad.json()["errors"])
    assert post_json(client, import_url, {"rows": []}).status_code == 400
    assert not JudgeDecision.objects.exists()
    good = post_json(client, import_url, {"judge_name": "j", "rows": [{"item": item.token, "criterion": "overall", "choice": "tie"}]})
    assert good.status_code == 201 and good.json()["imported"] == 1


@pytest.mark.parametrize("state", ["closed", "draft"])
def test_a_study_that_is_not_open_shows_none_of_its_content(client, state):
    from annotation.services import judgment_submit

    study = make_study(n_items=2, n_clinicians=1, overlap=1, open_now=(state == "closed"))
    clinician = study.memberships.get().clinician
    assignments = list(Assignment.objects.filter(study=study).select_related("item__scenario", "item__response_a",
                                                                            "item__response_b"))
    if state == "closed":
        judgment_submit(assignment=assignments[0], clinician=clinician, choices=screen_answers(study, "left"),
                        comment="a distinctive remark 4417")
        rating_study_close(study=study, actor=None)
    content = [text for a in assignments for text in (a.item.scenario.text, a.item.response_a.text, a.item.response_b.text)]
    content.append("a distinctive remark 4417")
    client.force_login(clinician)
    for assignment in assignments:
        for name in ("annotation:api-item", "annotation:item"):
            response = client.get(reverse(name, kwargs={"token": assignment.token}))
            assert response.status_code == 409, name
            assert_blind(response.content.decode(), content, name)
    for url in (reverse("annotation:queue"), reverse("annotation:api-queue")):
        assert_blind(client.get(url).content.decode(), content, url)


def test_clinicians_see_both_sources_normalised_the_same_way(client):
    from annotation.exceptions import InvalidTransition
    from annotation.models import RatingItem
    from annotation.services import rating_item_screen_review, rating_study_open
    from core.models import Response

    study = make_study(n_items=1, n_clinicians=1, overlap=1, open_now=False)
    item = study.items.get()
    Response.objects.filter(pk=item.response_a_id).update(text="<|im_start|>assistant\nThat sounds hard.<|im_end|>\n\n\n\n")
    Response.objects.filter(pk=item.response_b_id).update(text="  Try resting.\n\n\n\nThen talk to someone.</s>  ")
    # Edited after creation: opening screens again, finds the debris and refuses until it is reviewed.
    with pytest.raises(InvalidTransition, match="nobody has reviewed"):
        rating_study_open(study=study, actor=None)
    rating_item_screen_review(item=RatingItem.objects.get(pk=item.pk), decision="keep", actor=None)
    rating_study_open(study=study, actor=None)
    assignment = Assignment.objects.get(study=study)
    client.force_login(assignment.clinician)
    payload = client.get(reverse("annotation:api-item", kwargs={"token": assignment.token})).json()
    texts = {payload["left"]["text"], payload["right"]["text"]}
    assert texts == {"That sounds hard.", "Try resting.\n\nThen talk to someone."}
    page = client.get(reverse("annotation:item", kwargs={"token": assignment.token})).content.decode()
    assert "im_end" not in page and "im_start" not in page and "&lt;/s&gt;" not in page
    assert "That sounds hard." in page
