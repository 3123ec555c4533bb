"""Statistics against small cases worked out by hand."""
import pytest

from annotation import statistics as st


def test_win_loss_tie_and_sign_test_by_hand():
    result = st.win_loss_tie(["a", "a", "a", "b", "tie"])
    assert (result["wins"], result["losses"], result["ties"], result["n"]) == (3, 1, 1, 5)
    assert result["win_pct"] == pytest.approx(60.0)
    assert result["tie_pct"] == pytest.approx(20.0)
    # Two-sided exact binomial, 3 wins of 4 decisive: P(X<=1) + P(X>=3) = (1 + 4 + 4 + 1) / 16.
    assert result["sign_test_p"] == pytest.approx(10 / 16)
    assert result["win_share_decisive"] == pytest.approx(75.0)
    low, high = result["win_ci"]
    assert low < 60 < high


def test_all_wins_and_all_ties():
    wins = st.win_loss_tie(["a"] * 6)
    assert wins["win_pct"] == 100.0
    assert wins["sign_test_p"] == pytest.approx(2 / 64)
    # Clopper-Pearson for 6/6: the lower bound is (0.025)^(1/6).
    assert wins["win_ci"][0] == pytest.approx(100 * 0.025 ** (1 / 6), rel=1e-6)
    assert wins["win_ci"][1] == pytest.approx(100.0)
    ties = st.win_loss_tie(["tie"] * 4)
    assert ties["sign_test_p"] is None and ties["sign_test_undefined"]
    empty = st.win_loss_tie([])
    assert empty["win_pct"] is None and empty["win_ci"] is None


def test_majority_is_strict():
    assert st.majority(["a", "a", "b"]) == "a"
    assert st.majority(["a", "b"]) is None
    assert st.majority(["a", "b", "tie"]) is None
    assert st.majority([]) is None


def test_percent_agreement_by_hand():
    counts = st.counts_matrix([["a", "a", "b"], ["a", "a", "a"], ["b"]])
    value, undefined = st.percent_agreement_value(counts)
    # 1 of 3 pairs agree on the first item, 3 of 3 on the second; the third has no pair.
    assert value == pytest.approx(4 / 6) and undefined is None


def test_cohen_kappa_by_hand():
    # po = 3/4; marginals (1/2, 1/2) and (1/4, 3/4): pe = 1/8 + 3/8 = 1/2; kappa = (3/4 - 1/2) / (1/2).
    value, _ = st.cohen_value(["a", "a", "b", "b"], ["a", "b", "b", "b"])
    assert value == pytest.approx(0.5)
    assert st.cohen_value(["a", "b", "tie"], ["a", "b", "tie"])[0] == pytest.approx(1.0)
    # All disagree: po = 0, pe = 1/2, kappa = -1.
    assert st.cohen_value(["a", "b"], ["b", "a"])[0] == pytest.approx(-1.0)


def test_kappa_undefined_without_variation():
    value, undefined = st.cohen_value(["a", "a", "a"], ["a", "a", "a"])
    assert value is None and "no variation" in undefined
    value, undefined = st.cohen_value([], [])
    assert value is None and undefined
    counts = st.counts_matrix([["tie", "tie"], ["tie", "tie"]])
    for statistic in (st.fleiss_value, st.alpha_value):
        value, undefined = statistic(counts)
        assert value is None and "no variation" in undefined


def test_fleiss_and_krippendorff_by_hand():
    counts = st.counts_matrix([["a", "a", "a"], ["a", "a", "b"], ["b", "b", "b"]])
    # Fleiss: P = (1 + 1/3 + 1) / 3 = 7/9; p = (5/9, 4/9); Pe = 41/81; kappa = (7/9 - 41/81) / (40/81) = 22/40.
    assert st.fleiss_value(counts)[0] == pytest.approx(0.55)
    # Krippendorff (nominal): coincidences o_ab = o_ba = 1, n_a = 5, n_b = 4, n = 9:
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (2 * n_a * n_b) = 1 - 8 * 2 / 40.
    assert st.alpha_value(counts)[0] == pytest.approx(0.6)


