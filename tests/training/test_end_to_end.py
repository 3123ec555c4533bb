"""The whole loop on real PostgreSQL, Redis and a real Celery worker process:
a researcher posts the CPU-demo form (tiny models), every job finishes, the
report shows the study table and plot, the best model goes to clinicians, they
rate through the real pages, and the report then shows their verdict."""
import json
import re
import time

import pytest

from annotation.models import Assignment, RatingStudy
from core.services import scenario_bank_load
from tests.conftest import WorkerProcess
from tests.factories import ClinicianFactory
from training.models import Experiment, Job

from .factories import TINY_DEMO

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True)]


def rate_everything(client, clinician, choose):
    """A clinician works through their queue via the real views, until it is empty."""
    client.force_login(clinician)
    queue = client.get("/rate/")
    assert queue.status_code == 200
    rated = 0
    for assignment in Assignment.objects.filter(clinician=clinician).order_by("position"):
        page = client.get(f"/rate/item/{assignment.token}/")
        assert page.status_code == 200
        dimensions = sorted(set(re.findall(r'name="choice-([a-z_]+)"', page.content.decode())))
        assert "overall" in dimensions and "empathy" in dimensions
        form = {f"choice-{d}": choose(assignment, d) for d in dimensions}
        form["comment"] = ""
        response = client.post(f"/rate/item/{assignment.token}/", form)
        assert response.status_code == 302, response.content.decode()[:2000]
        rated += 1
    client.logout()
    return rated


def test_cpu_demo_from_the_admin_to_clinicians_and_back(client, researcher, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    env = {"ATTUNE_ARTIFACT_ROOT": str(settings.ARTIFACT_ROOT), "ATTUNE_MODEL_CACHE": str(settings.MODEL_CACHE_DIR)}
    scenario_bank_load()
    clinicians = [ClinicianFactory() for _ in range(3)]

    worker = WorkerProcess(extra_env=env, name="e2e").start()
    try:
        client.force_login(researcher)
        response = client.post("/admin/training/experiment/start/", {
            "name": "e2e demo", "preset": "cpu_demo", "config": json.dumps({k: v for k, v in TINY_DEMO.items() if k != "preset"}),
        })
        assert response.status_code == 302, response.content.decode()[:3000]
        experiment = Experiment.objects.get(name="e2e demo")
        deadline = time.time() + 480
        while time.time() < deadline:
            states = dict(experiment.jobs.values_list("key", "state"))
            if all(state in Job.FINISHED for state in states.values()):
                break
            assert worker.process.poll() is None, worker.log()[-4000:]
            time.sleep(1)
        failures = {j.key: j.error[:1500] for j in experiment.jobs.exclude(state=Job.State.SUCCEEDED)}
        assert not failures, json.dumps(failures, indent=1) + worker.log()[-3000:]
    finally:
        worker.stop()

    status = client.get(f"/admin/training/experiment/{experiment.pk}/status.json").json()
    assert status["state"] == "succeeded" and all(j["percent"] == 100.0 for j in status["jobs"])
    report = client.get(f"/admin/training/experiment/{experiment.pk}/report/").content.decode()
    table = report[report.index('id="win-rate-table"'):report.index("</table>", report.index('id="win-rate-table"'))]
    for model in ("base", "sft", "dpo:empathy", "dpo:safety", "merge", "joint", "modpo:empathy"):
        assert f'<th scope="row">{model}</th>' in table
    assert "<svg" in report and 'id="reward-models-table"' in report
    assert "synthetic" in report  # the rubric judge is labelled as such

    # Send MODPO back to the clinicians, all three rating every item.
    form = {"model_key": "modpo:empathy", "n_scenarios": 3, "clinicians": [c.pk for c in clinicians], "overlap": "all"}
    response = client.post(f"/admin/training/experiment/{experiment.pk}/send-for-rating/", form)
    assert response.status_code == 302, response.content.decode()[:3000]
    study = RatingStudy.objects.get()
    if not study.is_open:
        # Tiny random models can write debris the self-identification screen flags: keep each, then open.
        assert response["Location"] == f"/admin/annotation/ratingstudy/{study.pk}/change/"
        for item in study.items.filter(screen="pending"):
            client.post(f"/admin/annotation/ratingstudy/{study.pk}/screen/{item.pk}/keep/")
        client.post(f"/admin/annotation/ratingstudy/{study.pk}/state/open/")
        study.refresh_from_db()
    assert study.is_open and study.items.count() == 3
    assert study.judge_decisions.exists()  # the evaluation judge, for judge-vs-clinician agreement
    client.logout()

    # Two clinicians prefer source A (a coin made it MODPO or the base) everywhere; the third calls everything a tie.
    def prefer_source_a(assignment, dimension):
        return "left" if assignment.left_is_a else "right"

    assert rate_everything(client, clinicians[0], prefer_source_a) == 3
    assert rate_everything(client, clinicians[1], prefer_source_a) == 3
    assert rate_everything(client, clinicians[2], lambda a, d: "tie") == 3

    client.force_login(researcher)
    report = client.get(f"/admin/training/experiment/{experiment.pk}/report/").content.decode()
    assert 'id="no-rating"' not in report
    assert "Agreement between clinicians" in report
    assert "Fleiss" in report and "Krippendorff" in report
    assert "Automatic judges against clinicians" in report and "No judge decisions imported" not in report
    # Win share for source A on "overall": 2 of 3 clinicians on every item.
    assert "66.7" in report
