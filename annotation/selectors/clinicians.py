"""Study vocabulary, who rates where, and the clinician-facing reads: only what a blinded
clinician may see (the post, two responses labelled by screen position, their own answers and progress).
Nothing in them names, numbers or orders the sources."""
from __future__ import annotations

from django.db.models import Count, Q

from ..screening import normalise_for_display
from ..exceptions import AssignmentNotFound, NotAssigned, StudyNotOpen
from ..models import Assignment, Choice, Judgment, RatingStudy


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
    from ..models import StudyClinician

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
