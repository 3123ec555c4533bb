"""Clinician writes: answers arrive in SCREEN terms ("left" is what the page calls Response A) and are
stored in SOURCE terms. Drafts autosave; a submit is a new revision; undo reopens the last item."""
from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from core.audit import AuditAction, audit_record

from .. import selectors
from ..exceptions import InvalidInput, NotAssigned, NothingToUndo, StudyNotOpen
from ..models import Assignment, Choice, Judgment, JudgmentChoice, JudgmentRevision, RatingStudy, StudyClinician


SIDES = ("left", "right")
SCREEN_CHOICES = ("left", "right", "tie")
MAX_COMMENT_CHARS = 5000
MAX_TIME_ON_TASK_MS = 24 * 60 * 60 * 1000


def _lock_assignment(assignment: Assignment, clinician) -> Assignment:
    locked = Assignment.objects.select_for_update().select_related("study").get(pk=assignment.pk)
    if locked.clinician_id != clinician.pk:
        raise NotAssigned("this item is not in your queue")
    if locked.study.state != RatingStudy.State.OPEN:
        raise StudyNotOpen("this study is not open for rating")
    return locked


def _clean_time(value) -> int | None:
    if value is None or value == "":
        return None
    try:
        ms = int(value)
    except (TypeError, ValueError):
        raise InvalidInput("time_on_task_ms must be a whole number of milliseconds") from None
    if ms < 0:
        raise InvalidInput("time_on_task_ms cannot be negative")
    return min(ms, MAX_TIME_ON_TASK_MS)


def _clean_flag(value, name: str) -> bool:
    if isinstance(value, bool):
        return value
    if value in (None, "", "0", "false", "off"):
        return False
    if value in ("1", "true", "on", 1):
        return True
    raise InvalidInput(f"{name} must be true or false")


def _clean_answers(assignment: Assignment, *, choices, unsafe_left, unsafe_right, comment, complete: bool) -> dict:
    """Validate screen-term answers; returns {choices, unsafe_left, unsafe_right, comment}."""
    if not isinstance(choices, Mapping):
        raise InvalidInput("choices must map each dimension to left, right or tie")
    keys = selectors.study_dimension_keys(assignment.study)
    unknown = sorted(set(choices) - set(keys))
    if unknown:
        raise InvalidInput(f"unknown dimension: {', '.join(map(str, unknown))}")
    cleaned = {}
    for key in keys:
        value = choices.get(key)
        if value in (None, ""):
            continue
        if value not in SCREEN_CHOICES:
            raise InvalidInput(f"{key}: the choice must be left (Response A), right (Response B) or tie")
        cleaned[key] = value
    if complete:
        missing = [k for k in keys if k not in cleaned]
        if missing:
            raise InvalidInput(f"please choose for every dimension (missing: {', '.join(missing)})")
    if comment is None:
        comment = ""
    if not isinstance(comment, str):
        raise InvalidInput("comment must be text")
    if len(comment) > MAX_COMMENT_CHARS:
        raise InvalidInput(f"comment is longer than {MAX_COMMENT_CHARS} characters")
    return {
        "choices": cleaned,
        "unsafe_left": _clean_flag(unsafe_left, "unsafe_left"),
        "unsafe_right": _clean_flag(unsafe_right, "unsafe_right"),
        "comment": comment.strip(),
    }


def _to_source_terms(assignment: Assignment, screen: dict) -> dict:
    choices = {}
    for key, value in screen["choices"].items():
        choices[key] = Choice.TIE.value if value == "tie" else assignment.source_of(value)
    unsafe = {assignment.source_of("left"): screen["unsafe_left"], assignment.source_of("right"): screen["unsafe_right"]}
    return {"choices": choices, "unsafe_a": unsafe["a"], "unsafe_b": unsafe["b"], "comment": screen["comment"]}


