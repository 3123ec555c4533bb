"""Bootstrap intervals, Holm, McNemar, Wilson and the length-controlled win rate on hand-made decision sets."""
from __future__ import annotations

import random

import pytest

from training.pipeline.evaluation import summarise_decisions
from training.pipeline.stats import (
    accuracy_with_interval,
    bootstrap_evaluation,
    holm_adjust,
    mcnemar_exact_p,
    bootstrap_interval,
    percentile_interval,
    wilson_interval,
)

from .vote_sets import decision, pair_decisions, strength_decisions


def _interval(decisions, samples=500, seed=1, model="x"):
    boot = bootstrap_evaluation(decisions, ["x", "y"], ["empathy"], samples=samples, seed=seed, length_control=False)
    return boot.estimate("apwr", model, "empathy"), boot.interval("apwr", model, "empathy")


def test_a_clear_winners_interval_excludes_half():
    estimate, (low, high) = _interval(pair_decisions(0.8))
    assert estimate > 0.85 and low > 0.5 and high <= 1.0


def test_a_coin_flips_interval_includes_half():
    estimate, (low, high) = _interval(pair_decisions(0.5))
    assert low < 0.5 < high
    assert high - low > 0.2  # 40 coin-flip scenarios cannot pin a rate down


def test_same_seed_same_interval_other_seed_other_draws():
    decisions = pair_decisions(0.6)
    assert _interval(decisions, seed=7) == _interval(decisions, seed=7)
    boot_a = bootstrap_evaluation(decisions, ["x", "y"], ["empathy"], samples=200, seed=7, length_control=False)
    boot_b = bootstrap_evaluation(decisions, ["x", "y"], ["empathy"], samples=200, seed=8, length_control=False)
    assert (boot_a.replicates["apwr"] != boot_b.replicates["apwr"]).any()


def test_interval_narrows_with_more_scenarios():
    _, (low_few, high_few) = _interval(pair_decisions(0.6, scenarios=20))
    _, (low_many, high_many) = _interval(pair_decisions(0.6, scenarios=320))
    assert high_many - low_many < 0.6 * (high_few - low_few)


def test_personas_within_scenarios_are_resampled():
    # 4 of 7 personas for A in every scenario: A wins all 40 as observed and scenario resampling alone would say
    # [1, 1]; drawing 7 of those personas again often gives B the majority, so the interval must have width.
    decisions = [decision(f"s{s}", "x", "y", "empathy", ["a"] * 4 + ["b"] * 3) for s in range(40)]
    estimate, (low, high) = _interval(decisions)
    assert estimate == 1.0 and low < 0.95 and high == 1.0
    # With unanimous personas there is no persona-level uncertainty left: every replicate is 100%.
    unanimous = [decision(f"s{s}", "x", "y", "empathy", ["a"] * 7) for s in range(40)]
    assert _interval(unanimous)[1] == [1.0, 1.0]


def _tie_heavy_decisions():
    """30 of 40 scenarios tied 4 to 4, x wins the other 10 outright: x's rate (ties are non-wins) is 25%."""
    tied = [decision(f"s{s}", "x", "y", "empathy", ["a"] * 4 + ["b"] * 4) for s in range(30)]
    return tied + [decision(f"s{s}", "x", "y", "empathy", ["a"] * 8) for s in range(30, 40)]


def test_the_interval_of_a_tie_heavy_rate_holds_its_own_estimate():
    decisions = _tie_heavy_decisions()
    boot = bootstrap_evaluation(decisions, ["x", "y"], ["empathy"], samples=500, seed=1, length_control=False)
    estimate, (low, high) = boot.estimate("apwr", "x", "empathy"), boot.interval("apwr", "x", "empathy")
    assert estimate == pytest.approx(0.25)
    # Redrawing personas breaks most 4-4 ties, so the raw replicates sit well above 25%: a plain percentile
    # interval misses its own point estimate, the recentred one holds it with the same width.
    raw_low, raw_high = percentile_interval(boot.replicates["apwr"][:, 0, 0])
    assert raw_low > estimate
    assert low < estimate < high
    assert high - low == pytest.approx(raw_high - raw_low, abs=1e-9)
    # The same holds for the paired difference the shape checks use (y's rate is 0 on the same scenarios).
    difference, (d_low, d_high) = boot.difference("apwr", "x", "y", "empathy")
    assert d_low < difference < d_high


def test_recentred_interval_without_offset_is_the_percentile_interval():
    replicates = [0.3, 0.4, 0.5, 0.6, 0.7]
    assert bootstrap_interval(replicates, 0.5) == pytest.approx(percentile_interval(replicates))
    assert bootstrap_interval(replicates, 0.4) == pytest.approx([v - 0.1 for v in percentile_interval(replicates)])
    assert bootstrap_interval(replicates, 0.9) == pytest.approx([0.71, 1.0])  # clipped to the rate's range
    assert bootstrap_interval(replicates, float("nan")) == pytest.approx(percentile_interval(replicates))
    assert bootstrap_interval([float("nan")], 0.5) is None


def test_observed_numbers_match_the_summary_table():
    strengths = {"m1": {"empathy": 3.0, "safety": 1.0}, "m2": {"empathy": 1.0, "safety": 1.0},
                 "m3": {"empathy": 1.0, "safety": 2.0}}
    decisions = strength_decisions(strengths, scenarios=12, personas=4)  # even personas: some ties
    boot = bootstrap_evaluation(decisions, list(strengths), ["empathy", "safety"], samples=10, seed=0, length_control=False)
    table = summarise_decisions(decisions, list(strengths), ["empathy", "safety"])["table"]
    assert any(table[m][c]["ties"] for m in strengths for c in ("empathy", "safety"))
    for m in strengths:
        for c in ("empathy", "safety"):
            assert boot.estimate("apwr", m, c) == pytest.approx(table[m][c]["average_pairwise_win_rate"])
            assert boot.estimate("tie_rate", m, c) == pytest.approx(table[m][c]["ties"] / table[m][c]["decisions"])


