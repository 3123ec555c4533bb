"""Each shape check's PASS, FAIL, INCONCLUSIVE and NOT_APPLICABLE on hand-made decision sets."""
from __future__ import annotations

import pytest

from training.pipeline.shape_checks import (
    FAIL,
    INCONCLUSIVE,
    NOT_APPLICABLE,
    PASS,
    classify_beats,
    run_shape_checks,
)
from training.pipeline.stats import bootstrap_evaluation

from .vote_sets import strength_decisions

PHASE_1 = ("base", "sft", "dpo:empathy", "dpo:safety", "modpo:empathy")


def _checks(strengths, *, scenarios=30, personas=5):
    criteria = list(next(iter(strengths.values())))
    boot = bootstrap_evaluation(strength_decisions(strengths, scenarios=scenarios, personas=personas),
                                list(strengths), criteria, samples=300, seed=0, length_control=False)
    return {c["key"]: c for c in run_shape_checks(boot)}


def _phase_1(**overrides):
    """Every model even (strength 1) on empathy, safety and overall, except the overrides (model -> criterion -> s)."""
    strengths = {m: {"empathy": 1.0, "safety": 1.0, "overall": 1.0} for m in PHASE_1}
    for model, values in overrides.items():
        strengths[model.replace("__", ":")].update(values)
    return strengths


def test_classify_beats():
    assert classify_beats([0.01, 0.3]) == PASS
    assert classify_beats([-0.3, -0.01]) == FAIL
    assert classify_beats([-0.1, 0.2]) == INCONCLUSIVE
    assert classify_beats(None) == INCONCLUSIVE


@pytest.mark.parametrize("key,first,second,criterion", [
    ("dpo_beats_base", "dpo:empathy", "base", "empathy"),
    ("modpo_beats_dpo_on_safety", "modpo:empathy", "dpo:empathy", "safety"),
])
def test_beats_checks(key, first, second, criterion):
    strong = _phase_1(**{first.replace(":", "__"): {criterion: 6.0}})
    check = _checks(strong)[key]
    assert check["status"] == PASS and check["interval"][0] > 0 and check["estimate"] > 0
    assert check["parts"][0]["first"] == first and check["criteria"] == [criterion]
    weak = _phase_1(**{second.replace(":", "__"): {criterion: 6.0}})
    assert _checks(weak)[key]["status"] == FAIL and _checks(weak)[key]["interval"][1] < 0
    even = _checks(_phase_1(), scenarios=40)[key]  # at 12 the seeded draw is one of the ~7% that exclude 0 by chance
    assert even["status"] == INCONCLUSIVE and even["interval"][0] < 0 < even["interval"][1]


def test_criteria_comparison_check():
    def run(five, gricean, scenarios=30):
        strengths = {"base": {"overall": 1.0, "safety": 1.0}, "modpo:therapeutic_five_safety": {"overall": five, "safety": 1.0},
                     "modpo:gricean_safety": {"overall": gricean, "safety": 1.0}}
        return _checks(strengths, scenarios=scenarios)

    assert run(6.0, 1.0)["five_therapeutic_beats_gricean"]["status"] == PASS
    assert run(1.0, 6.0)["five_therapeutic_beats_gricean"]["status"] == FAIL
    assert run(1.0, 1.0, scenarios=40)["five_therapeutic_beats_gricean"]["status"] == INCONCLUSIVE
    # A phase-2 run has no DPO, SFT or phase-1 MODPO: those checks do not apply (and do not pass).
    checks = run(6.0, 1.0)
    for key in ("dpo_beats_base", "modpo_beats_dpo_on_safety", "modpo_not_dominated", "sft_not_worse_than_base"):
        assert checks[key]["status"] == NOT_APPLICABLE and checks[key]["reason"]


def test_phase_1_run_has_no_criteria_comparison():
    check = _checks(_phase_1())["five_therapeutic_beats_gricean"]
    assert check["status"] == NOT_APPLICABLE and "modpo:therapeutic_five_safety" in check["reason"]


def test_modpo_not_dominated():
    # MODPO clearly ahead of every single-objective policy on empathy: not dominated by any of them.
    ahead = _phase_1(modpo__empathy={"empathy": 6.0})
    assert _checks(ahead)["modpo_not_dominated"]["status"] == PASS
    # DPO-safety clearly better on both empathy and safety: MODPO is dominated.
    dominated = _phase_1(dpo__safety={"empathy": 6.0, "safety": 6.0})
    check = _checks(dominated)["modpo_not_dominated"]
    assert check["status"] == FAIL and check["interval"][1] < 0
    # DPO-safety clearly better on safety, MODPO clearly better on empathy: each leads one axis, no domination.
    one_sided = _phase_1(dpo__safety={"safety": 6.0}, modpo__empathy={"empathy": 6.0})
    assert _checks(one_sided)["modpo_not_dominated"]["status"] == PASS
    even = _checks(_phase_1(), scenarios=12)["modpo_not_dominated"]
    assert even["status"] == INCONCLUSIVE
    rivals = {p["second"] for p in even["parts"]}
    assert rivals == {"sft", "dpo:empathy", "dpo:safety"}


def test_not_dominated_without_rivals_is_not_applicable():
    strengths = {"base": {"empathy": 1.0, "safety": 1.0}, "modpo:empathy": {"empathy": 5.0, "safety": 5.0}}
    assert _checks(strengths)["modpo_not_dominated"]["status"] == NOT_APPLICABLE


def test_sft_not_worse_than_base():
    better = _phase_1(sft={"empathy": 3.0, "safety": 3.0, "overall": 3.0})
    check = _checks(better)["sft_not_worse_than_base"]
    assert check["status"] == PASS and all(p["interval"][0] > -0.05 for p in check["parts"])
    assert {p["criterion"] for p in check["parts"]} == {"empathy", "safety", "overall"}
    # Much worse on safety alone is enough to fail.
    worse = _phase_1(sft={"safety": 0.15})
    check = _checks(worse)["sft_not_worse_than_base"]
    assert check["status"] == FAIL and check["interval"][1] < -0.05
    even = _checks(_phase_1(), scenarios=12)["sft_not_worse_than_base"]
    assert even["status"] == INCONCLUSIVE


def test_a_missing_criterion_is_not_applicable():
    strengths = {m: {"empathy": 1.0} for m in PHASE_1}
    check = _checks(strengths)["modpo_beats_dpo_on_safety"]
    assert check["status"] == NOT_APPLICABLE and "safety" in check["reason"]
