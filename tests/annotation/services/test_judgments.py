"""Clinicians' answers (annotation.services.judgments): saved once with history, drafts, undo,
bad input that changes nothing."""
import pytest
from django.db import IntegrityError

from annotation import services
from annotation.exceptions import InvalidInput, NotAssigned, NothingToUndo, StudyNotOpen
from annotation.models import Assignment, Judgment, JudgmentChoice, JudgmentRevision
from core.models import AuditEvent
from tests.annotation.factories import make_study, screen_answers
from tests.factories import ClinicianFactory

pytestmark = pytest.mark.django_db


def _first(study, clinician):
    return Assignment.objects.filter(study=study, clinician=clinician).order_by("position").first()


def test_submit_stores_source_terms_and_resubmission_keeps_history():
    study = make_study(n_items=3, n_clinicians=2, overlap=2)
    clinician = study.memberships.first().clinician
    assignment = _first(study, clinician)
    judgment = services.judgment_submit(
        assignment=assignment, clinician=clinician, choices=screen_answers(study, "left", safety="tie"),
        unsafe_left=True, comment=" careful ", time_on_task_ms=4200,
    )
    expected_left_source = "a" if assignment.left_is_a else "b"
    stored = dict(judgment.choices.values_list("criterion__key", "choice"))
    assert stored == {"empathy": expected_left_source, "safety": "tie", "overall": expected_left_source}
    assert (judgment.unsafe_a, judgment.unsafe_b) == ((True, False) if assignment.left_is_a else (False, True))
    assert judgment.comment == "careful" and judgment.time_on_task_ms == 4200
    assignment.refresh_from_db()
    assert assignment.status == Assignment.Status.DONE

    # The same answer again (refresh, double submit) changes nothing.
    services.judgment_submit(assignment=assignment, clinician=clinician, choices=screen_answers(study, "left", safety="tie"),
                             unsafe_left=True, comment="careful", time_on_task_ms=4200)
    assert JudgmentRevision.objects.filter(assignment=assignment).count() == 1

    # A changed answer changes the one judgment and adds a history row.
    services.judgment_submit(assignment=assignment, clinician=clinician, choices=screen_answers(study, "right"))
    assert Judgment.objects.filter(assignment=assignment).count() == 1
    judgment.refresh_from_db()
    assert judgment.revision == 2 and not judgment.unsafe_a and not judgment.unsafe_b
    history = list(JudgmentRevision.objects.filter(assignment=assignment).order_by("number"))
    assert [h.event for h in history] == ["submitted", "changed"]
    assert history[0].answers["choices"]["safety"] == "tie"
    assert set(history[1].answers["choices"].values()) == {"b" if assignment.left_is_a else "a"}
    assert AuditEvent.objects.filter(action="annotation.judgment.change", target_id=str(judgment.pk)).count() == 1


def test_one_judgment_per_clinician_and_item_is_a_database_constraint():
    study = make_study(n_items=1, n_clinicians=1, overlap=1)
    clinician = study.memberships.first().clinician
    assignment = _first(study, clinician)
    judgment = services.judgment_submit(assignment=assignment, clinician=clinician, choices=screen_answers(study))
    with pytest.raises(IntegrityError):
        Judgment.objects.create(assignment=assignment, study=study, item=judgment.item, clinician=clinician, left_is_a=True)


def _state(study):
    return (
        Judgment.objects.filter(study=study).count(),
        JudgmentChoice.objects.filter(judgment__study=study).count(),
        JudgmentRevision.objects.filter(assignment__study=study).count(),
        list(Assignment.objects.filter(study=study).order_by("pk").values_list("status", "draft")),
        AuditEvent.objects.count(),
    )


