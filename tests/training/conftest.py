import pytest

from training import registry
from training.jobs.queue import inline_queue
from training.stages import StageOutcome


@pytest.fixture
def published(settings):
    """Jobs published through the inline job queue, held there instead of run:
    a list of (job id, queue) pairs, drained by the test."""
    settings.ATTUNE_JOB_QUEUE = "inline"
    with inline_queue.held() as pending:
        yield pending


# A stage kind "fake" for runtime and admin tests, registered like any other stage kind.
_FAKE_RUNNERS = {}


def fake_runner(job, run):
    return _FAKE_RUNNERS["fake"](job, run)


@pytest.fixture
def register_fake_stage(monkeypatch):
    """`register_fake_stage(run)`: jobs of kind "fake" run `run(job, run)`, found through the stage registry."""

    def register(run):
        monkeypatch.setitem(_FAKE_RUNNERS, "fake", run)
        monkeypatch.setitem(registry.STAGE_KINDS, "fake", registry.StageKind("fake", runner=f"{__name__}:fake_runner"))

    return register


@pytest.fixture
def fake_stage(register_fake_stage, tmp_path):
    calls = []

    def run(job, run):
        calls.append(job.pk)
        for step in range(1, 4):
            run.progress(step, 3, loss=1.0 / step)
            run.check_cancelled()
        path = tmp_path / f"out-{job.pk}.txt"
        path.write_text("result")
        return StageOutcome(result={"path": str(path)}, lineage={"from": "test"},
                            artifacts=[{"kind": "evaluation", "name": "out", "path": path}])

    register_fake_stage(run)
    return calls


@pytest.fixture
def scenarios_job_run(settings, tmp_path, published, register_fake_stage):
    """`scenarios_job_run(name, actor, text)`: starts a CPU-demo experiment and runs its first job ("scenarios")
    through the fake stage, which logs a line and stores `text` as the scenarios artifact; returns the job, reloaded."""
    from training import services
    from training.jobs import runtime
    from training.models import Job

    settings.ARTIFACT_ROOT = tmp_path / "artifacts"

    def start_and_run(name, actor, text):
        experiment = services.experiment_start(name=name, config={"preset": "cpu_demo"}, actor=actor)
        job = experiment.jobs.get(key="scenarios")
        Job.objects.filter(pk=job.pk).update(kind="fake")

        def write(job, run):
            run.log("wrote the scenarios")
            path = job.work_dir() / "scenarios.jsonl"
            path.write_text(text)
            return StageOutcome(lineage={"split": "bank"}, artifacts=[{"kind": "scenarios", "name": "scenarios", "path": path}])

        register_fake_stage(write)
        assert runtime.job_execute(job_id=job.pk) == Job.State.SUCCEEDED
        return Job.objects.get(pk=job.pk)

    return start_and_run
