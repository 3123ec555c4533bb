"""Uncertainty for the evaluation: bootstrap intervals, McNemar with Holm, Wilson, length control.

Everything here works from the stored per-persona votes in
``judge_decisions.jsonl``, so any number in a report can be recomputed from
the run directory alone.

Two-level bootstrap (``bootstrap_evaluation``). One replicate draws the test
scenarios with replacement, and inside every drawn scenario draws its
personas with replacement (as many as it had); the majority of the drawn
personas' valid votes decides each (pair, criterion) in that scenario (win,
loss or tie; no valid vote is no decision). The same draws serve every pair
and criterion of a replicate, so differences between models (the shape
checks) are paired. Draws come from ``numpy.random.default_rng(seed)``: the
same seed gives the same numbers.

The interval is recentred (``bootstrap_interval``): the 2.5 % and 97.5 %
percentiles of the replicates, shifted by the replicates' mean offset from
the observed statistic. Why: the majority of a handful of personas is not
linear in their votes. A scenario tied 4 to 4 is a tie as observed, but
drawing 8 of those personas again breaks the tie about three times in four,
so on a criterion with many ties (safety) the replicates sit systematically
above the observed rate and a plain percentile interval can miss its own
point estimate (seen in the validation run: 22.5 % against [27.9, 45.4]).
The observed majority is an unbiased estimate of the rate a panel of that
size gives; the offset is what the persona redraw adds on top of it (it votes
on already-noisy votes), so it is removed and the spread kept. Where nothing
ties and personas agree the offset is about zero and the interval is the
plain percentile one.

Length control (``fit_length_controlled``), in the spirit of AlpacaEval 2:
for one criterion, every decided (pair, scenario) is a row with outcome
y = 1 (A won), 0.5 (tie), 0 (B won) and x = tanh((words_A - words_B) / s),
s the standard deviation of the word-count differences in the whole run.
A logistic model ``logit P(A preferred) = alpha_pair + gamma * x`` (one
intercept per pairing, one length slope shared by the criterion, a small
ridge penalty so that unanimous pairings and a judge that only follows length
keep finite estimates) is fitted by Newton's method. The length-controlled
win rate of A against B is sigmoid(alpha_pair): the predicted preference at
equal length. Ties count as half here (the model is symmetric in A and B),
so compare it with ``win_rate_ties_half``, not with the ties-as-losses
headline.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

__all__ = [
    "Z95",
    "wilson_interval",
    "accuracy_with_interval",
    "TOO_FEW_PAIRS",
    "mcnemar_exact_p",
    "holm_adjust",
    "percentile_interval",
    "bootstrap_interval",
    "VoteTable",
    "build_vote_table",
    "BootstrapResult",
    "bootstrap_evaluation",
    "fit_length_controlled",
    "word_count",
    "ends_a_sentence",
]

Z95 = 1.959963984540054
# Below this many held-out pairs an accuracy's interval is too wide to say anything useful
# (at 30 pairs the Wilson interval around 0.8 is still about +/- 0.14).
TOO_FEW_PAIRS = 30
# Ridge penalty of the length-controlled fit (a weak N(0, 10) prior on every coefficient).
LC_RIDGE = 0.1


# ---------------------------------------------------------------------------
# Proportions


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion (None when n is 0)."""
    if n <= 0:
        return None
    p = successes / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def accuracy_with_interval(correct: int, n: int) -> dict:
    """An accuracy as a report shows it: the share, the count behind it, its Wilson interval, and a
    warning when there are too few pairs for the number to mean much."""
    interval = wilson_interval(correct, n)
    warning = None
    if n == 0:
        warning = "no held-out pairs: accuracy unknown"
    elif n < TOO_FEW_PAIRS:
        warning = f"only {n} held-out pairs (< {TOO_FEW_PAIRS}): too few to say how accurate this model is"
    return {"accuracy": correct / n if n else None, "correct": correct, "pairs": n,
            "interval": list(interval) if interval else None, "warning": warning}


