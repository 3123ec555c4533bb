"""The project's Celery app with one extra stage kind, "sleep", for worker tests that need a job
that runs for a while without training anything: `celery -A tests.training.worker_app worker`.
A sleep job waits `params["seconds"]`, reporting progress and honouring cancel every 0.1 s."""
import time

from config.celery import app  # noqa: F401 - the app celery -A finds here
from training import registry

SLEEP_KIND = "sleep"


def run_sleep(job, run):
    from training.stages import StageOutcome

    seconds = float(job.params.get("seconds", 0))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run.progress(int(seconds - (deadline - time.monotonic())), int(seconds))
        run.check_cancelled()
        time.sleep(0.1)
    return StageOutcome(result={"slept": seconds}, lineage={}, artifacts=[])


registry.STAGE_KINDS[SLEEP_KIND] = registry.StageKind(SLEEP_KIND, runner=f"{__name__}:run_sleep")
