import pytest
from django.core.management import CommandError, call_command

from training.models import Experiment


def test_it_needs_the_inline_job_queue(db, settings):
    settings.ATTUNE_JOB_QUEUE = "celery"
    with pytest.raises(CommandError, match="set ATTUNE_JOB_QUEUE=inline"):
        call_command("run_experiment", "on celery", "--config", "{}")
    assert not Experiment.objects.exists()


def test_bad_configuration_is_refused_and_nothing_is_started(db, settings):
    settings.ATTUNE_JOB_QUEUE = "inline"
    with pytest.raises(CommandError, match="policy_max_steps must be a whole number"):
        call_command("run_experiment", "bad run", "--config", '{"policy_max_steps": 0}')
    with pytest.raises(CommandError, match="cannot read the configuration"):
        call_command("run_experiment", "bad json", "--config", "{oops")
    assert not Experiment.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_the_summary_prints_intervals_lengths_and_shape_checks(settings, tmp_path):
    import io
    import json

    from .factories import TINY_DEMO

    settings.ATTUNE_JOB_QUEUE = "inline"
    settings.ARTIFACT_ROOT = tmp_path
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    out = io.StringIO()
    call_command("run_experiment", "tiny summary", "--config", json.dumps({k: v for k, v in TINY_DEMO.items() if k != "preset"}),
                 stdout=out)
    text = out.getvalue()
    assert "[95% bootstrap interval]" in text and "words" in text
    base_line = next(line for line in text.splitlines() if line.strip().startswith("base "))
    assert base_line.count("[") == 3  # empathy, safety, overall: each with its interval
    assert "Shape checks" in text and "DPO (empathy) beats the base model on empathy" in text
    assert "five therapeutic criteria" in text and "NOT_APPLICABLE" in text  # no phase-2 models in this run


@pytest.mark.django_db(transaction=True)
def test_the_same_seed_gives_the_same_table(settings, tmp_path):
    """Reproducibility (issue 12): two runs of one configuration and seed give the same report numbers."""
    import io
    import json
    from pathlib import Path

    from training.models import Job

    from .factories import TINY_DEMO

    settings.ATTUNE_JOB_QUEUE = "inline"
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    config = json.dumps({k: v for k, v in TINY_DEMO.items() if k != "preset"})
    reports = []
    for name in ("first", "second"):
        settings.ARTIFACT_ROOT = tmp_path / name  # nothing of the first run is reused by the second
        call_command("run_experiment", name, "--config", config, stdout=io.StringIO())
        evaluate = Job.objects.get(experiment__name=name, kind="evaluate")
        reports.append(json.loads(Path(evaluate.result["evaluation_json"]).read_text()))
    first, second = reports
    assert first["table"] == second["table"]  # rates, intervals, ties, length-controlled rates
    assert first["pairings"] == second["pairings"] and first["lengths"] == second["lengths"]
    assert first["shape_checks"] == second["shape_checks"]
    assert first["table"]["base"]["empathy"]["interval"] is not None