def _to_screen_terms(assignment: Assignment, answers: dict) -> dict:
    choices = {k: ("tie" if v == Choice.TIE else assignment.side_of(v)) for k, v in answers["choices"].items()}
    unsafe = {assignment.side_of("a"): answers["unsafe_a"], assignment.side_of("b"): answers["unsafe_b"]}
    return {"choices": choices, "unsafe_left": unsafe["left"], "unsafe_right": unsafe["right"], "comment": answers["comment"]}


def _judgment_answers(judgment: Judgment) -> dict:
    return {
        "choices": {c.criterion.key: c.choice for c in judgment.choices.select_related("criterion")},
        "unsafe_a": judgment.unsafe_a,
        "unsafe_b": judgment.unsafe_b,
        "comment": judgment.comment,
    }


def _next_revision_number(assignment: Assignment) -> int:
    return (assignment.revisions.aggregate(n=Max("number"))["n"] or 0) + 1


def assignment_mark_shown(*, assignment: Assignment, clinician) -> None:
    """Record when the clinician first saw the item (no audit: not a decision)."""
    if assignment.clinician_id != clinician.pk:
        raise NotAssigned("this item is not in your queue")
    if assignment.first_shown_at is None and assignment.study.is_open:
        Assignment.objects.filter(pk=assignment.pk, first_shown_at__isnull=True).update(first_shown_at=timezone.now())


def assignment_draft_save(
    *, assignment: Assignment, clinician, choices=None, unsafe_left=False, unsafe_right=False, comment="", time_on_task_ms=None
) -> Assignment:
    """Autosave: keep unfinished answers (screen terms) so the clinician can stop
    and continue later. Drafts are working state, not decisions: not audited, and
    a submitted item keeps its judgment (its draft only pre-fills a change)."""
    with transaction.atomic():
        assignment = _lock_assignment(assignment, clinician)
        screen = _clean_answers(
            assignment, choices=choices or {}, unsafe_left=unsafe_left, unsafe_right=unsafe_right, comment=comment, complete=False
        )
        ms = _clean_time(time_on_task_ms)
        assignment.draft = screen
        assignment.draft_saved_at = timezone.now()
        fields = ["draft", "draft_saved_at"]
        if ms is not None and ms > assignment.time_on_task_ms:
            assignment.time_on_task_ms = ms
            fields.append("time_on_task_ms")
        assignment.save(update_fields=fields)
    return assignment


