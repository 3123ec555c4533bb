"""Statistics of a rating study, free of Django: plain lists and dicts in, plain
(JSON-ready) dicts out.

Choices are in SOURCE terms: "a" (source A better), "b" (source B better),
"tie". Every statistic is a dict ``{"value", "ci", "undefined"}``: when a
statistic is not defined for the data (no pairs, or kappa with no variation:
expected agreement of 1), ``value`` is None and ``undefined`` says why; it is
never reported as a number.

Libraries do the statistics: scipy (exact binomial test and Clopper-Pearson
intervals), statsmodels (Cohen's and Fleiss' kappa), krippendorff (alpha,
nominal). Confidence intervals for agreement are percentile bootstrap intervals
over items (resampling items with replacement, seeded).
"""
from __future__ import annotations

import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from itertools import combinations

import krippendorff
import numpy as np
from scipy.stats import binomtest
from statsmodels.stats.inter_rater import cohens_kappa, fleiss_kappa

CATEGORIES = ("a", "b", "tie")
INDEX = {c: i for i, c in enumerate(CATEGORIES)}
CONFIDENCE = 0.95


def stat(value=None, ci=None, undefined: str | None = None, **extra) -> dict:
    if value is not None:
        value = float(value)
        if not np.isfinite(value):
            value, undefined = None, undefined or "not defined for these data"
    return {"value": value, "ci": list(ci) if ci is not None else None, "undefined": undefined if value is None else None, **extra}


def proportion_ci(k: int, n: int, confidence: float = CONFIDENCE):
    """Exact (Clopper-Pearson) interval for k successes in n trials; None when n == 0."""
    if n == 0:
        return None
    interval = binomtest(k, n).proportion_ci(confidence_level=confidence, method="exact")
    return [float(interval.low), float(interval.high)]


def sign_test(wins: int, losses: int) -> float | None:
    """Two-sided exact binomial (sign) test of wins against losses, ties left out.
    On paired outcomes this is the exact McNemar test on the discordant cells."""
    if wins + losses == 0:
        return None
    return float(binomtest(wins, wins + losses, 0.5).pvalue)


def win_loss_tie(choices: Sequence[str]) -> dict:
    """Source A's wins, losses and ties against source B over a list of choices."""
    counts = Counter(choices)
    unknown = set(counts) - set(CATEGORIES)
    if unknown:
        raise ValueError(f"unknown choices: {sorted(unknown)}")
    n = len(choices)
    wins, losses, ties = counts["a"], counts["b"], counts["tie"]
    decisive = wins + losses

    def pct(k):
        return 100.0 * k / n if n else None

    def pct_ci(k):
        ci = proportion_ci(k, n)
        return [100.0 * ci[0], 100.0 * ci[1]] if ci else None

    p = sign_test(wins, losses)
    share_ci = proportion_ci(wins, decisive)
    return {
        "n": n,
        "wins": wins,
        "losses": losses,
        "ties": ties,
        "win_pct": pct(wins),
        "loss_pct": pct(losses),
        "tie_pct": pct(ties),
        "win_ci": pct_ci(wins),
        "loss_ci": pct_ci(losses),
        "tie_ci": pct_ci(ties),
        "sign_test_p": p,
        "sign_test_undefined": None if p is not None else "no decisive judgments (all ties or none)",
        "win_share_decisive": 100.0 * wins / decisive if decisive else None,
        "win_share_ci": [100.0 * share_ci[0], 100.0 * share_ci[1]] if share_ci else None,
    }


def majority(choices: Sequence[str]) -> str | None:
    """The choice made by more than half of the raters, or None."""
    if not choices:
        return None
    choice, count = Counter(choices).most_common(1)[0]
    return choice if count * 2 > len(choices) else None


def counts_matrix(ratings: Sequence[Sequence[str]]) -> np.ndarray:
    """items x categories: how many raters chose each category for each item."""
    table = np.zeros((len(ratings), len(CATEGORIES)), dtype=float)
    for row, choices in enumerate(ratings):
        for choice in choices:
            table[row, INDEX[choice]] += 1
    return table


# --- Agreement statistics on an items x categories count table ----------------------------------


def _pairable(counts: np.ndarray) -> np.ndarray:
    return counts[counts.sum(axis=1) >= 2]


def percent_agreement_value(counts: np.ndarray) -> tuple[float | None, str | None]:
    """Share of rater pairs (pairs of ratings of the same item) that agree."""
    counts = _pairable(counts)
    if len(counts) == 0:
        return None, "no item has two ratings"
    totals = counts.sum(axis=1)
    agreeing = (counts * (counts - 1) / 2).sum()
    pairs = (totals * (totals - 1) / 2).sum()
    return float(agreeing / pairs), None