@pytest.mark.parametrize(
    "case,error",
    [
        ("unknown_dimension", InvalidInput),
        ("missing_dimension", InvalidInput),
        ("bad_value", InvalidInput),
        ("source_terms", InvalidInput),
        ("not_yours", NotAssigned),
        ("closed", StudyNotOpen),
        ("draft_study", StudyNotOpen),
    ],
)
def test_bad_submissions_change_nothing(case, error):
    study = make_study(n_items=2, n_clinicians=2, overlap=1, open_now=case != "draft_study")
    owner, other = [m.clinician for m in study.memberships.all()]
    assignment = _first(study, owner)
    clinician, choices = owner, screen_answers(study)
    if case == "unknown_dimension":
        choices["charisma"] = "left"
    elif case == "missing_dimension":
        choices.pop("safety")
    elif case == "bad_value":
        choices["empathy"] = "both"
    elif case == "source_terms":
        choices["empathy"] = "a"
    elif case == "not_yours":
        clinician = other
    elif case == "closed":
        services.rating_study_close(study=study, actor=None)
    before = _state(study)
    with pytest.raises(error):
        services.judgment_submit(assignment=assignment, clinician=clinician, choices=choices)
    if case != "missing_dimension":  # a draft may be partial; everything else is refused there too
        with pytest.raises(error):
            services.assignment_draft_save(assignment=assignment, clinician=clinician, choices=choices)
    assert _state(study) == before


def test_draft_is_partial_and_resumes():
    study = make_study(n_items=2, n_clinicians=1, overlap=1)
    clinician = study.memberships.first().clinician
    assignment = _first(study, clinician)
    services.assignment_draft_save(assignment=assignment, clinician=clinician, choices={"empathy": "right"},
                                   unsafe_right=True, comment="half", time_on_task_ms=1500)
    services.assignment_draft_save(assignment=assignment, clinician=clinician, choices={"empathy": "right"}, time_on_task_ms=900)
    assignment.refresh_from_db()
    assert assignment.draft["choices"] == {"empathy": "right"}
    assert assignment.status == Assignment.Status.PENDING
    assert assignment.time_on_task_ms == 1500  # time only grows
    assert not Judgment.objects.exists()


def test_undo_withdraws_the_last_answer_and_keeps_history():
    study = make_study(n_items=3, n_clinicians=1, overlap=1)
    clinician = study.memberships.first().clinician
    first, second, third = Assignment.objects.filter(study=study, clinician=clinician).order_by("position")
    services.judgment_submit(assignment=first, clinician=clinician, choices=screen_answers(study, "left"))
    services.judgment_submit(assignment=second, clinician=clinician, choices=screen_answers(study, "tie"), unsafe_right=True)
    undone = services.judgment_undo(study=study, clinician=clinician)
    assert undone.pk == second.pk
    undone.refresh_from_db()
    assert undone.status == Assignment.Status.PENDING
    assert undone.draft["choices"] == screen_answers(study, "tie") and undone.draft["unsafe_right"] is True
    assert not Judgment.objects.filter(assignment=second).exists()
    assert Judgment.objects.filter(assignment=first).exists()
    assert [r.event for r in JudgmentRevision.objects.filter(assignment=second).order_by("number")] == ["submitted", "undone"]
    assert AuditEvent.objects.filter(action="annotation.judgment.undo").count() == 1
    # The withdrawn item is next in the queue; resubmitting continues its history.
    from annotation.selectors import assignment_next

    assert assignment_next(study=study, user=clinician).pk == second.pk
    services.judgment_submit(assignment=second, clinician=clinician, choices=screen_answers(study, "right"))
    assert JudgmentRevision.objects.filter(assignment=second).order_by("-number").first().number == 3
    # Undo again takes the newest answer (the second item again), then the first.
    assert services.judgment_undo(study=study, clinician=clinician).pk == second.pk
    assert services.judgment_undo(study=study, clinician=clinician).pk == first.pk
    with pytest.raises(NothingToUndo):
        services.judgment_undo(study=study, clinician=clinician)
    services.judgment_submit(assignment=first, clinician=clinician, choices=screen_answers(study))
    services.rating_study_close(study=study, actor=None)
    with pytest.raises(StudyNotOpen):
        services.judgment_undo(study=study, clinician=clinician)
    with pytest.raises(NotAssigned):
        services.judgment_undo(study=study, clinician=ClinicianFactory())
