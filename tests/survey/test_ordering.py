from survey.ordering import build_scenario_plan, shuffled


def test_shuffles_are_seeded_by_participant_and_purpose():
    items = list(range(10))
    assert shuffled(items, 5, "a") == shuffled(items, 5, "a")
    assert shuffled(items, 5, "a") != shuffled(items, 5, "b")
    assert sorted(shuffled(items, 6, "a")) == items


def test_plan_samples_scenarios_and_responses_and_rotates_criteria():
    candidates = {s: [s * 10 + i for i in range(6)] for s in range(1, 9)}
    candidates[99] = [1, 2]  # too few responses: never used
    criteria = ["a", "b", "c", "d", "e"]
    plans = [build_scenario_plan(seed=seq * 7, sequence=seq, candidates=candidates, criteria_keys=criteria, scenarios=3, responses=4)
             for seq in range(5)]
    for plan in plans:
        assert len(plan) == 3 and len({e["scenario"] for e in plan}) == 3
        assert all(e["scenario"] != 99 and len(e["responses"]) == 4 and set(e["responses"]) <= set(candidates[e["scenario"]]) for e in plan)
    covered = [e["criterion"] for plan in plans for e in plan]
    assert {c: covered.count(c) for c in criteria} == {c: 3 for c in criteria}
    again = build_scenario_plan(seed=0, sequence=0, candidates=candidates, criteria_keys=criteria, scenarios=3, responses=4)
    assert again == plans[0]
    assert build_scenario_plan(seed=1, sequence=0, candidates={}, criteria_keys=criteria, scenarios=3, responses=4) == []