def _only_one_category(counts: np.ndarray) -> bool:
    return int((counts.sum(axis=0) > 0).sum()) < 2


def fleiss_value(counts: np.ndarray) -> tuple[float | None, str | None]:
    """Fleiss' kappa (statsmodels). Needs the same number (>= 2) of raters per item."""
    counts = _pairable(counts)
    if len(counts) == 0:
        return None, "no item has two ratings"
    totals = counts.sum(axis=1)
    if not np.all(totals == totals[0]):
        return None, "items have different numbers of ratings"
    if _only_one_category(counts):
        return None, "every rating is the same category (no variation: expected agreement is 1)"
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(fleiss_kappa(counts, method="fleiss"))
    if not np.isfinite(value):
        return None, "not defined for these data"
    return value, None


def alpha_value(counts: np.ndarray) -> tuple[float | None, str | None]:
    """Krippendorff's alpha, nominal (krippendorff package); items with one rating are unpairable."""
    counts = _pairable(counts)
    if len(counts) == 0:
        return None, "no item has two ratings"
    if _only_one_category(counts):
        return None, "every rating is the same category (no variation: expected disagreement is 0)"
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(krippendorff.alpha(value_counts=counts, level_of_measurement="nominal"))
    if not np.isfinite(value):
        return None, "not defined for these data"
    return value, None


def _cohen_table(x: np.ndarray, y: np.ndarray) -> tuple[float | None, str | None]:
    if len(x) == 0:
        return None, "no items rated by both"
    k = len(CATEGORIES)
    table = np.bincount(x * k + y, minlength=k * k).reshape(k, k).astype(float)
    n = table.sum()
    expected = float((table.sum(axis=1) / n) @ (table.sum(axis=0) / n))
    if expected >= 1.0 - 1e-12:
        return None, "both raters gave one and the same category throughout (no variation: expected agreement is 1)"
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        value = float(cohens_kappa(table, return_results=False))
    if not np.isfinite(value):
        return None, "not defined for these data"
    return value, None


def _codes(choices: Sequence[str]) -> np.ndarray:
    return np.array([INDEX[c] for c in choices], dtype=int)


def cohen_value(first: Sequence[str], second: Sequence[str]) -> tuple[float | None, str | None]:
    """Cohen's kappa (statsmodels, on the 3x3 contingency table) of two raters on the same items."""
    if len(first) != len(second):
        raise ValueError("two raters need ratings of the same items")
    return _cohen_table(_codes(first), _codes(second))


def cohen_with_ci(first: Sequence[str], second: Sequence[str], *, n_boot: int, rng: np.random.Generator) -> dict:
    x, y = _codes(first), _codes(second)
    value, undefined = _cohen_table(x, y)
    ci = None
    if value is not None and n_boot > 0 and len(x) >= 2:
        values = []
        for _ in range(n_boot):
            idx = rng.integers(0, len(x), size=len(x))
            v, _u = _cohen_table(x[idx], y[idx])
            if v is not None:
                values.append(v)
        ci = _percentile_ci(values, n_boot)
    return stat(value, ci, undefined)


