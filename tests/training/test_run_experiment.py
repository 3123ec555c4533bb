import pytest
from django.core.management import CommandError, call_command

from training.models import Experiment


def test_bad_configuration_is_refused_and_nothing_is_started(db):
    with pytest.raises(CommandError, match="policy_max_steps must be a whole number"):
        call_command("run_experiment", "bad run", "--config", '{"policy_max_steps": 0}')
    with pytest.raises(CommandError, match="cannot read the configuration"):
        call_command("run_experiment", "bad json", "--config", "{oops")
    assert not Experiment.objects.exists()
