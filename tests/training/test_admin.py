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


# --- The job page ----------------------------------------------------------------

@pytest.fixture
def finished_job(db, researcher, scenarios_job_run):
    """A started experiment whose first job ran (through the fake stage) and left a log, an artifact and an attempt."""
    return scenarios_job_run("job page", researcher, "x" * 1500)


def test_the_job_page_is_a_read_only_view_of_the_job(client, researcher, finished_job):
    client.force_login(researcher)
    response = client.get(f"/admin/training/job/{finished_job.pk}/change/")
    assert response.status_code == 200
    text = response.content.decode()
    assert "<title>Job scenarios of job page" in text and "<h1>Job scenarios of job page</h1>" in text
    assert 'name="_save"' not in text and 'name="_continue"' not in text and "Change job" not in text
    artifact = finished_job.artifacts.get()
    assert artifact.sha256 in text and artifact.path in text and "1.5\xa0KB" in text  # path, size, sha256
    assert "wrote the scenarios" in text  # the log tail, read from job.log
    assert 'id="job-attempts"' in text and "Succeeded" in text
    generate = finished_job.experiment.jobs.get(key="generate")
    assert f'href="/admin/training/job/{generate.pk}/change/"' in text  # lineage: the job that consumes its output
    assert "split" in text and "bank" in text
    assert 'id="job-retry"' not in text and 'id="job-cancel"' not in text  # neither applies to a succeeded job


def test_the_job_status_endpoint_and_experiment_status_link_to_the_job_page(client, researcher, finished_job):
    client.force_login(researcher)
    status = client.get(f"/admin/training/job/{finished_job.pk}/status.json").json()
    assert status["state"] == "succeeded" and "wrote the scenarios" in status["log_tail"] and status["eta_seconds"] is None
    experiment_status = client.get(f"/admin/training/experiment/{finished_job.experiment_id}/status.json").json()
    urls = {job["key"]: job["url"] for job in experiment_status["jobs"]}
    assert urls["scenarios"] == f"/admin/training/job/{finished_job.pk}/change/"
    assert client.get(urls["generate"]).status_code == 200


def test_the_log_tail_comes_from_the_log_file_even_past_the_last_heartbeat(client, researcher, finished_job):
    with open(finished_job.work_dir() / "job.log", "a") as log:
        log.write("2026-01-01 00:00:00 a line written just before a kill\n")
    client.force_login(researcher)
    assert "a line written just before a kill" in client.get(f"/admin/training/job/{finished_job.pk}/status.json").json()["log_tail"]
    assert "a line written just before a kill" not in Job.objects.get(pk=finished_job.pk).log_tail


def test_cancel_and_retry_from_the_job_page_are_audited_and_refused_with_a_message_when_they_do_not_apply(
        client, researcher, finished_job, django_capture_on_commit_callbacks):
    client.force_login(researcher)
    refused = client.post(f"/admin/training/experiment/job/{finished_job.pk}/cancel/", {"return_to": "job"}, follow=True)
    assert refused.redirect_chain[-1][0] == f"/admin/training/job/{finished_job.pk}/change/"
    assert "Job scenarios: not cancelled: the job has already succeeded" in refused.content.decode()
    assert not AuditEvent.objects.filter(action="job.cancel").exists()
    assert client.post(f"/admin/training/experiment/job/{finished_job.pk}/retry/", HTTP_ACCEPT="application/json").status_code == 409

    waiting = finished_job.experiment.jobs.get(key="generate")
    page = client.get(f"/admin/training/job/{waiting.pk}/change/").content.decode()
    assert 'id="job-cancel"' in page and "csrfmiddlewaretoken" in page
    cancelled = client.post(f"/admin/training/experiment/job/{waiting.pk}/cancel/", {"return_to": "job"}, follow=True)
    assert "Job generate: cancelled" in cancelled.content.decode()
    assert AuditEvent.objects.filter(action="job.cancel", target_id=str(waiting.pk), actor=researcher).exists()
    assert 'id="job-retry"' in cancelled.content.decode()
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/admin/training/experiment/job/{waiting.pk}/retry/", {"return_to": "job"})
    assert AuditEvent.objects.filter(action="job.retry", target_id=str(waiting.pk)).exists()
    assert Job.objects.get(pk=waiting.pk).state == Job.State.QUEUED


def test_clinicians_cannot_see_job_pages(client, clinician, finished_job):
    client.force_login(clinician)
    assert client.get(f"/admin/training/job/{finished_job.pk}/change/").status_code in (302, 403)
    assert client.get(f"/admin/training/job/{finished_job.pk}/status.json").status_code in (302, 403)


def test_a_job_page_that_does_not_exist_is_not_found(client, researcher, db):
    client.force_login(researcher)
    assert client.get("/admin/training/job/999999/change/").status_code == 404


# --- The experiment's settings ---------------------------------------------------

def test_the_experiment_settings_are_a_labelled_table_with_defaults_dimmed(client, researcher, published):
    experiment = services.experiment_start(name="settings", config={"preset": "cpu_demo", "policy_max_steps": 3, "lora_rank": 4},
                                           actor=researcher)
    client.force_login(researcher)
    text = client.get(f"/admin/training/experiment/{experiment.pk}/change/").content.decode()
    assert 'id="experiment-settings"' in text
    assert '<tr class="is-changed" data-setting="policy_max_steps">' in text and "Policy training steps" in text
    assert '<tr class="is-changed" data-setting="lora_rank">' in text and "LoRA rank" in text
    assert '<tr class="is-default" data-setting="seed">' in text and "Random seed" in text
    assert "MODPO weights" in text and "empathy: 0.5" in text and "safety: 0.5" in text
    assert '"policy_max_steps":' not in text  # no raw JSON blob
    preset_row = text.split('data-setting="preset">', 1)[1].split("</tr>", 1)[0]
    assert "CPU demo (packaged models, rubric judge)" in preset_row and "cpu_demo" not in preset_row


def test_a_server_that_is_down_or_lacks_the_model_is_refused_at_start(client, researcher, published):
    from training.pipeline.judges.loopback import LoopbackChatServer

    client.force_login(researcher)
    with LoopbackChatServer(models=("smol",)) as server:
        response = client.post(START_URL, {"name": "served", "preset": "cpu_demo", "config": json.dumps(
            {"servers": {"base": {"base_url": server.url, "model": "mistral"}}})})
        assert response.status_code == 400
        assert "does not list the model &#x27;mistral&#x27; (it lists: smol)" in response.content.decode()
        url = server.url
    response = client.post(START_URL, {"name": "served", "preset": "cpu_demo", "config": json.dumps(
        {"servers": {"base": {"base_url": url, "model": "smol"}}})})
    assert response.status_code == 400 and "cannot be reached" in response.content.decode()
    assert not Experiment.objects.exists() and not Job.objects.exists() and published == []


def test_qlora_is_refused_at_start_on_a_worker_without_cuda(client, researcher, published):
    client.force_login(researcher)
    response = client.post(START_URL, {"name": "qlora", "preset": "cpu_demo",
                                       "config": json.dumps({"policy_quantization": "nf4"})})
    assert response.status_code == 400
    text = response.content.decode()
    assert "policy_quantization &#x27;nf4&#x27; cannot run: 4-bit QLoRA needs" in text
    assert not Experiment.objects.exists() and published == []