def test_decisions_without_votes_keep_their_recorded_outcome():
    decisions = [{"scenario_id": f"s{i}", "model_a": "y", "model_b": "x", "criterion": "empathy", "majority": "b"}
                 for i in range(10)]  # stored B-first: x wins every one
    estimate, interval = _interval(decisions, samples=50)
    assert estimate == 1.0 and interval == [1.0, 1.0]


def test_holm_against_a_hand_computation():
    # sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> raised to 0.06 (monotone)
    assert holm_adjust([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm_adjust([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm_adjust([]) == []


def test_mcnemar_exact():
    assert mcnemar_exact_p(8, 2) == pytest.approx(112 / 1024)  # 2 * P(X <= 2), X ~ Bin(10, 1/2)
    assert mcnemar_exact_p(5, 0) == pytest.approx(2 / 32)
    assert mcnemar_exact_p(3, 3) == 1.0 and mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(30, 12) == pytest.approx(mcnemar_exact_p(12, 30))
    from statsmodels.stats.contingency_tables import mcnemar

    for wins_a, wins_b in ((30, 12), (1, 9), (60, 40)):
        assert mcnemar_exact_p(wins_a, wins_b) == pytest.approx(mcnemar([[0, wins_a], [wins_b, 5]], exact=True).pvalue)


def test_wilson_interval_values():
    # 8 of 10, z = 1.96: centre (0.8 + 0.19208) / 1.38416 = 0.71681, half-width 0.18438
    low, high = wilson_interval(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)
    assert wilson_interval(0, 5)[0] == 0.0 and wilson_interval(0, 5)[1] == pytest.approx(0.4345, abs=1e-4)
    assert wilson_interval(0, 0) is None
    from statsmodels.stats.proportion import proportion_confint

    for k, n in ((2, 2), (37, 50), (120, 200)):
        assert wilson_interval(k, n) == pytest.approx(proportion_confint(k, n, method="wilson"))


def test_accuracy_on_two_pairs_carries_a_warning_and_a_wide_interval():
    two = accuracy_with_interval(2, 2)
    assert two["accuracy"] == 1.0 and two["pairs"] == 2 and "too few" in two["warning"]
    assert two["interval"][0] < 0.35  # 2 of 2 says almost nothing
    many = accuracy_with_interval(80, 100)
    assert many["warning"] is None and many["interval"][0] == pytest.approx(0.7112, abs=1e-3)
    assert accuracy_with_interval(0, 0)["accuracy"] is None and accuracy_with_interval(0, 0)["warning"]


def test_percentile_interval_skips_undefined_replicates():
    assert percentile_interval([float("nan")] * 3) is None
    assert percentile_interval([0.2, float("nan"), 0.4]) == pytest.approx([0.205, 0.395])


def _length_judge_decisions(scenarios=80, seed=0):
    """A judge that only prefers the longer answer; model x is longer in ~85% of scenarios."""
    rng = random.Random(seed)
    out = []
    for s in range(scenarios):
        words_x = rng.randint(40, 120)
        words_y = rng.randint(15, 75)
        vote = "a" if words_x > words_y else "b"
        out.append(decision(f"s{s}", "x", "y", "empathy", [vote] * 5, words_a=words_x, words_b=words_y))
    return out


def test_length_controlled_rate_removes_a_pure_length_preference():
    boot = bootstrap_evaluation(_length_judge_decisions(), ["x", "y"], ["empathy"], samples=200, seed=0)
    raw = boot.estimate("apwr", "x", "empathy")
    controlled = boot.estimate("lc", "x", "empathy")
    assert raw > 0.8
    assert abs(controlled - 0.5) < 0.15
    low, high = boot.interval("lc", "x", "empathy")
    assert low < 0.5 < high


def test_length_controlled_rate_keeps_a_preference_that_is_not_about_length():
    rng = random.Random(3)
    decisions = [decision(f"s{s}", "x", "y", "empathy", ["a"] * 6 + ["b"], words_a=rng.randint(20, 80),
                          words_b=rng.randint(20, 80)) for s in range(60)]
    boot = bootstrap_evaluation(decisions, ["x", "y"], ["empathy"], samples=100, seed=0)
    assert boot.estimate("apwr", "x", "empathy") == 1.0
    assert boot.estimate("lc", "x", "empathy") > 0.95
    assert boot.estimate("lc", "y", "empathy") == pytest.approx(1 - boot.estimate("lc", "x", "empathy"))


def test_recentred_interval_is_near_nominal_under_no_difference():
    # Even models, 12 scenarios x 5 personas, 80 seeded draws: a 95% interval of the difference should exclude 0
    # in about 5% of draws. Measured when written: 7% (the uncorrected percentile interval: under 1%, because the
    # persona redraw pulls every replicate towards a tie; and it missed tie-heavy estimates, above).
    rejections = 0
    for seed in range(80):
        decisions = strength_decisions({m: {"empathy": 1.0} for m in ("x", "y", "z")}, scenarios=12, personas=5, seed=seed)
        boot = bootstrap_evaluation(decisions, ["x", "y", "z"], ["empathy"], samples=100, seed=seed, length_control=False)
        estimate, (low, high) = boot.difference("apwr", "x", "y", "empathy")
        assert low <= estimate <= high
        rejections += not (low <= 0.0 <= high)
    assert 0 < rejections <= 12