def judgment_submit(
    *, assignment: Assignment, clinician, choices, unsafe_left=False, unsafe_right=False, comment="", time_on_task_ms=None
) -> Judgment:
    """Save a clinician's answer for one item: exactly one Judgment per clinician
    and item. A resubmission changes that judgment and adds a history row; an
    identical resubmission (double submit, refresh) changes nothing.

    ``choices`` maps every study dimension to "left" (the page's Response A),
    "right" (Response B) or "tie"; ``unsafe_left``/``unsafe_right`` flag a
    response as unsafe, independently of any choice."""
    with transaction.atomic():
        assignment = _lock_assignment(assignment, clinician)
        screen = _clean_answers(
            assignment, choices=choices, unsafe_left=unsafe_left, unsafe_right=unsafe_right, comment=comment, complete=True
        )
        ms = _clean_time(time_on_task_ms)
        total_ms = max(assignment.time_on_task_ms, ms or 0)
        answers = _to_source_terms(assignment, screen)
        judgment = Judgment.objects.filter(assignment=assignment).first()
        if judgment is not None and _judgment_answers(judgment) == answers:
            if assignment.draft:
                assignment.draft = {}
                assignment.save(update_fields=["draft"])
            return judgment
        criteria = selectors.study_criteria_by_key(assignment.study)
        number = _next_revision_number(assignment)
        if judgment is None:
            event = JudgmentRevision.Event.SUBMITTED
            judgment = Judgment.objects.create(
                assignment=assignment,
                study=assignment.study,
                item_id=assignment.item_id,
                clinician=clinician,
                left_is_a=assignment.left_is_a,
                unsafe_a=answers["unsafe_a"],
                unsafe_b=answers["unsafe_b"],
                comment=answers["comment"],
                time_on_task_ms=total_ms,
                revision=number,
            )
            JudgmentChoice.objects.bulk_create(
                JudgmentChoice(judgment=judgment, criterion=criteria[k], choice=v) for k, v in answers["choices"].items()
            )
        else:
            event = JudgmentRevision.Event.CHANGED
            judgment.unsafe_a = answers["unsafe_a"]
            judgment.unsafe_b = answers["unsafe_b"]
            judgment.comment = answers["comment"]
            judgment.time_on_task_ms = total_ms
            judgment.revision = number
            judgment.save()
            for choice in judgment.choices.select_related("criterion"):
                new = answers["choices"][choice.criterion.key]
                if choice.choice != new:
                    choice.choice = new
                    choice.save(update_fields=["choice"])
        JudgmentRevision.objects.create(
            assignment=assignment, number=number, event=event, answers=answers,
            left_is_a=assignment.left_is_a, time_on_task_ms=total_ms,
        )
        assignment.status = Assignment.Status.DONE
        assignment.completed_at = timezone.now()
        assignment.draft = {}
        assignment.time_on_task_ms = total_ms
        assignment.save(update_fields=["status", "completed_at", "draft", "time_on_task_ms"])
        audit_record(
            actor=clinician,
            action=AuditAction.ANNOTATION_JUDGMENT_SUBMIT if event == JudgmentRevision.Event.SUBMITTED else AuditAction.ANNOTATION_JUDGMENT_CHANGE,
            target=judgment,
            details={"study": assignment.study_id, "assignment": assignment.token, "revision": number},
        )
    return judgment


def judgment_undo(*, study: RatingStudy, clinician) -> Assignment:
    """Undo the clinician's most recent answer in this study: the judgment is
    withdrawn (its history stays), the item goes back into the queue with the
    withdrawn answers pre-filled, and it becomes the next item. Returns it."""
    with transaction.atomic():
        study = RatingStudy.objects.get(pk=study.pk)
        if not StudyClinician.objects.filter(study=study, clinician=clinician).exists():
            raise NotAssigned("you are not rating in this study")
        if study.state != RatingStudy.State.OPEN:
            raise StudyNotOpen("this study is not open for rating")
        latest = (
            Judgment.objects.filter(study=study, clinician=clinician).order_by("-updated_at", "-id")
            .values_list("assignment_id", flat=True).first()
        )
        if latest is None:
            raise NothingToUndo("there is no answer to undo")
        # Lock the assignment before its judgment, the order judgment_submit uses, so the two never deadlock.
        assignment = _lock_assignment(Assignment(pk=latest), clinician)
        judgment = Judgment.objects.select_for_update().filter(assignment=assignment).first()
        if judgment is None:
            raise NothingToUndo("that answer was already withdrawn")
        answers = _judgment_answers(judgment)
        number = _next_revision_number(assignment)
        JudgmentRevision.objects.create(
            assignment=assignment, number=number, event=JudgmentRevision.Event.UNDONE, answers=answers,
            left_is_a=assignment.left_is_a, time_on_task_ms=judgment.time_on_task_ms,
        )
        judgment_id = judgment.pk
        judgment.delete()
        assignment.status = Assignment.Status.PENDING
        assignment.completed_at = None
        assignment.draft = _to_screen_terms(assignment, answers)
        assignment.draft_saved_at = timezone.now()
        assignment.save(update_fields=["status", "completed_at", "draft", "draft_saved_at"])
        audit_record(
            actor=clinician,
            action=AuditAction.ANNOTATION_JUDGMENT_UNDO,
            target_type="annotation.judgment",
            target_id=str(judgment_id),
            details={"study": study.pk, "assignment": assignment.token, "revision": number},
        )
    return assignment
