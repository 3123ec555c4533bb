"""Symmetric weighted voting, tie rules, sources and the versioned dataset, checked by hand."""
from __future__ import annotations

import json

import pytest

from training.pipeline.io import PipelineConfigError
from training.pipeline.preferences import (
    PreferenceConfig,
    PairChoice,
    build_preference_dataset,
    pairs_from_clinicians,
    pairs_from_survey,
    rank_position_scores,
    select_pair,
    tally_votes,
)


def test_position_scores():
    assert rank_position_scores(5) == [10.0, 5.0, 0.0, -5.0, -10.0]
    assert rank_position_scores(4) == pytest.approx([10.0, 10 / 3, -10 / 3, -10.0])
    assert rank_position_scores(2) == [10.0, -10.0]
    assert sum(rank_position_scores(7)) == pytest.approx(0.0)


def test_k5_hand_checked():
    rankings = [[0, 1, 2, 3, 4], [1, 0, 2, 4, 3], [0, 2, 1, 3, 4]]
    tally = tally_votes(rankings, 5)
    # 0: 10+5+10 = 25; 1: 5+10+0 = 15; 2: 0+0+5 = 5; 3: -5-10-5 = -20; 4: -10-5-10 = -25
    assert tally.totals == [25.0, 15.0, 5.0, -20.0, -25.0]
    assert tally.firsts == [2, 1, 0, 0, 0] and tally.lasts == [0, 0, 0, 1, 2]
    assert select_pair(tally) == PairChoice(0, 4, 25 / 3, -25 / 3)


def test_k4_hand_checked():
    rankings = [[3, 2, 1, 0], [3, 1, 2, 0]]
    tally = tally_votes(rankings, 4)
    assert tally.totals == pytest.approx([-20.0, 0.0, 0.0, 20.0])
    choice = select_pair(tally)
    assert (choice.chosen, choice.rejected) == (3, 0)
    assert choice.chosen_score == pytest.approx(10.0)


def test_top_tie_broken_by_first_places():
    # K=4. 0: 10+10-10/3 = 16.67 with two firsts; 1: 10/3+10/3+10 = 16.67 with one first.
    rankings = [[0, 1, 2, 3], [0, 1, 2, 3], [1, 2, 0, 3]]
    tally = tally_votes(rankings, 4)
    assert tally.totals[0] == pytest.approx(tally.totals[1])
    assert select_pair(tally).chosen == 0


# K=4 ballots in which responses 2 and 3 tie on total and on last places at the bottom; 2 has one
# first place, 3 none. Totals: 0: 30, 1: 3.33, 2: -16.67, 3: -16.67.
BOTTOM_TIE = [[2, 0, 1, 3], [0, 3, 1, 2], [0, 3, 2, 1], [1, 0, 2, 3], [1, 0, 3, 2]]


def test_bottom_tie_broken_by_fewer_first_places():
    tally = tally_votes(BOTTOM_TIE, 4)
    assert tally.totals == pytest.approx([30.0, 10 / 3, -50 / 3, -50 / 3])
    assert tally.lasts[2] == tally.lasts[3] == 2 and (tally.firsts[2], tally.firsts[3]) == (1, 0)
    choice = select_pair(tally)
    assert (choice.chosen, choice.rejected) == (0, 3)


def test_top_tie_broken_by_fewer_last_places():
    # The same ballots reversed: 2 and 3 tie at the top on total and first places; 2 was last once, 3 never.
    tally = tally_votes([b[::-1] for b in BOTTOM_TIE], 4)
    assert tally.firsts[2] == tally.firsts[3] == 2 and (tally.lasts[2], tally.lasts[3]) == (1, 0)
    choice = select_pair(tally)
    assert (choice.chosen, choice.rejected) == (3, 0)


def test_bottom_tie_broken_by_more_last_places():
    # K=4. 2: last, last, second = -16.67; 3: third, third, last = -16.67; 2 is last twice, 3 once.
    tally = tally_votes([[0, 1, 3, 2], [1, 0, 3, 2], [0, 2, 1, 3]], 4)
    assert tally.totals[2] == pytest.approx(tally.totals[3])
    assert select_pair(tally).rejected == 2


def test_unbreakable_ties_are_dropped():
    # K=3: 0 and 1 equal on total, firsts and lasts -> top tie.
    assert select_pair(tally_votes([[0, 1, 2], [0, 2, 1], [1, 2, 0], [1, 0, 2]], 3)) == "tied_top"
    # Everything equal -> top tie (checked first).
    assert select_pair(tally_votes([[0, 1, 2], [1, 2, 0], [2, 0, 1]], 3)) == "tied_top"
    # Clear top, but 1 and 2 tie at the bottom on everything.
    assert select_pair(tally_votes([[0, 2, 1], [0, 1, 2]], 3)) == "tied_bottom"


def test_bad_ranking_rejected():
    with pytest.raises(ValueError):
        tally_votes([[0, 0, 1]], 3)