# ---------------------------------------------------------------------------
# Tests


def mcnemar_exact_p(wins_a: int, wins_b: int) -> float:
    """Exact McNemar: two-sided binomial test of wins_a among the discordant wins_a + wins_b (p = 1 with none).

    Exact at every size: the chi-square approximation is not needed when the binomial is this cheap."""
    n = wins_a + wins_b
    if n == 0:
        return 1.0
    from scipy.stats import binom

    return float(min(1.0, 2.0 * binom.cdf(min(wins_a, wins_b), n, 0.5)))


def holm_adjust(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjustment; returns adjusted p-values in the input order (family = the whole list)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def percentile_interval(replicates: np.ndarray, level: float = 0.95) -> list[float] | None:
    """(lower, upper) percentile interval over axis 0, ignoring replicates where the statistic was undefined."""
    values = np.asarray(replicates, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return None
    tail = 100.0 * (1.0 - level) / 2.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [float(low), float(high)]


def bootstrap_interval(replicates: np.ndarray, observed: float, level: float = 0.95,
                       bounds: tuple[float, float] = (0.0, 1.0)) -> list[float] | None:
    """The percentile interval shifted by the replicates' mean offset from ``observed`` (see the module
    docstring), clipped to the statistic's range. Without a defined observed value: the plain percentile one."""
    interval = percentile_interval(replicates, level)
    if interval is None or not math.isfinite(observed):
        return interval
    values = np.asarray(replicates, dtype=float)
    offset = float(values[np.isfinite(values)].mean()) - observed
    low, high = bounds
    return [min(high, max(low, interval[0] - offset)), min(high, max(low, interval[1] - offset))]


def word_count(text: str) -> int:
    return len(text.split())


def ends_a_sentence(text: str) -> bool:
    """Whether a reply ends a sentence; one that does not was cut (by max_new_tokens) or stopped mid-thought."""
    return text.rstrip().rstrip("\"'”’)*_").endswith((".", "!", "?", "…"))


@dataclass
class VoteTable:
    """The stored votes of one evaluation, as arrays.

    ``votes[p, c, s, k]`` is +1 when persona slot k of scenario s voted for pair p's model A on criterion c, -1 for
    model B, 0 for no valid vote. Decisions stored without per-persona votes keep their recorded outcome
    (``fixed``: 1 A, 0.5 tie, 0 B, NaN none) and are not resampled within the scenario."""

    models: list[str]
    criteria: list[str]
    pairs: list[tuple[str, str]]
    scenarios: list[str]
    persona_counts: np.ndarray  # (S,) persona slots used in each scenario
    votes: np.ndarray  # (P, C, S, K) int8
    fixed: np.ndarray  # (P, C, S) float: NaN where the outcome comes from the votes (or is absent)
    fixed_mask: np.ndarray  # (P, C, S) bool
    present: np.ndarray  # (P, C, S) bool: a decision line exists
    words: np.ndarray  # (P, S, 2) words in A's and B's answer; NaN when unknown


def build_vote_table(decisions: Sequence[dict], models: Sequence[str], criteria: Sequence[str]) -> VoteTable:
    """Decision lines (``judge_decisions.jsonl``) -> a VoteTable. A later line for the same (scenario, pair,
    criterion) replaces an earlier one; lines for other models or criteria are ignored."""
    models, criteria = list(models), list(criteria)
    pairs = list(combinations(models, 2))
    pair_index = {}
    for i, (a, b) in enumerate(pairs):
        pair_index[(a, b)] = (i, False)
        pair_index[(b, a)] = (i, True)
    crit_index = {c: i for i, c in enumerate(criteria)}
    latest: dict[tuple, dict] = {}
    for d in decisions:
        if (d.get("model_a"), d.get("model_b")) in pair_index and d.get("criterion") in crit_index:
            latest[(d["scenario_id"], d["model_a"], d["model_b"], d["criterion"])] = d
    scenarios = sorted({key[0] for key in latest})
    scen_index = {s: i for i, s in enumerate(scenarios)}
    personas: dict[str, dict[str, int]] = {s: {} for s in scenarios}
    for (sid, *_), d in latest.items():
        for pid in sorted(d.get("votes") or {}):
            personas[sid].setdefault(pid, len(personas[sid]))
    k_max = max([len(v) for v in personas.values()] + [1])
    shape = (len(pairs), len(criteria), len(scenarios))
    votes = np.zeros(shape + (k_max,), dtype=np.int8)
    fixed = np.full(shape, np.nan)
    fixed_mask = np.zeros(shape, dtype=bool)
    present = np.zeros(shape, dtype=bool)
    words = np.full((len(pairs), len(scenarios), 2), np.nan)
    for (sid, a, b, c), d in latest.items():
        p, flipped = pair_index[(a, b)]
        s, ci = scen_index[sid], crit_index[c]
        present[p, ci, s] = True
        sign = -1 if flipped else 1
        if d.get("votes") is not None:
            for pid, vote in d["votes"].items():
                if vote in ("a", "b"):
                    votes[p, ci, s, personas[sid][pid]] = sign * (1 if vote == "a" else -1)
        else:
            outcome = {"a": 1.0, "b": 0.0, "tie": 0.5}.get(d.get("majority"), np.nan)
            fixed[p, ci, s] = (1.0 - outcome) if flipped and outcome == outcome else outcome
            fixed_mask[p, ci, s] = True
        if "response_a" in d and "response_b" in d:
            lengths = (word_count(d["response_a"]), word_count(d["response_b"]))
            words[p, s] = lengths[::-1] if flipped else lengths
    counts = np.array([max(1, len(personas[s])) for s in scenarios], dtype=int)
    return VoteTable(models, criteria, pairs, scenarios, counts, votes, fixed, fixed_mask, present, words)


def _outcomes(votes: np.ndarray, fixed: np.ndarray, fixed_mask: np.ndarray, present: np.ndarray) -> np.ndarray:
    """Majority per (pair, criterion, scenario): 1 A, 0.5 tie, 0 B, NaN no decision."""
    margin = votes.sum(axis=-1, dtype=np.int32)
    valid = (votes != 0).sum(axis=-1)
    score = np.where(margin > 0, 1.0, np.where(margin < 0, 0.0, 0.5))
    score = np.where((valid > 0) & present, score, np.nan)
    return np.where(fixed_mask, fixed, score)


# ---------------------------------------------------------------------------
# Statistics of one (observed or resampled) set of outcomes


def _pair_counts(score: np.ndarray) -> dict[str, np.ndarray]:
    decided = np.isfinite(score)
    wins_a = (score == 1.0).sum(axis=-1)
    wins_b = (score == 0.0).sum(axis=-1)
    ties = (score == 0.5).sum(axis=-1)
    return {"wins_a": wins_a, "wins_b": wins_b, "ties": ties, "decisions": decided.sum(axis=-1)}


def _model_statistics(table: VoteTable, score: np.ndarray, x: np.ndarray | None) -> dict[str, np.ndarray]:
    """(M, C) arrays: average pairwise win rate, tie rate and, when x is given, the length-controlled rate."""
    n_models, n_crit = len(table.models), len(table.criteria)
    counts = _pair_counts(score)
    dec = counts["decisions"].astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_a = np.where(dec > 0, counts["wins_a"] / dec, np.nan)
        rate_b = np.where(dec > 0, counts["wins_b"] / dec, np.nan)
    lc_a = None
    if x is not None:
        lc_a = np.full(rate_a.shape, np.nan)
        for ci in range(n_crit):
            lc_a[:, ci] = fit_length_controlled(score[:, ci, :], x)
    sums = np.zeros((n_models, n_crit))
    n_opp = np.zeros((n_models, n_crit))
    lc_sums = np.zeros((n_models, n_crit))
    ties = np.zeros((n_models, n_crit))
    decisions = np.zeros((n_models, n_crit))
    index = {m: i for i, m in enumerate(table.models)}
    for p, (a, b) in enumerate(table.pairs):
        for me, rate, lc in ((index[a], rate_a[p], None if lc_a is None else lc_a[p]),
                             (index[b], rate_b[p], None if lc_a is None else 1.0 - lc_a[p])):
            ok = np.isfinite(rate)
            sums[me] += np.where(ok, rate, 0.0)
            n_opp[me] += ok
            if lc is not None:
                lc_sums[me] += np.where(ok, lc, 0.0)
            ties[me] += counts["ties"][p]
            decisions[me] += dec[p]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = {"apwr": np.where(n_opp > 0, sums / n_opp, np.nan),
               "tie_rate": np.where(decisions > 0, ties / decisions, np.nan),
               "pair_rate_a": rate_a}
        if lc_a is not None:
            out["lc"] = np.where(n_opp > 0, lc_sums / n_opp, np.nan)
            out["pair_lc_a"] = lc_a
    return out


def fit_length_controlled(score: np.ndarray, x: np.ndarray, ridge: float = LC_RIDGE) -> np.ndarray:
    """Per pairing, the length-controlled preference for A: sigmoid(alpha_pair) of
    ``logit P(A) = alpha_pair + gamma * x`` fitted on the decided cells (score: (P, S) in {1, .5, 0, NaN};
    x: (P, S) transformed length differences). NaN for a pairing with no decision."""
    decided = np.isfinite(score)
    rows_p, rows_s = np.nonzero(decided)
    n_pairs = score.shape[0]
    result = np.full(n_pairs, np.nan)
    if rows_p.size == 0:
        return result
    y = score[rows_p, rows_s]
    xv = np.nan_to_num(x[rows_p, rows_s])
    theta = np.zeros(n_pairs + 1)  # alphas, then gamma

    def objective(t):
        eta = t[rows_p] + t[-1] * xv
        # log-likelihood with soft labels: y*log(s) + (1-y)*log(1-s) = y*eta - log(1+e^eta)
        return float(np.sum(y * eta - np.logaddexp(0.0, eta)) - 0.5 * ridge * np.dot(t, t))

    current = objective(theta)
    for _ in range(100):
        eta = theta[rows_p] + theta[-1] * xv
        mu = 1.0 / (1.0 + np.exp(-eta))
        w = mu * (1.0 - mu)
        resid = y - mu
        grad = np.empty(n_pairs + 1)
        grad[:-1] = np.bincount(rows_p, weights=resid, minlength=n_pairs)
        grad[-1] = np.dot(resid, xv)
        grad -= ridge * theta
        hess = np.zeros((n_pairs + 1, n_pairs + 1))
        hess[np.arange(n_pairs), np.arange(n_pairs)] = np.bincount(rows_p, weights=w, minlength=n_pairs)
        cross = np.bincount(rows_p, weights=w * xv, minlength=n_pairs)
        hess[:-1, -1] = cross
        hess[-1, :-1] = cross
        hess[-1, -1] = np.dot(w, xv * xv)
        hess += ridge * np.eye(n_pairs + 1)
        step = np.linalg.solve(hess, grad)
        size = 1.0
        while size > 1e-6:  # backtracking keeps each Newton step an ascent step
            candidate = theta + size * step
            value = objective(candidate)
            if value >= current - 1e-12:
                break
            size /= 2.0
        theta, previous, current = candidate, current, value
        if abs(current - previous) < 1e-10 and np.max(np.abs(size * step)) < 1e-8:
            break
    has_rows = np.bincount(rows_p, minlength=n_pairs) > 0
    result[has_rows] = 1.0 / (1.0 + np.exp(-theta[:-1][has_rows]))
    return result


def _length_feature(table: VoteTable) -> np.ndarray | None:
    diff = table.words[:, :, 0] - table.words[:, :, 1]
    finite = diff[np.isfinite(diff)]
    if finite.size == 0:
        return None
    scale = float(np.std(finite))
    if scale == 0.0:
        return np.zeros_like(diff)
    return np.tanh(diff / scale)


# ---------------------------------------------------------------------------
# The bootstrap


@dataclass
class BootstrapResult:
    table: VoteTable
    samples: int
    seed: int
    observed: dict[str, np.ndarray]  # name -> (M, C) or (P, C)
    replicates: dict[str, np.ndarray]  # name -> (B, M, C) or (B, P, C)
    length_controlled: bool

    def model_index(self, model: str) -> int:
        return self.table.models.index(model)

    def criterion_index(self, criterion: str) -> int:
        return self.table.criteria.index(criterion)

    def interval(self, name: str, model: str, criterion: str) -> list[float] | None:
        """The interval of a per-model statistic (``apwr``, ``tie_rate``, ``lc``)."""
        return self.interval_at(name, self.model_index(model), self.criterion_index(criterion))

    def interval_at(self, name: str, row: int, criterion_index: int) -> list[float] | None:
        return bootstrap_interval(self.replicates[name][:, row, criterion_index],
                                  float(self.observed[name][row, criterion_index]))

    def estimate(self, name: str, model: str, criterion: str) -> float | None:
        value = float(self.observed[name][self.model_index(model), self.criterion_index(criterion)])
        return value if math.isfinite(value) else None

    def difference(self, name: str, first: str, second: str, criterion: str) -> tuple[float | None, list[float] | None]:
        """first - second on one statistic, with the paired bootstrap interval of the difference."""
        i, j, c = self.model_index(first), self.model_index(second), self.criterion_index(criterion)
        estimate = float(self.observed[name][i, c] - self.observed[name][j, c])
        interval = bootstrap_interval(self.replicates[name][:, i, c] - self.replicates[name][:, j, c], estimate,
                                      bounds=(-1.0, 1.0))
        return (estimate if math.isfinite(estimate) else None), interval


def bootstrap_evaluation(decisions: Sequence[dict], models: Sequence[str], criteria: Sequence[str], *,
                         samples: int = 1000, seed: int = 0, length_control: bool = True) -> BootstrapResult:
    """Observed statistics and their two-level bootstrap replicates (see the module docstring)."""
    table = build_vote_table(decisions, models, criteria)
    x = _length_feature(table) if length_control else None
    observed_score = _outcomes(table.votes, table.fixed, table.fixed_mask, table.present)
    observed = _model_statistics(table, observed_score, x)
    n_s = len(table.scenarios)
    replicates: dict[str, list[np.ndarray]] = {name: [] for name in observed}
    rng = np.random.default_rng(seed)
    k_max = table.votes.shape[-1]
    if n_s:
        for _ in range(samples):
            s_idx = rng.integers(0, n_s, size=n_s)
            counts = table.persona_counts[s_idx]
            k_idx = np.floor(rng.random((n_s, k_max)) * counts[:, None]).astype(int)
            keep = np.arange(k_max)[None, :] < counts[:, None]
            votes = table.votes[:, :, s_idx[:, None], k_idx] * keep
            score = _outcomes(votes, table.fixed[:, :, s_idx], table.fixed_mask[:, :, s_idx], table.present[:, :, s_idx])
            stats = _model_statistics(table, score, None if x is None else x[:, s_idx])
            for name, value in stats.items():
                replicates[name].append(value)
    stacked = {name: (np.stack(values) if values else np.full((0,) + observed[name].shape, np.nan))
               for name, values in replicates.items()}
    return BootstrapResult(table, samples, seed, observed, stacked, x is not None)
