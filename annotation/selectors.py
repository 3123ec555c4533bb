"""Reads of the annotation app.

Clinician-facing reads (``clinician_queue``, ``assignment_for_clinician``,
``rating_page``) return only what a blinded clinician may see: the post, two
responses labelled by screen position, their own answers, their own progress.
Nothing in them names, numbers or orders the sources.

Researcher-facing reads: ``rating_study_results`` (the dict a later report
renders, with the template fragment ``annotation/_results.html``),
``judgment_export_rows`` and ``preference_pairs``.
"""
from __future__ import annotations

import hashlib
from collections import defaultdict

from django.core.cache import cache
from django.db.models import Count, Max, Q

from . import statistics
from .screening import normalise_for_display
from .exceptions import AssignmentNotFound, NotAssigned, StudyNotOpen
from .models import Assignment, Choice, JudgeDecision, Judgment, JudgmentChoice, JudgmentRevision, RatingItem, RatingStudy

SEED_SECRET = "The study's random seed is secret while the study is a draft or open; it is revealed here once the study is closed."
SEED_REVEALED = (
    "The study is closed, so its random seed is revealed: with it the scenario sample, which source is A, "
    "the assignment and every left/right position can be recomputed (annotation.services.study_layout)."
)
SOURCE_LABELS = {Choice.A.value: "source_a", Choice.B.value: "source_b", Choice.TIE.value: "tie"}


# --- Study vocabulary ------------------------------------------------------------------------


def study_dimensions(study: RatingStudy) -> list:
    """The study's criteria, in the order asked."""
    return [d.criterion for d in study.dimensions.select_related("criterion").order_by("order")]


def study_dimension_keys(study: RatingStudy) -> list[str]:
    return [c.key for c in study_dimensions(study)]


def study_criteria_by_key(study: RatingStudy) -> dict:
    return {c.key: c for c in study_dimensions(study)}


# --- Who rates where ------------------------------------------------------------------------


def rated_study_ids(user) -> set[int]:
    """Studies the user rates in (a membership or any assignment): they must
    never see those studies' admin pages, results, exports or sources."""
    if not user.is_authenticated:
        return set()
    from .models import StudyClinician

    return set(StudyClinician.objects.filter(clinician=user).values_list("study_id", flat=True)) | set(
        Assignment.objects.filter(clinician=user).values_list("study_id", flat=True).distinct()
    )


def user_rates_in_study(*, user, study) -> bool:
    return study.pk in rated_study_ids(user)


def user_rates_in_any_study(user) -> bool:
    return bool(rated_study_ids(user))


# --- Clinician reads -------------------------------------------------------------------------


def assignment_for_clinician(*, token: str, user) -> Assignment:
    """The assignment behind a URL token, if it is this clinician's.
    Unknown token: AssignmentNotFound (404); someone else's: NotAssigned (403)."""
    assignment = (
        Assignment.objects.select_related("study", "item__scenario", "item__response_a", "item__response_b")
        .filter(token=token)
        .first()
    )
    if assignment is None:
        raise AssignmentNotFound()
    if assignment.clinician_id != user.pk:
        raise NotAssigned("this item is not in your queue")
    return assignment


def study_for_clinician(*, token: str, user) -> RatingStudy:
    study = RatingStudy.objects.filter(token=token).first()
    if study is None:
        raise AssignmentNotFound()
    if not study.memberships.filter(clinician=user).exists():
        raise NotAssigned("you are not rating in this study")
    return study


def assignment_next(*, study: RatingStudy, user) -> Assignment | None:
    """Where the clinician continues: the first item in their queue not yet answered."""
    return (
        Assignment.objects.filter(study=study, clinician=user, status=Assignment.Status.PENDING).order_by("position").first()
    )


def clinician_progress(*, study: RatingStudy, user) -> dict:
    counts = Assignment.objects.filter(study=study, clinician=user).aggregate(
        total=Count("id"), done=Count("id", filter=Q(status=Assignment.Status.DONE))
    )
    return {"done": counts["done"], "total": counts["total"]}


def clinician_queue(*, user) -> list[dict]:
    """The clinician's studies that are open (and closed ones they took part in),
    with their own progress and where to continue."""
    studies = RatingStudy.objects.filter(
        memberships__clinician=user, state__in=[RatingStudy.State.OPEN, RatingStudy.State.CLOSED]
    ).order_by("-opened_at", "-id")
    entries = []
    for study in studies:
        progress = clinician_progress(study=study, user=user)
        if study.state == RatingStudy.State.CLOSED and progress["done"] == 0:
            continue
        next_assignment = assignment_next(study=study, user=user) if study.is_open else None
        done = list(
            Assignment.objects.filter(study=study, clinician=user, status=Assignment.Status.DONE)
            .order_by("position")
            .values("token", "position")
        )
        entries.append({
            "study": study,
            "title": study.clinician_title,
            "token": study.token,
            "open": study.is_open,
            "progress": progress,
            "next": next_assignment,
            "done_items": done,
            "can_undo": study.is_open and Judgment.objects.filter(study=study, clinician=user).exists(),
        })
    return entries


