"""`manage.py validation_pilot`: the step pilot on a finished experiment's own data and SFT adapter."""
import io
import json

import pytest
from django.core.management import CommandError, call_command

from training.models import Job

from .factories import TINY_DEMO, ExperimentFactory, JobFactory


@pytest.mark.django_db(transaction=True)
def test_the_pilot_runs_on_a_finished_experiment_and_prints_its_table(settings, tmp_path):
    settings.ATTUNE_JOB_QUEUE = "inline"
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"
    settings.MODEL_CACHE_DIR = tmp_path / "models"
    config = {k: v for k, v in TINY_DEMO.items() if k != "preset"}
    call_command("run_experiment", "tiny pilot", "--config", json.dumps(config), stdout=io.StringIO())

    out = io.StringIO()
    call_command("validation_pilot", "--from-experiment", "tiny pilot", "--steps", "2,1", "--output", str(tmp_path / "pilot"),
                 stdout=out)
    text = out.getvalue()
    assert "Win rate against base (%) [95% bootstrap interval]" in text and "Suggested policy_max_steps" in text
    pilot = json.loads((tmp_path / "pilot" / "pilot.json").read_text())
    assert [row["model"] for row in pilot["rows"]] == ["sft", "dpo-1", "dpo-2"]
    # The experiment's reward models hold out these scenarios (reward_validation_fraction 0.34 of 6: 2).
    assert len(pilot["held_out_scenarios"]) == 2
    reward = Job.objects.get(experiment__name="tiny pilot", key="reward:empathy")
    assert pilot["held_out_pairs"] == reward.result["validation_pairs"]
    assert pilot["train_pairs"] == reward.result["train_pairs"]
    # The experiment's recipe, on its own SFT adapter.
    sft = Job.objects.get(experiment__name="tiny pilot", key="sft")
    assert pilot["policy"]["base_adapter"] == sft.result["adapter_dir"]
    assert pilot["policy"]["learning_rate"] == 5e-4 and pilot["policy"]["max_length"] == 512


@pytest.mark.django_db
def test_a_missing_or_unfinished_experiment_is_refused_and_nothing_is_written(tmp_path):
    with pytest.raises(CommandError, match="no experiment named 'nope'"):
        call_command("validation_pilot", "--from-experiment", "nope", "--output", str(tmp_path / "a"))
    experiment = ExperimentFactory(name="half done")
    JobFactory(experiment=experiment, key="preferences", kind="preferences", state=Job.State.SUCCEEDED,
               result={"dataset_dir": str(tmp_path), "counts": {"empathy": 4}})
    JobFactory(experiment=experiment, key="sft", kind="sft", state=Job.State.RUNNING)
    with pytest.raises(CommandError, match="its sft job is running; the pilot needs it finished"):
        call_command("validation_pilot", "--from-experiment", "half done", "--output", str(tmp_path / "b"))
    with pytest.raises(CommandError, match="no 'safety' preference pairs"):
        call_command("validation_pilot", "--from-experiment", "half done", "--criterion", "safety",
                     "--output", str(tmp_path / "c"))
    with pytest.raises(CommandError, match="--steps must be comma-separated whole numbers"):
        call_command("validation_pilot", "--from-experiment", "half done", "--steps", "10,x", "--output", str(tmp_path / "d"))
    assert not any((tmp_path / name).exists() for name in "abcd")