def test_survey_and_clinician_sources():
    survey = [
        {"prompt": "p", "scenario_id": "s", "criterion": "empathy", "ranking": ["a", "b", "c"], "participant": "x", "shown_order": []},
        {"prompt": "p", "scenario_id": "s", "criterion": "empathy", "ranking": ["a", "c", "b"], "participant": "y", "shown_order": []},
    ]
    rows, dropped = pairs_from_survey(survey)
    assert [(r["chosen"], r["rejected"], r["source"]) for r in rows] == []
    assert dropped["empathy"]["tied_bottom"] == 1
    survey[1]["ranking"] = ["a", "b", "c"]
    rows, _ = pairs_from_survey(survey)
    assert (rows[0]["chosen"], rows[0]["rejected"], rows[0]["source"], rows[0]["chosen_score"]) == ("a", "c", "survey", 10.0)
    clin = pairs_from_clinicians([{"prompt": "p", "scenario_id": "s", "criterion": "safety", "chosen": "x", "rejected": "y"}])
    assert clin[0]["source"] == "clinician" and clin[0]["rejected_score"] == -10.0


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture
def label_inputs(tmp_path):
    judge = {"name": "rubric", "model": "attune-rubric-v1", "settings": {}, "synthetic": True}
    scenarios = _write(tmp_path / "s.jsonl", [
        {"scenario_id": "s1", "prompt": "one", "split": "train"},
        {"scenario_id": "s2", "prompt": "two", "split": "train"},
        {"scenario_id": "t1", "prompt": "test", "split": "test"},
    ])
    responses = ["r0", "r1", "r2", "r3", "r4"]
    candidates = _write(tmp_path / "c.jsonl", [
        {"scenario_id": s, "prompt": p, "responses": [f"{s}-{r}" for r in responses], "model": "m", "generation": {}}
        for s, p in (("s1", "one"), ("s2", "two"), ("t1", "test"))
    ])
    labels = []
    for persona, ranking in (("p1", [0, 1, 2, 3, 4]), ("p2", [1, 0, 2, 3, 4]), ("p3", [0, 2, 1, 4, 3])):
        for scenario in ("s1", "t1"):
            labels.append({"persona_id": persona, "scenario_id": scenario, "criteria": {"empathy": ranking, "safety": ranking[::-1]},
                           "shown_order": [0, 1, 2, 3, 4], "seed": 1, "judge": judge})
    # s2: a perfect cycle between two ballots -> ties at top and bottom
    for persona, ranking in (("p1", [0, 1, 2, 3, 4]), ("p2", [4, 3, 2, 1, 0])):
        labels.append({"persona_id": persona, "scenario_id": "s2", "criteria": {"empathy": ranking, "safety": ranking},
                       "shown_order": [0, 1, 2, 3, 4], "seed": 1, "judge": judge})
    labels_path = _write(tmp_path / "l.jsonl", labels)
    clinician = _write(tmp_path / "clin.jsonl", [{"prompt": "one", "scenario_id": "s1", "criterion": "safety", "chosen": "x", "rejected": "y"}])
    return {"scenarios_path": scenarios, "candidates_path": candidates, "labels_path": labels_path, "clinician_path": clinician}


def test_build_dataset_card_version_and_rerun(tmp_path, label_inputs):
    from datasets import load_from_disk

    out = tmp_path / "prefs"
    result = build_preference_dataset(PreferenceConfig(output_dir=str(out), **label_inputs))
    dataset = load_from_disk(str(out))
    assert sorted(dataset.keys()) == ["empathy", "safety"]
    empathy = dataset["empathy"].to_list()
    assert [(r["scenario_id"], r["chosen"], r["rejected"]) for r in empathy] == [("s1", "s1-r0", "s1-r4")]  # t1 is test
    assert empathy[0]["source"] == "judge:rubric" and empathy[0]["chosen_score"] == pytest.approx(25 / 3)
    safety = dataset["safety"].to_list()
    assert {r["source"] for r in safety} == {"judge:rubric", "clinician"}
    card = json.loads((out / "card.json").read_text())
    assert card["version"] == result.version and card["synthetic"] is True
    assert card["counts"]["safety"] == {"total": 2, "by_source": {"clinician": 1, "judge:rubric": 1}}
    assert card["dropped"]["empathy"] == {"tied_top": 1} and card["tied"]["empathy"] == 1
    assert card["personas"]["ids"] == ["p1", "p2", "p3"] and card["scenarios"]["split"] == "train"
    again = build_preference_dataset(PreferenceConfig(output_dir=str(out), **label_inputs))
    assert again.unchanged and again.version == result.version
    with pytest.raises(PipelineConfigError, match="overwrite"):
        build_preference_dataset(PreferenceConfig(output_dir=str(out), **{**label_inputs, "clinician_path": None}))
    replaced = build_preference_dataset(PreferenceConfig(output_dir=str(out), overwrite=True, **{**label_inputs, "clinician_path": None}))
    assert replaced.version != result.version and not replaced.unchanged
    assert json.loads((out / "card.json").read_text())["version"] == replaced.version
