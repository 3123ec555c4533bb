"""Participant reads (survey.selectors.participants): the scenario plan and its rotation."""
import pytest

from survey import selectors, services
from tests.survey.factories import complete_participant, keys

pytestmark = pytest.mark.django_db


def test_criteria_rotate_so_every_criterion_is_covered(study):
    people = [complete_participant(study) for _ in range(4)]
    counts = {}
    for p in people:
        for entry in p.scenario_plan:
            counts[entry["criterion"]] = counts.get(entry["criterion"], 0) + 1
    # 4 people x 3 screens over 6 criteria: every criterion twice.
    assert counts == {k: 2 for k in keys()}


def test_scenario_plan_is_reproducible_and_fixed_once(study):
    participant = services.participant_start(study=study)
    assert selectors.scenario_plan_compute(participant) == selectors.scenario_plan_compute(participant)
    other = services.participant_start(study=study)
    participant.seed, other.seed = 1, 2
    assert selectors.scenario_plan_compute(participant) != selectors.scenario_plan_compute(other)