def test_all_agree_and_all_disagree_edge_cases():
    agree = st.agreement({1: {"x": "a", "y": "a"}, 2: {"x": "b", "y": "b"}, 3: {"x": "tie", "y": "tie"}}, n_boot=50)
    assert agree["percent_agreement"]["value"] == 1.0
    assert agree["fleiss_kappa"]["value"] == pytest.approx(1.0)
    assert agree["krippendorff_alpha"]["value"] == pytest.approx(1.0)
    assert agree["cohen_pairs"][0]["cohen_kappa"]["value"] == pytest.approx(1.0)
    disagree = st.agreement({1: {"x": "a", "y": "b"}, 2: {"x": "b", "y": "a"}}, n_boot=50)
    assert disagree["percent_agreement"]["value"] == 0.0
    assert disagree["fleiss_kappa"]["value"] == pytest.approx(-1.0)
    assert disagree["cohen_pairs"][0]["cohen_kappa"]["value"] == pytest.approx(-1.0)
    # Perfect agreement on a single category: agreement is 100% but kappa and alpha do not exist.
    same = st.agreement({1: {"x": "a", "y": "a"}, 2: {"x": "a", "y": "a"}}, n_boot=50)
    assert same["percent_agreement"]["value"] == 1.0
    for key in ("fleiss_kappa", "krippendorff_alpha"):
        assert same[key]["value"] is None and same[key]["undefined"]
    assert same["cohen_pairs"][0]["cohen_kappa"]["value"] is None
    # No item with two ratings at all.
    lonely = st.agreement({1: {"x": "a"}}, n_boot=50)
    assert lonely["percent_agreement"]["value"] is None and lonely["percent_agreement"]["undefined"]


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate():
    ratings = {i: {"x": "a" if i % 3 else "b", "y": "a" if i % 4 else "tie", "z": "a"} for i in range(30)}
    first = st.agreement(ratings, n_boot=200, seed=3)
    second = st.agreement(ratings, n_boot=200, seed=3)
    assert first == second
    for key in ("percent_agreement", "fleiss_kappa", "krippendorff_alpha"):
        low, high = first[key]["ci"]
        assert low <= first[key]["value"] <= high


def test_judge_agreement_worked_example():
    """Four items rated by three clinicians; the judge decided each one.

    item 1: a a b, judge a -> agrees with 2; majority a, agrees
    item 2: b b b, judge b -> agrees with 3; majority b, agrees
    item 3: a tie b, judge tie -> agrees with 1; no majority
    item 4: tie a a, judge b -> agrees with 0; majority a, disagrees
    judge vs clinicians 6/12; vs majority 2/3; clinician pairs agree 1 + 3 + 0 + 1 of 12."""
    ratings = {
        1: {"c1": "a", "c2": "a", "c3": "b"},
        2: {"c1": "b", "c2": "b", "c3": "b"},
        3: {"c1": "a", "c2": "tie", "c3": "b"},
        4: {"c1": "tie", "c2": "a", "c3": "a"},
    }
    judge = {1: "a", 2: "b", 3: "tie", 4: "b", 99: "a"}
    result = st.judge_agreement(ratings, judge)
    assert result["n_items"] == 4
    assert result["vs_clinicians"]["value"] == pytest.approx(0.5)
    assert (result["vs_clinicians"]["agree"], result["vs_clinicians"]["n"]) == (6, 12)
    assert result["vs_majority"]["value"] == pytest.approx(2 / 3)
    assert result["vs_majority"]["no_majority"] == 1
    assert result["clinician_pairwise"]["value"] == pytest.approx(5 / 12)
    per = {p["clinician"]: p for p in result["per_clinician"]}
    assert per["c1"]["agree"] == 2 and per["c2"]["agree"] == 3 and per["c3"]["agree"] == 1


def test_position_bias():
    result = st.position_bias(["left"] * 8 + ["right"] * 2 + ["tie"] * 3)
    assert (result["left"], result["right"], result["ties"]) == (8, 2, 3)
    assert result["left_share"]["value"] == pytest.approx(0.8)
    assert result["p_value"] == pytest.approx(2 * (1 + 10 + 45) / 1024)
    assert st.position_bias(["tie"])["left_share"]["value"] is None
