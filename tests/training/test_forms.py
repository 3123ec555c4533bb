"""training.forms over HTTP as a researcher: experiment settings and "Send for
rating" sizes are range-checked; a bad value is named, and nothing is created."""
import json
import re

import pytest

from annotation.models import RatingStudy
from training.models import Experiment, Job

START_URL = "/admin/training/experiment/start/"
HUGE = 10**30


def start(client, config: str):
    return client.post(START_URL, {"name": "range check", "preset": "cpu_demo", "config": config})


@pytest.mark.parametrize("config, message", [
    ({"lora_rank": HUGE}, "lora_rank must be a whole number of at least 1 and at most 4,096"),
    ({"policy_max_steps": -5}, "policy_max_steps must be a whole number of at least 1"),
    ({"personas_train": HUGE, "train_scenarios": HUGE}, "train_scenarios must be a whole number of at least 1 and at most 1,000,000"),
    ({"candidates_per_scenario": 1000}, "candidates_per_scenario must be a whole number of at least 1 and at most 64"),
    ({"seed": HUGE}, "seed must be a whole number of at least 0 and at most 4,294,967,295"),
    ({"seed": -1}, "seed must be a whole number of at least 0"),
    ({"seed": 1.5}, "seed must be a whole number"),
    ({"beta": 1e308}, "beta must be a positive number of at most 100"),
    ({"learning_rate": -0.1}, "learning_rate must be a positive number"),
    ({"modpo_weights": {"empathy": 1e300, "safety": 0.5}}, "modpo_weights: weight for &#x27;empathy&#x27; must be a number from 0 to"),
    ({"safety_floor": -1e300}, "safety_floor must be a number from"),
    ({"clinician_studies": [HUGE]}, "clinician_studies must be a list of rating study ids"),
    ({"clinician_studies": [-1]}, "clinician_studies must be a list of rating study ids"),
])
def test_out_of_range_settings_are_named_and_nothing_starts(client, researcher, published, config, message):
    client.force_login(researcher)
    response = start(client, json.dumps(config))
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Experiment.objects.exists() and not Job.objects.exists() and published == []


@pytest.mark.parametrize("text, message", [
    ('{"beta": NaN}', "NaN is not a number JSON allows"),
    ('{"beta": Infinity}', "Infinity is not a number JSON allows"),
    ('{"learning_rate": -Infinity}', "-Infinity is not a number JSON allows"),
    ('{"seed": ' + "9" * 5000 + "}", "not valid JSON"),
])
def test_numbers_json_cannot_hold_are_refused(client, researcher, published, text, message):
    client.force_login(researcher)
    response = start(client, text)
    assert response.status_code == 400 and message in response.content.decode()
    assert not Experiment.objects.exists() and published == []


def test_settings_at_their_limits_start(client, researcher, published, django_capture_on_commit_callbacks):
    client.force_login(researcher)
    with django_capture_on_commit_callbacks(execute=True):
        response = start(client, json.dumps({"base_model": "tiny", "seed": 2**32 - 1, "lora_rank": 4096}))
    assert response.status_code == 302
    assert Experiment.objects.get().config["seed"] == 2**32 - 1


@pytest.mark.parametrize("values, message", [
    ({"n_scenarios": str(HUGE)}, "Ensure this value is less than or equal to 10000."),
    ({"n_scenarios": "-3"}, "Ensure this value is greater than or equal to 1."),
    ({"overlap": str(HUGE)}, "Give a whole number from 1 to 999,999, or &#x27;all&#x27;."),
    ({"overlap": "²"}, "Give a whole number from 1 to 999,999"),
])
def test_send_for_rating_sizes_are_range_checked(client, researcher, tmp_path, values, message):
    from tests.factories import ClinicianFactory
    from tests.training.test_services import _evaluated_experiment

    experiment, _, _ = _evaluated_experiment(tmp_path)
    clinician = ClinicianFactory()
    client.force_login(researcher)
    form = {"model_key": "dpo", "n_scenarios": "2", "clinicians": [str(clinician.pk)], "overlap": "all", **values}
    response = client.post(f"/admin/training/experiment/{experiment.pk}/send-for-rating/", form)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not RatingStudy.objects.exists()


def test_send_for_rating_proposes_every_evaluated_test_scenario(client, researcher, tmp_path):
    from core.models import Response
    from tests.training.test_services import _evaluated_experiment

    experiment, _, _ = _evaluated_experiment(tmp_path)
    evaluated = Response.objects.filter(model_version__name=f"{experiment.name}/base").values("scenario_id").distinct().count()
    assert evaluated > 1
    client.force_login(researcher)
    page = client.get(f"/admin/training/experiment/{experiment.pk}/send-for-rating/").content.decode()
    assert re.search(rf'name="n_scenarios" value="{evaluated}"', page), page[:3000]
    assert f"evaluated {evaluated} test scenarios" in page
