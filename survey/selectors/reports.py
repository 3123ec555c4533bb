"""The researchers' dashboard: the funnel, crisis flags, and the cached study report."""
from __future__ import annotations

from django.db.models import Count, Max, Q

from core.models import Criterion

from ..models import Answer, CriteriaRanking, CrisisFlag, ImportanceRating, Participant, Study
from .cohorts import cohort_participants
from .participants import study_criteria


# --- Dashboard ------------------------------------------------------------------


def study_funnel(study: Study) -> dict[str, int]:
    statuses = Participant.Status
    counts = Participant.objects.filter(study=study).aggregate(
        started=Count("id"),
        consented=Count("id", filter=Q(consent__isnull=False) | Q(status=statuses.COMPLETED)),
        eligible=Count("id", filter=Q(eligible_at__isnull=False)),
        screened_out=Count("id", filter=Q(status=statuses.SCREENED_OUT)),  # rows from before they were deleted
        completed=Count("id", filter=Q(status=statuses.COMPLETED)),
        attention_flagged=Count("id", filter=Q(attention_flagged=True)),
    )
    # Withdrawn and screened-out participants' rows are deleted; the study counts them.
    withdrawn, screened_out = Study.objects.values_list("withdrawn_count", "screened_out_count").get(pk=study.pk)
    counts["withdrawn"] = withdrawn
    counts["screened_out"] += screened_out
    counts["started"] += withdrawn + screened_out
    counts["crisis_flagged"] = Participant.objects.filter(study=study, crisis_flags__isnull=False).distinct().count()
    return counts


def crisis_flags_open(study: Study):
    return CrisisFlag.objects.filter(participant__study=study, reviewed_at__isnull=True).select_related("participant")


def cohort_matrices(participants: list[Participant], criteria: list[Criterion]):
    """(ratings n×k with NaN for missing, rankings as index lists best first) of complete answers."""
    import numpy as np

    index = {c.key: i for i, c in enumerate(criteria)}
    ids = [p.pk for p in participants]
    ratings = np.full((len(ids), len(criteria)), np.nan)
    row = {pk: i for i, pk in enumerate(ids)}
    for pid, key, rating in ImportanceRating.objects.filter(participant_id__in=ids).values_list(
        "participant_id", "criterion__key", "rating"
    ):
        if key in index:
            ratings[row[pid], index[key]] = rating
    rankings = {}
    for pid, ranking in CriteriaRanking.objects.filter(participant_id__in=ids).values_list("participant_id", "ranking"):
        if set(ranking) == set(index):
            rankings[pid] = [index[k] for k in ranking]
    return ratings, [rankings.get(pk) for pk in ids]


def _report_fingerprint(study: Study) -> str:
    stats = Participant.objects.filter(study=study).aggregate(
        completed=Count("id", filter=Q(status=Participant.Status.COMPLETED)),
        last=Max("completed_at"),
    )
    withdrawn = Study.objects.values_list("withdrawn_count", flat=True).get(pk=study.pk)
    return f"{stats['completed']}-{withdrawn}-{stats['last'].timestamp() if stats['last'] else 0}"


def _report_cache_key(study: Study) -> str:
    # created_at in the key: another database (a test run, a restore) can reuse the study id.
    return f"survey:report:{study.pk}:{study.created_at.timestamp()}"


def study_report_forget(study: Study) -> None:
    """Drop the study's cached report (a withdrawal: no cache entry may hold their data)."""
    from django.core.cache import cache

    cache.delete(_report_cache_key(study))


def study_report(study: Study, *, n_boot_means: int = 1000, n_boot_pl: int = 200, seed: int = 0) -> dict:
    """The dashboard's statistics over completed participants (cached until the data changes):
    mean importance with bootstrap 95% intervals, top-rated and first-ranked shares,
    normalised Plackett–Luce weights with intervals, rating/ranking agreement."""
    from django.core.cache import cache

    # One entry per study (so a withdrawal can drop it), valid while the fingerprint matches.
    key = _report_cache_key(study)
    fingerprint = f"{_report_fingerprint(study)}:{n_boot_means}:{n_boot_pl}:{seed}"
    cached = cache.get(key)
    if cached is not None and cached.get("fingerprint") == fingerprint:
        return cached["report"]
    from .. import statistics

    criteria = study_criteria()
    participants = cohort_participants(study)
    ratings, rankings = cohort_matrices(participants, criteria)
    complete_rankings = [r for r in rankings if r is not None]
    k = len(criteria)
    means = statistics.bootstrap_mean(ratings, n_boot=n_boot_means, seed=seed) if participants else None
    top = statistics.top_rated_shares(ratings) if participants else [0.0] * k
    first = statistics.first_ranked_shares(complete_rankings, k)
    pl = statistics.plackett_luce_weights(complete_rankings, k, n_boot=n_boot_pl, seed=seed) if complete_rankings else None
    agreement = statistics.rating_ranking_agreement(ratings, rankings)
    rows = []
    for i, criterion in enumerate(criteria):
        rows.append({
            "key": criterion.key, "name": criterion.name,
            "mean": _num(means.value[i]) if means else None,
            "mean_low": _num(means.low[i]) if means else None,
            "mean_high": _num(means.high[i]) if means else None,
            "top_share": float(top[i]), "first_share": float(first[i]),
            "pl": float(pl.value[i]) if pl else None,
            "pl_low": float(pl.low[i]) if pl else None,
            "pl_high": float(pl.high[i]) if pl else None,
        })
    report = {
        "n": len(participants), "n_rankings": len(complete_rankings), "rows": rows,
        "agreement": {"n": agreement.n, "n_undefined": agreement.n_undefined, "mean": agreement.mean,
                      "median": agreement.median, "share_positive": agreement.share_positive,
                      "taus": [t for t in agreement.taus if t is not None]},
    }
    cache.set(key, {"fingerprint": fingerprint, "report": report}, timeout=600)
    return report


def _num(value) -> float | None:
    import math

    value = float(value)
    return None if math.isnan(value) else value


def crisis_flag_text(flag: CrisisFlag) -> str:
    """The words that matched: the free text of the flagged answer (the flag keeps no copy)."""
    answer = Answer.objects.filter(participant_id=flag.participant_id, item_key=flag.item_key).only("text").first()
    return answer.text if answer else ""
