"""Researcher reads: the self-identification review and a study's results (cached; the template
fragment annotation/_results.html renders them)."""
from __future__ import annotations

import hashlib
from collections import defaultdict

from django.core.cache import cache
from django.db.models import Count, Max, Q

from .. import statistics
from ..models import Assignment, Choice, JudgeDecision, Judgment, JudgmentChoice, JudgmentRevision, RatingItem, RatingStudy
from .clinicians import study_dimension_keys, study_dimensions


SEED_SECRET = "The study's random seed is secret while the study is a draft or open; it is revealed here once the study is closed."
SEED_REVEALED = (
    "The study is closed, so its random seed is revealed: with it the scenario sample, which source is A, "
    "the assignment and every left/right position can be recomputed (annotation.services.study_layout)."
)
# --- Researcher reads ------------------------------------------------------------------------


def study_screen_review(study: RatingStudy) -> dict:
    """The self-identification screen of a study, for researchers: every item
    with hits, each hit by source with the matched text in context."""
    from ..models import ScreeningHit

    names = {"a": study.source_a.name, "b": study.source_b.name}
    by_item: dict = {}
    for hit in ScreeningHit.objects.filter(study=study).select_related("item__scenario").order_by("item__order", "source", "start"):
        entry = by_item.setdefault(hit.item_id, {"item": hit.item, "scenario_ref": hit.item.scenario_ref, "hits": []})
        entry["hits"].append({
            "source": f"source {hit.source.upper()}", "source_name": names[hit.source], "kind": hit.get_kind_display(),
            "term": hit.term, "before": hit.before, "matched": hit.matched, "after": hit.after,
        })
    items = list(by_item.values())
    counts = {state: sum(1 for e in items if e["item"].screen == state) for state in RatingItem.Screen.values}
    return {"items": items, "counts": counts, "screened_at": study.screened_at, "normalisation": study.normalisation,
            "editable": study.state == RatingStudy.State.DRAFT}


def _current_choices(study: RatingStudy):
    """[(item_id, clinician_username, criterion_key, choice, left_is_a)] of current judgments."""
    return JudgmentChoice.objects.filter(judgment__study=study).values_list(
        "judgment__item_id", "judgment__clinician__username", "criterion__key", "choice", "judgment__left_is_a"
    )


def ratings_by_dimension(study: RatingStudy) -> dict:
    """{criterion key: {item_id: {clinician: choice}}} in source terms."""
    result: dict = {key: {} for key in study_dimension_keys(study)}
    for item_id, clinician, key, choice, _left in _current_choices(study):
        result.setdefault(key, {}).setdefault(item_id, {})[clinician] = choice
    return result


def _fingerprint(study: RatingStudy) -> str:
    # The token is random per study, so a cache shared with another database
    # (a previous test run, another deployment) can never answer for this one.
    judgments = Judgment.objects.filter(study=study).aggregate(n=Count("id"), last=Max("updated_at"))
    decisions = JudgeDecision.objects.filter(study=study).aggregate(n=Count("id"), m=Max("id"), last=Max("imported_at"))
    parts = [
        study.token,
        study.state,
        judgments["n"],
        judgments["last"],
        JudgmentRevision.objects.filter(assignment__study=study).aggregate(m=Max("id"))["m"],
        decisions["n"],
        decisions["m"],
        decisions["last"],
    ]
    return hashlib.sha256(repr(parts).encode()).hexdigest()[:20]


def rating_study_results(
    study: RatingStudy, *, n_boot: int = 1000, pair_boot: int = 200, seed: int = 0, chart: bool = False, use_cache: bool = True
) -> dict:
    """Everything a report shows about a study, as plain data (JSON-ready).

    Keys: ``study`` (name, state, sources, counts), ``progress`` (per clinician),
    ``dimensions`` (per dimension: ``by_judgment`` and ``by_item_majority``
    win/loss/tie of source A against source B with exact sign-test p-values and
    95% CIs; ``agreement`` between clinicians: percent agreement, Fleiss' kappa,
    Krippendorff's alpha with bootstrap CIs over items, Cohen's kappa per pair;
    ``judges``: agreement of each imported judge with each clinician, with the
    clinician majority, beside clinician-to-clinician agreement),
    ``position_bias`` (per clinician: how often the left response won),
    ``unsafe`` (flags per source), ``judges`` (names), ``method`` (settings and
    definitions). Undefined statistics have ``value`` None and an ``undefined``
    reason. ``chart=True`` adds ``chart_svg`` (win/tie/loss bars).

    ``n_boot`` resamples items for the study-wide agreement CIs, ``pair_boot``
    for each clinician pair's kappa CI. Results are cached until a judgment,
    undo or judge import changes the data."""
    key = f"annotation:results:{study.pk}:{_fingerprint(study)}:{n_boot}:{pair_boot}:{seed}:{int(chart)}"
    if use_cache:
        cached = cache.get(key)
        if cached is not None:
            return cached
    result = _compute_results(study, n_boot=n_boot, pair_boot=pair_boot, seed=seed)
    if chart:
        from ..charts import win_loss_tie_svg

        result["chart_svg"] = win_loss_tie_svg(result)
    if use_cache:
        cache.set(key, result, 60 * 60)
    return result


