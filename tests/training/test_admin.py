"""The admin pages researchers use: start form, live status, cancel/retry, report."""
import json

import pytest

from core.models import AuditEvent
from training import services
from training.models import Experiment, Job

START_URL = "/admin/training/experiment/start/"


def test_start_form_shows_preset_defaults(client, researcher):
    client.force_login(researcher)
    page = client.get(START_URL + "?preset=criteria_comparison")
    assert page.status_code == 200
    text = page.content.decode()
    assert "Start experiment" in text and "gricean_safety" in text
    assert 'value="criteria_comparison" selected' in text


def test_starting_an_experiment_from_the_form(client, researcher, published, django_capture_on_commit_callbacks):
    client.force_login(researcher)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(START_URL, {"name": "demo from form", "preset": "cpu_demo",
                                           "config": json.dumps({"base_model": "tiny", "policy_max_steps": 3})})
    experiment = Experiment.objects.get(name="demo from form")
    assert response.status_code == 302 and response["Location"].endswith(f"/admin/training/experiment/{experiment.pk}/change/")
    assert experiment.config["policy_max_steps"] == 3 and experiment.config["base_model"] == "tiny"
    assert published == [(experiment.jobs.get(key="scenarios").pk, "default")]
    assert AuditEvent.objects.filter(action="experiment.start", actor=researcher).count() == 1


@pytest.mark.parametrize(
    "config,message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        (json.dumps({"lora_rank": 0, "judge": {"backend": "oracle"}}), "lora_rank must be a whole number"),
        (json.dumps({"preset": "method_comparison"}), "differs from the preset chosen"),
    ],
)
def test_bad_config_is_refused_with_a_clear_message(client, researcher, published, config, message):
    client.force_login(researcher)
    response = client.post(START_URL, {"name": "bad one", "preset": "cpu_demo", "config": config})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Experiment.objects.exists() and not Job.objects.exists() and published == []


@pytest.mark.parametrize(
    "judge,message",
    [
        ({"backend": "http", "base_url": "http://127.0.0.1:8001/v1", "model": "judge", "modle": "x"},
         "judge: unknown key &#x27;modle&#x27;; allowed: base_url, model,"),
        ({"kind": "http", "modle": "x"}, "judge: missing required key &#x27;backend&#x27;"),
        ({"backend": "rubric", "persona_noise": "lots"}, "judge.persona_noise"),
    ],
)
def test_a_misspelt_judge_setting_is_refused_at_start_naming_it(client, researcher, published, judge, message):
    # Before, these passed Start and failed only in the label job, after generation had run.
    client.force_login(researcher)
    response = client.post(START_URL, {"name": "bad judge", "preset": "cpu_demo", "config": json.dumps({"judge": judge})})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Experiment.objects.exists() and not Job.objects.exists() and published == []


def test_clinicians_cannot_start_experiments(client, clinician):
    client.force_login(clinician)
    response = client.post(START_URL, {"name": "x", "preset": "cpu_demo", "config": ""})
    assert response.status_code == 302 and "/admin/login/" in response["Location"]
    assert not Experiment.objects.exists()


def test_status_endpoint_and_job_actions(client, researcher, published, django_capture_on_commit_callbacks):
    experiment = services.experiment_start(name="status", config={"preset": "cpu_demo"}, actor=researcher)
    client.force_login(researcher)
    status = client.get(f"/admin/training/experiment/{experiment.pk}/status.json").json()
    assert status["state"] == "running"
    jobs = {job["key"]: job for job in status["jobs"]}
    assert jobs["scenarios"]["state"] == "queued" and jobs["evaluate"]["state"] == "waiting"
    assert sorted(jobs["modpo:empathy"]["depends_on"]) == ["margins:empathy", "sft"]

    cancel = client.post(f"/admin/training/experiment/job/{jobs['generate']['id']}/cancel/", HTTP_ACCEPT="application/json")
    assert cancel.json()["outcome"] == "cancelled"
    with django_capture_on_commit_callbacks(execute=True):
        retry = client.post(f"/admin/training/experiment/job/{jobs['generate']['id']}/retry/", HTTP_ACCEPT="application/json")
    # Its prerequisite has not run yet, so it waits rather than queueing.
    assert retry.json()["outcome"] == "waiting for earlier stages"
    assert Job.objects.get(pk=jobs["generate"]["id"]).state == Job.State.WAITING
    assert client.get(f"/admin/training/experiment/job/{jobs['generate']['id']}/cancel/").status_code == 405


def test_experiment_page_and_report_render_before_results(client, researcher, published):
    experiment = services.experiment_start(name="fresh", config={"preset": "cpu_demo"}, actor=researcher)
    client.force_login(researcher)
    page = client.get(f"/admin/training/experiment/{experiment.pk}/change/")
    assert page.status_code == 200 and b'id="job-status"' in page.content and b"training/jobs.js" in page.content
    report = client.get(f"/admin/training/experiment/{experiment.pk}/report/")
    assert report.status_code == 200
    assert b'id="no-evaluation"' in report.content and b'id="no-rating"' in report.content


def test_personalised_preset_starts_from_the_survey_weight_vectors(client, researcher):
    from survey import services as survey_services
    from tests.survey.factories import StudyFactory, complete_participant

    study = StudyFactory()
    keys = ["empathy", "safety", "active_listening", "self_motivated_change", "trust_rapport", "patient_autonomy"]
    for _ in range(4):
        complete_participant(study, ranking=keys)
    survey_services.weight_vector_create(study=study, name="everyone", n_boot=10)
    client.force_login(researcher)
    page = client.get(START_URL + "?preset=personalised").content.decode()
    start = page.index("{", page.index('name="config"'))
    config = json.loads(page[start:page.index("</textarea>", start)].replace("&quot;", '"'))
    weights = config["weight_vectors"]["everyone"]
    assert max(weights, key=weights.get) == "empathy" and min(weights, key=weights.get) == "patient_autonomy"
