"""Participant reads (survey.selectors.participants): the scenario plan and its rotation, a ranking screen."""
import pytest

from core.models import Response
from survey import selectors, services
from survey.models import ResponseRanking
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


def test_a_ranking_screen_has_the_texts_in_shown_order_and_the_saved_ranking(study, django_assert_num_queries):
    participant = complete_participant(study, skip_scenarios=True)
    plan = participant.scenario_plan
    with django_assert_num_queries(2):  # the responses with their scenario's text; the saved ranking
        screen = selectors.response_screen(participant, 2)
    entry = plan[1]
    assert [r.pk for r in screen["responses"]] == entry["responses"]  # the plan's shown order, not the table's
    assert [r.text for r in screen["responses"]] == [Response.objects.get(pk=pk).text for pk in entry["responses"]]
    assert screen["scenario"].text == Response.objects.get(pk=entry["responses"][0]).scenario.text
    assert (screen["number"], screen["position"], screen["criterion"].key) == (2, 1, entry["criterion"])
    assert screen["saved_ranking"] == []  # skipped
    ranked = complete_participant(study)
    row = ResponseRanking.objects.get(participant=ranked, position=0)
    assert selectors.response_screen(ranked, 1)["saved_ranking"] == row.ranking == ranked.scenario_plan[0]["responses"]
    assert selectors.response_screen(ranked, 4) is None and selectors.response_screen(ranked, 0) is None
