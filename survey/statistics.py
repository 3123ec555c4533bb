"""Statistics of the survey's criteria answers. Pure functions over numpy
arrays; no Django.

Inputs: ``ratings`` is an n×k array of 1–5 importance ratings (NaN where
missing); ``rankings`` is a list of complete rankings, each a list of
criterion indices, most important first.

Survey weight vector (Plackett–Luce). For criteria c = 1..k the model says a
person ranks c first among the remaining set S with probability
exp(θ_c) / Σ_{j∈S} exp(θ_j). θ is fitted by maximum likelihood to the
rankings (choix.ilsr_rankings with a small L2 penalty ``alpha`` so criteria
that are always last stay finite). The weight of criterion c is

    w_c = exp(θ_c) / Σ_j exp(θ_j),

i.e. the probability that c is ranked first; the weights are positive and
sum to 1. 95% intervals come from a percentile bootstrap over participants.
MODPO needs only positive weights (their scale is free), and merging uses
them as given.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

PL_ALPHA = 0.01


@dataclass
class Estimate:
    value: np.ndarray
    low: np.ndarray
    high: np.ndarray


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def bootstrap_mean(ratings: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """Mean per column (ignoring NaN) with percentile bootstrap 95% intervals, resampling rows."""
    ratings = np.asarray(ratings, dtype=float)
    n, k = ratings.shape if ratings.ndim == 2 else (0, 0)
    if n == 0:
        empty = np.full(k, np.nan)
        return Estimate(empty, empty, empty)
    means = np.nanmean(ratings, axis=0)
    rows = _rng(seed).integers(0, n, size=(n_boot, n))
    with warnings.catch_warnings():
        # A resample with no rating for a column gives NaN, which the percentiles skip.
        warnings.simplefilter("ignore", category=RuntimeWarning)
        boots = np.nanmean(ratings[rows], axis=1)  # n_boot × k
        low, high = np.nanpercentile(boots, [2.5, 97.5], axis=0)
    return Estimate(means, low, high)


def top_rated_shares(ratings: np.ndarray) -> np.ndarray:
    """Share of people for whom each criterion is among their highest-rated
    (ties count for every tied criterion, so shares can sum past 1)."""
    ratings = np.asarray(ratings, dtype=float)
    complete = ratings[~np.isnan(ratings).any(axis=1)] if ratings.size else ratings
    if len(complete) == 0:
        return np.zeros(ratings.shape[1] if ratings.ndim == 2 else 0)
    top = complete == complete.max(axis=1, keepdims=True)
    return top.mean(axis=0)


def first_ranked_shares(rankings: list[list[int]], k: int) -> np.ndarray:
    counts = np.zeros(k)
    for ranking in rankings:
        counts[ranking[0]] += 1
    return counts / len(rankings) if rankings else counts


def plackett_luce_params(rankings: list[list[int]], k: int, *, alpha: float = PL_ALPHA) -> np.ndarray:
    import choix

    if not rankings:
        return np.zeros(k)
    return np.asarray(choix.ilsr_rankings(k, [tuple(r) for r in rankings], alpha=alpha))


def weights_from_params(params: np.ndarray) -> np.ndarray:
    exp = np.exp(params - params.max())
    return exp / exp.sum()


def plackett_luce_weights(rankings: list[list[int]], k: int, *, n_boot: int = 200, seed: int = 0,
                          alpha: float = PL_ALPHA) -> Estimate:
    """Normalised Plackett–Luce weights (see the module docstring) with bootstrap 95% intervals."""
    weights = weights_from_params(plackett_luce_params(rankings, k, alpha=alpha))
    if len(rankings) < 2 or n_boot <= 0:
        return Estimate(weights, weights.copy(), weights.copy())
    rng = _rng(seed)
    boots = np.empty((n_boot, k))
    for b in range(n_boot):
        sample = [rankings[i] for i in rng.integers(0, len(rankings), size=len(rankings))]
        boots[b] = weights_from_params(plackett_luce_params(sample, k, alpha=alpha))
    low, high = np.percentile(boots, [2.5, 97.5], axis=0)
    return Estimate(weights, low, high)


def importance_weights(ratings: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> Estimate:
    """Mean importance per criterion, normalised to sum 1, with bootstrap intervals."""
    ratings = np.asarray(ratings, dtype=float)
    complete = ratings[~np.isnan(ratings).any(axis=1)]
    if len(complete) == 0:
        k = ratings.shape[1]
        return Estimate(np.full(k, 1 / k), np.full(k, 1 / k), np.full(k, 1 / k))
    means = complete.mean(axis=0)
    rows = _rng(seed).integers(0, len(complete), size=(n_boot, len(complete)))
    boots = complete[rows].mean(axis=1)
    boots = boots / boots.sum(axis=1, keepdims=True)
    low, high = np.percentile(boots, [2.5, 97.5], axis=0)
    return Estimate(means / means.sum(), low, high)


@dataclass
class Agreement:
    taus: list[float | None]  # per participant; None where the ratings were all equal
    n: int
    n_undefined: int
    mean: float | None
    median: float | None
    share_positive: float | None


def rating_ranking_agreement(ratings: np.ndarray, rankings: list[list[int] | None]) -> Agreement:
    """Kendall's tau-b, per participant, between their 1–5 ratings and their
    ranking (rank 1 = most important), summarised. Undefined when every rating
    was the same (no order to agree with)."""
    from scipy.stats import kendalltau

    taus: list[float | None] = []
    for row, ranking in zip(np.asarray(ratings, dtype=float), rankings):
        if ranking is None or np.isnan(row).any():
            continue
        importance_by_rank = np.empty(len(ranking))
        for position, criterion in enumerate(ranking):
            importance_by_rank[criterion] = len(ranking) - position  # higher = more important
        if np.all(row == row[0]):
            taus.append(None)
            continue
        tau = kendalltau(row, importance_by_rank).statistic
        taus.append(None if np.isnan(tau) else float(tau))
    defined = [t for t in taus if t is not None]
    return Agreement(
        taus=taus,
        n=len(taus),
        n_undefined=len(taus) - len(defined),
        mean=float(np.mean(defined)) if defined else None,
        median=float(np.median(defined)) if defined else None,
        share_positive=float(np.mean([t > 0 for t in defined])) if defined else None,
    )
