"""Survey statistics on synthetic data with known answers."""
import numpy as np
import pytest

from survey import statistics


def simulate_rankings(strengths, n, seed):
    rng = np.random.default_rng(seed)
    rankings = []
    for _ in range(n):
        remaining, ranking = list(range(len(strengths))), []
        while remaining:
            p = np.array([strengths[i] for i in remaining])
            ranking.append(remaining.pop(rng.choice(len(remaining), p=p / p.sum())))
        rankings.append(ranking)
    return rankings


def test_plackett_luce_weights_recover_a_known_order_with_intervals():
    strengths = [0.05, 0.4, 0.1, 0.25, 0.2]
    estimate = statistics.plackett_luce_weights(simulate_rankings(strengths, 400, 1), 5, n_boot=60, seed=0)
    assert list(np.argsort(-estimate.value)) == list(np.argsort(-np.array(strengths)))
    assert estimate.value.sum() == pytest.approx(1)
    assert np.all(estimate.low <= estimate.value) and np.all(estimate.value <= estimate.high)
    # With strengths that sum to 1 the weights estimate them directly.
    assert estimate.value == pytest.approx(strengths, abs=0.05)


def test_plackett_luce_is_deterministic_for_a_seed():
    rankings = simulate_rankings([0.3, 0.3, 0.4], 30, 2)
    a = statistics.plackett_luce_weights(rankings, 3, n_boot=20, seed=5)
    b = statistics.plackett_luce_weights(rankings, 3, n_boot=20, seed=5)
    assert np.array_equal(a.low, b.low) and np.array_equal(a.value, b.value)


def test_bootstrap_mean_interval_covers_the_mean_and_ignores_missing():
    ratings = np.array([[5, 1], [4, np.nan], [5, 2], [3, 1]], dtype=float)
    estimate = statistics.bootstrap_mean(ratings, n_boot=500, seed=0)
    assert estimate.value == pytest.approx([4.25, 4 / 3])
    assert np.all(estimate.low <= estimate.value) and np.all(estimate.value <= estimate.high)
    assert estimate.high[0] <= 5 and estimate.low[1] >= 1


def test_top_rated_shares_count_ties_for_each():
    ratings = np.array([[5, 5, 3], [4, 2, 1], [3, 4, 4]], dtype=float)
    assert statistics.top_rated_shares(ratings) == pytest.approx([2 / 3, 2 / 3, 1 / 3])
    assert statistics.first_ranked_shares([[0, 1, 2], [2, 0, 1]], 3) == pytest.approx([0.5, 0, 0.5])


def test_agreement_between_ratings_and_rankings():
    ratings = np.array([[5, 3, 1], [1, 3, 5], [4, 4, 4], [5, 4, 4]], dtype=float)
    rankings = [[0, 1, 2], [0, 1, 2], [0, 1, 2], None]
    agreement = statistics.rating_ranking_agreement(ratings, rankings)
    assert agreement.taus == [pytest.approx(1.0), pytest.approx(-1.0), None]
    assert (agreement.n, agreement.n_undefined, agreement.mean, agreement.share_positive) == (3, 1, 0.0, 0.5)


def test_importance_weights_normalise_mean_ratings():
    estimate = statistics.importance_weights(np.array([[4, 2], [4, 2]], dtype=float), n_boot=10)
    assert estimate.value == pytest.approx([2 / 3, 1 / 3])