def _percentile_ci(values, n_boot: int, confidence: float = CONFIDENCE):
    if len(values) < max(10, n_boot // 10):
        return None
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap_ci(counts: np.ndarray, statistic, *, n_boot: int, rng: np.random.Generator, confidence: float = CONFIDENCE):
    """Percentile bootstrap over items (rows of ``counts``). Replicates where the
    statistic is undefined are dropped and counted. Returns (ci | None, n_valid)."""
    counts = _pairable(counts)
    if n_boot <= 0 or len(counts) < 2:
        return None, 0
    values = []
    for _ in range(n_boot):
        sample = counts[rng.integers(0, len(counts), size=len(counts))]
        value, _undefined = statistic(sample)
        if value is not None:
            values.append(value)
    return _percentile_ci(values, n_boot, confidence), len(values)


def _with_ci(counts, statistic, *, n_boot, rng) -> dict:
    value, undefined = statistic(counts)
    ci, valid = bootstrap_ci(counts, statistic, n_boot=n_boot, rng=rng) if value is not None else (None, 0)
    return stat(value, ci, undefined, bootstrap_valid=valid)


def agreement(ratings: Mapping, *, n_boot: int = 1000, pair_boot: int | None = None, seed: int = 0) -> dict:
    """Inter-clinician agreement on one dimension.

    ``ratings``: {item: {rater: choice}}. Returns percent agreement (pairs of
    ratings of the same item), Fleiss' kappa (items with the most common number
    of ratings, >= 2), Krippendorff's alpha (all items with >= 2 ratings), each
    with a bootstrap CI over items, and Cohen's kappa per rater pair on the items
    both rated (``pair_boot`` resamples each, default ``n_boot``)."""
    rng = np.random.default_rng(seed)
    pair_boot = n_boot if pair_boot is None else pair_boot
    items = [item for item in ratings if len(ratings[item]) >= 2]
    counts = counts_matrix([list(ratings[item].values()) for item in items])
    sizes = Counter(int(n) for n in counts.sum(axis=1))
    fleiss_n = max(sizes, key=lambda n: (sizes[n], n)) if sizes else 0
    fleiss_counts = counts[counts.sum(axis=1) == fleiss_n] if sizes else counts
    result = {
        "n_items": len(items),
        "percent_agreement": _with_ci(counts, percent_agreement_value, n_boot=n_boot, rng=rng),
        "fleiss_kappa": _with_ci(fleiss_counts, fleiss_value, n_boot=n_boot, rng=rng),
        "krippendorff_alpha": _with_ci(counts, alpha_value, n_boot=n_boot, rng=rng),
        "fleiss_items": int(len(fleiss_counts)),
        "fleiss_raters_per_item": fleiss_n,
    }
    raters = sorted({r for item in ratings.values() for r in item}, key=str)
    pairs = []
    for r1, r2 in combinations(raters, 2):
        common = [item for item in ratings if r1 in ratings[item] and r2 in ratings[item]]
        first = [ratings[i][r1] for i in common]
        second = [ratings[i][r2] for i in common]
        agree = sum(1 for x, y in zip(first, second) if x == y)
        pairs.append({
            "raters": [r1, r2],
            "n_items": len(common),
            "percent_agreement": stat(agree / len(common) if common else None, None,
                                      None if common else "no items rated by both"),
            "cohen_kappa": cohen_with_ci(first, second, n_boot=pair_boot, rng=rng),
        })
    result["cohen_pairs"] = pairs
    return result


def judge_agreement(ratings: Mapping, judge: Mapping) -> dict:
    """How often an automatic judge agrees with clinicians on one dimension.

    ``ratings``: {item: {clinician: choice}}; ``judge``: {item: choice}. Only
    items both have count. Returns:

    - ``vs_clinicians``: share of (item, clinician) ratings the judge agrees
      with, pooled (the study's 70.3%);
    - ``vs_majority``: share of items with a clinician majority (more than half)
      where the judge chose the majority's answer;
    - ``per_clinician``: agreement and Cohen's kappa with each clinician;
    - ``clinician_pairwise``: clinician-to-clinician agreement on the same
      items (pairs of ratings of one item), the yardstick (the study's 65.5%)."""
    items = [i for i in ratings if i in judge and ratings[i]]
    agree = total = 0
    per: dict = {}
    majority_agree = majority_items = no_majority = 0
    for item in items:
        decision = judge[item]
        for clinician, choice in ratings[item].items():
            total += 1
            agree += choice == decision
            per.setdefault(clinician, ([], []))
            per[clinician][0].append(choice)
            per[clinician][1].append(decision)
        top = majority(list(ratings[item].values()))
        if top is None:
            no_majority += 1
        else:
            majority_items += 1
            majority_agree += top == decision
    per_clinician = []
    for clinician in sorted(per, key=str):
        theirs, judged = per[clinician]
        kappa, undefined = cohen_value(theirs, judged)
        hits = sum(1 for x, y in zip(theirs, judged) if x == y)
        per_clinician.append({
            "clinician": clinician,
            "n": len(theirs),
            "agree": hits,
            "percent_agreement": stat(hits / len(theirs)),
            "cohen_kappa": stat(kappa, None, undefined),
        })
    counts = counts_matrix([list(ratings[i].values()) for i in items])
    pairwise, pairwise_undefined = percent_agreement_value(counts)
    return {
        "n_items": len(items),
        "vs_clinicians": stat(agree / total if total else None, None, None if total else "no items in common", n=total, agree=agree),
        "vs_majority": stat(
            majority_agree / majority_items if majority_items else None, None,
            None if majority_items else "no item has a clinician majority",
            n=majority_items, agree=majority_agree, no_majority=no_majority,
        ),
        "per_clinician": per_clinician,
        "clinician_pairwise": stat(pairwise, None, pairwise_undefined),
    }


def position_bias(sides: Sequence[str]) -> dict:
    """How often the LEFT response won, from choices in screen terms
    ("left"/"right"/"tie"), with an exact binomial test against 50%."""
    counts = Counter(sides)
    left, right, ties = counts["left"], counts["right"], counts["tie"]
    decisive = left + right
    p = sign_test(left, right)
    return {
        "n": len(sides),
        "left": left,
        "right": right,
        "ties": ties,
        "left_share": stat(left / decisive if decisive else None, proportion_ci(left, decisive),
                           None if decisive else "no decisive choices"),
        "p_value": p,
    }
