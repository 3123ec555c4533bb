"""Every stage of the CPU-demo plan runs, in order, on tiny models, in this
process through the inline job queue."""
import json

import pytest

from core.models import ModelVersion, Response
from core.services import scenario_bank_load
from training import services
from training.jobs.queue import inline_queue
from training.models import Job

from ..factories import TINY_DEMO


@pytest.mark.django_db(transaction=True)
def test_cpu_demo_plan_runs_end_to_end_in_process(published, researcher, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    scenario_bank_load()
    experiment = services.experiment_start(name="tiny demo", config=TINY_DEMO, actor=researcher)
    ran = []
    inline_queue.run_pending(report=lambda job_id, state: ran.append((Job.objects.get(pk=job_id).key, state)))
    assert published == []
    failed = {job.key: job.error for job in experiment.jobs.exclude(state=Job.State.SUCCEEDED)}
    assert not failed, json.dumps(failed, indent=1)[:6000]
    assert [key for key, _ in ran][0] == "scenarios" and ran[-1][0] == "evaluate"
    evaluate = experiment.jobs.get(key="evaluate")
    report = json.loads(open(evaluate.result["evaluation_json"]).read())
    assert set(report["table"]) == {"base", "sft", "dpo:empathy", "dpo:safety", "merge", "joint", "modpo:empathy"}
    assert report["synthetic"] is True
    # The reward models hold out the configured share of training scenarios (0.34 of 6: 2 pairs).
    assert experiment.jobs.get(key="reward:empathy").result["validation_pairs"] == 2
    # Artifacts registered with digests; trained models registered as model versions with lineage.
    modpo = experiment.jobs.get(key="modpo:empathy")
    assert modpo.artifacts.get().sha256 and modpo.lineage["reward_models"]
    assert ModelVersion.objects.filter(name="tiny demo/modpo:empathy", kind="adapter").exists()
    # Evaluation answers are stored as responses for clinician rating.
    assert Response.objects.filter(model_version__name="tiny demo/modpo:empathy").count() == 3
    assert Response.objects.filter(model_version__name="tiny demo/base").count() == 3
