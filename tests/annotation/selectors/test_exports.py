"""Preference pairs (annotation.selectors.exports): the strict majority."""
import pytest

from annotation import selectors

pytestmark = pytest.mark.django_db


def test_preference_pairs_follow_the_strict_majority(worked_study):
    study, items, clinicians = worked_study
    pairs = selectors.preference_pairs(study)
    overall = [p for p in pairs if p["criterion"] == "overall"]
    # Item 1: majority a; item 2: majority b; item 3: no majority; item 4: majority a.
    assert [p["scenario_id"] for p in overall] == [f"s{items[i].scenario_id}" for i in (0, 1, 3)]
    assert overall[0]["chosen"] == items[0].response_a.text and overall[0]["rejected"] == items[0].response_b.text
    assert overall[1]["chosen"] == items[1].response_b.text
    assert overall[0]["prompt"] == items[0].scenario.text
    assert len([p for p in pairs if p["criterion"] == "empathy"]) == 4