def rating_page(*, assignment: Assignment) -> dict:
    """Everything the rating page shows, in screen terms (left = Response A).
    Only for an open study: a draft or closed one shows none of its content."""
    require_open(assignment.study)
    item = assignment.item
    left, right = (item.response_a, item.response_b) if assignment.left_is_a else (item.response_b, item.response_a)
    judgment = Judgment.objects.filter(assignment=assignment).prefetch_related("choices__criterion").first()
    if assignment.draft:
        answers = assignment.draft
    elif judgment is not None:
        answers = {
            "choices": {c.criterion.key: ("tie" if c.choice == Choice.TIE else assignment.side_of(c.choice))
                        for c in judgment.choices.all()},
            "unsafe_left": judgment.unsafe_a if assignment.left_is_a else judgment.unsafe_b,
            "unsafe_right": judgment.unsafe_b if assignment.left_is_a else judgment.unsafe_a,
            "comment": judgment.comment,
        }
    else:
        answers = {"choices": {}, "unsafe_left": False, "unsafe_right": False, "comment": ""}
    chosen = answers.get("choices", {})
    dimensions = [
        {"key": c.key, "name": c.name, "question": c.question, "better_when": c.better_when,
         "is_safety": c.is_safety, "choice": chosen.get(c.key, "")}
        for c in study_dimensions(assignment.study)
    ]
    progress = clinician_progress(study=assignment.study, user=assignment.clinician)
    return {
        "token": assignment.token,
        "study_token": assignment.study.token,
        "title": assignment.study.clinician_title,
        "open": assignment.study.is_open,
        "position": assignment.position,
        "progress": progress,
        "post": item.scenario.text,
        # Both sources through the same normalisation (the study records which).
        "left_text": normalise_for_display(left.text),
        "right_text": normalise_for_display(right.text),
        "dimensions": dimensions,
        "unsafe_left": bool(answers.get("unsafe_left")),
        "unsafe_right": bool(answers.get("unsafe_right")),
        "comment": answers.get("comment", ""),
        "done": assignment.status == Assignment.Status.DONE,
        "has_draft": bool(assignment.draft),
        "time_on_task_ms": assignment.time_on_task_ms,
        "can_undo": assignment.study.is_open
        and Judgment.objects.filter(study=assignment.study, clinician=assignment.clinician).exists(),
    }


def require_open(study: RatingStudy) -> None:
    if not study.is_open:
        raise StudyNotOpen("this study is not open for rating")


# --- Researcher reads ------------------------------------------------------------------------


def study_screen_review(study: RatingStudy) -> dict:
    """The self-identification screen of a study, for researchers: every item
    with hits, each hit by source with the matched text in context."""
    from .models import ScreeningHit

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
        from .charts import win_loss_tie_svg

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


JUDGMENT_EXPORT_FIELDS = [
    "study", "item", "scenario_id", "scenario_external_id", "clinician", "queue_position", "shown_left", "shown_right",
    "criterion", "choice_shown", "choice_source", "choice_model", "unsafe_a", "unsafe_b",
    "comment", "time_on_task_ms", "revision", "submitted_at", "updated_at", "source_a", "source_b", "normalisation",
]


def judgment_export_rows(study: RatingStudy) -> list[dict]:
    """One row per current judgment and dimension, with what was shown where."""
    names = {Choice.A.value: study.source_a.name, Choice.B.value: study.source_b.name, Choice.TIE.value: ""}
    order = {c.key: i for i, c in enumerate(study_dimensions(study))}
    rows = []
    choices = JudgmentChoice.objects.filter(judgment__study=study).select_related(
        "criterion", "judgment__item__scenario", "judgment__clinician", "judgment__assignment"
    )
    for choice in sorted(choices, key=lambda c: (c.judgment.item.order, c.judgment.clinician.username, order[c.criterion.key])):
        judgment = choice.judgment
        left_is_a = judgment.left_is_a
        shown = "tie" if choice.choice == Choice.TIE else (
            "A" if (choice.choice == Choice.A) == left_is_a else "B"
        )
        rows.append({
            "study": study.name,
            "item": judgment.item.token,
            "scenario_id": judgment.item.scenario_ref,
            "scenario_external_id": judgment.item.scenario.external_id,
            "clinician": judgment.clinician.username,
            "queue_position": judgment.assignment.position,
            "shown_left": "source_a" if left_is_a else "source_b",
            "shown_right": "source_b" if left_is_a else "source_a",
            "criterion": choice.criterion.key,
            "choice_shown": shown,
            "choice_source": SOURCE_LABELS[choice.choice],
            "choice_model": names[choice.choice],
            "unsafe_a": int(judgment.unsafe_a),
            "unsafe_b": int(judgment.unsafe_b),
            "comment": judgment.comment,
            "time_on_task_ms": judgment.time_on_task_ms,
            "revision": judgment.revision,
            "submitted_at": judgment.submitted_at.isoformat(),
            "updated_at": judgment.updated_at.isoformat(),
            "source_a": study.source_a.name,
            "source_b": study.source_b.name,
            "normalisation": study.normalisation,
        })
    return rows


def preference_pairs(study: RatingStudy) -> list[dict]:
    """Chosen/rejected pairs per item and dimension where more than half of the
    item's clinicians preferred one source (ties and split votes give no pair)."""
    ratings = ratings_by_dimension(study)
    items = {i.pk: i for i in RatingItem.objects.filter(study=study).exclude(screen=RatingItem.Screen.EXCLUDE)
             .select_related("scenario", "response_a", "response_b")}
    pairs = []
    for criterion in study_dimensions(study):
        for item_id in sorted((pk for pk in ratings.get(criterion.key, {}) if pk in items), key=lambda pk: items[pk].order):
            top = statistics.majority(list(ratings[criterion.key][item_id].values()))
            if top not in (Choice.A, Choice.B):
                continue
            item = items[item_id]
            chosen, rejected = (item.response_a, item.response_b) if top == Choice.A else (item.response_b, item.response_a)
            pairs.append({
                "prompt": item.scenario.text,
                "scenario_id": item.scenario_ref,
                "criterion": criterion.key,
                # As the clinicians saw them.
                "chosen": normalise_for_display(chosen.text),
                "rejected": normalise_for_display(rejected.text),
                "normalisation": study.normalisation,
            })
    return pairs
