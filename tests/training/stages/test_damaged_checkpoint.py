"""A retried policy job whose newest checkpoint was damaged after it was marked
complete succeeds, resuming from the older intact one (in process, tiny models)."""
import pytest

from core.services import scenario_bank_load
from training import services
from training.jobs.queue import inline_queue
from training.models import Job

from ..factories import TINY_DEMO


class _Stop(Exception):
    pass


def run_until(key):
    def report(job_id, state):
        if Job.objects.get(pk=job_id).key == key:
            raise _Stop
    with pytest.raises(_Stop):
        inline_queue.run_pending(report=report)
    inline_queue.pending.clear()


@pytest.mark.django_db(transaction=True)
def test_retry_after_a_damaged_checkpoint_resumes_from_the_intact_one(published, researcher, settings, tmp_path):
    settings.ARTIFACT_ROOT = tmp_path
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    scenario_bank_load()
    config = {**TINY_DEMO, "policy_max_steps": 4, "policy_save_steps": 2}
    experiment = services.experiment_start(name="damaged checkpoint", config=config, actor=researcher)
    run_until("sft")
    sft = experiment.jobs.get(key="sft")
    assert sft.state == Job.State.SUCCEEDED, sft.error
    checkpoints = sft.work_dir() / "policy" / "checkpoints"
    adapter = checkpoints / "checkpoint-4" / "adapter_model.safetensors"
    adapter.write_bytes(adapter.read_bytes()[:100])  # e.g. the disk filled while a copy was written
    Job.objects.filter(pk=sft.pk).update(state=Job.State.FAILED, error="worker lost")

    assert services.job_retry(job=sft, actor=researcher) == "queued"
    run_until("sft")
    sft.refresh_from_db()
    assert sft.state == Job.State.SUCCEEDED, sft.error
    assert sft.result["resumed_from"].endswith("checkpoint-2")
    assert sft.result["metrics"]["global_step"] == 4
    assert "damaged checkpoint set aside as checkpoint-4.damaged-" in sft.log_tail
    assert "adapter_model.safetensors" in sft.log_tail