def _compute_results(study: RatingStudy, *, n_boot: int, pair_boot: int, seed: int) -> dict:
    dimensions = study_dimensions(study)
    ratings = ratings_by_dimension(study)
    judgments = Judgment.objects.filter(study=study)
    n_items = study.items.exclude(screen=RatingItem.Screen.EXCLUDE).count()
    n_excluded = study.items.filter(screen=RatingItem.Screen.EXCLUDE).count()
    progress = list(
        Assignment.objects.filter(study=study)
        .values("clinician__username")
        .annotate(assigned=Count("id"), done=Count("id", filter=Q(status=Assignment.Status.DONE)))
        .order_by("clinician__username")
    )
    judge_rows = defaultdict(lambda: defaultdict(dict))
    synthetic_judges = set()
    decisions = JudgeDecision.objects.filter(study=study).exclude(item__screen=RatingItem.Screen.EXCLUDE)
    for judge_name, item_id, key, choice, synthetic in decisions.values_list(
        "judge_name", "item_id", "criterion__key", "choice", "synthetic"
    ):
        judge_rows[judge_name][key][item_id] = choice
        if synthetic:
            synthetic_judges.add(judge_name)
    judge_names = sorted(judge_rows)

    per_dimension = []
    for index, criterion in enumerate(dimensions):
        by_item = ratings.get(criterion.key, {})
        all_choices = [c for item in by_item.values() for c in item.values()]
        majorities = [statistics.majority(list(item.values())) for item in by_item.values()]
        decided = [m for m in majorities if m is not None]
        by_majority = statistics.win_loss_tie(decided)
        by_majority["no_majority"] = len(majorities) - len(decided)
        agreement = statistics.agreement(by_item, n_boot=n_boot, pair_boot=pair_boot, seed=seed + index)
        per_dimension.append({
            "key": criterion.key,
            "name": criterion.name,
            "is_safety": criterion.is_safety,
            "by_judgment": statistics.win_loss_tie(all_choices),
            "by_item_majority": by_majority,
            "agreement": agreement,
            "judges": [
                {"judge": name, "synthetic": name in synthetic_judges,
                 **statistics.judge_agreement(by_item, judge_rows[name].get(criterion.key, {}))}
                for name in judge_names
            ],
        })

    sides = defaultdict(list)
    for _item, clinician, _key, choice, left_is_a in _current_choices(study):
        if choice == Choice.TIE:
            sides[clinician].append("tie")
        else:
            sides[clinician].append("left" if (choice == Choice.A) == left_is_a else "right")
    position = [{"clinician": c, **statistics.position_bias(sides[c])} for c in sorted(sides)]

    flags = judgments.aggregate(
        a=Count("id", filter=Q(unsafe_a=True)),
        b=Count("id", filter=Q(unsafe_b=True)),
        both=Count("id", filter=Q(unsafe_a=True, unsafe_b=True)),
        n=Count("id"),
    )
    flagged_items = judgments.filter(Q(unsafe_a=True) | Q(unsafe_b=True)).values("item").distinct().count()
    return {
        "study": {
            "id": study.pk,
            "name": study.name,
            "state": study.state,
            "source_a": {"id": study.source_a_id, "name": study.source_a.name},
            "source_b": {"id": study.source_b_id, "name": study.source_b.name},
            "criteria_set": study.criteria_set.key,
            "overlap": study.overlap,
            "overlap_all": study.overlap_all,
            # The seed decides every position: revealed only once nobody can rate any more.
            "seed": study.seed if study.state == RatingStudy.State.CLOSED else None,
            "seed_note": SEED_REVEALED if study.state == RatingStudy.State.CLOSED else SEED_SECRET,
            "items": n_items,
            "excluded_items": n_excluded,
            "normalisation": study.normalisation,
            "clinicians": len(progress),
            "judgments": flags["n"],
            "complete_items": sum(
                1 for v in Assignment.objects.filter(study=study).values("item").annotate(
                    done=Count("id", filter=Q(status=Assignment.Status.DONE))).values_list("done", flat=True)
                if v >= study.overlap
            ),
        },
        "progress": [
            {"clinician": p["clinician__username"], "assigned": p["assigned"], "done": p["done"]} for p in progress
        ],
        "dimensions": per_dimension,
        "position_bias": position,
        "unsafe": {
            "judgments": flags["n"],
            "source_a": flags["a"],
            "source_b": flags["b"],
            "both": flags["both"],
            "items_flagged": flagged_items,
        },
        "judges": [{"name": n, "synthetic": n in synthetic_judges} for n in judge_names],
        "method": {
            "wins": "source A better than source B; losses: source B better; ties: judged equal",
            "by_judgment": "every clinician judgment counts once",
            "by_item_majority": "per item, the choice of more than half of its clinicians; items without one are left out",
            "sign_test": "two-sided exact binomial test of wins against losses, ties left out (= exact McNemar)",
            "ci": "95% Clopper-Pearson for percentages; 95% percentile bootstrap over items for agreement",
            "n_boot": n_boot,
            "pair_boot": pair_boot,
            "seed": seed,
            "judge_vs_clinicians": "share of clinician judgments the judge agrees with (pooled over clinicians)",
            "judge_vs_majority": "share of items with a clinician majority where the judge chose it",
            "clinician_pairwise": "share of agreeing pairs of clinician judgments on the same item (same items as the judge)",
        },
    }
