"""A participant's start, consent and eligibility; the row lock, audit subject and erasure
that every participant write shares."""
from __future__ import annotations

from collections.abc import Iterable
from contextlib import nullcontext

from django.db import IntegrityError, connection, transaction
from django.db.models import Count, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.db.models.lookups import GreaterThanOrEqual
from django.utils import timezone

from core.audit import audit_subject_create, audit_subject_erase

from .. import questions, selectors
from ..exceptions import AlreadyStarted, InvalidAnswer, ProlificExcluded, StepNotAvailable, SurveyError
from ..models import (
    Answer,
    ConsentRecord,
    ConsentVersion,
    CriteriaRanking,
    CrisisFlag,
    DatasetVersionMember,
    EligibilityQuestion,
    ImportanceRating,
    Participant,
    Persona,
    ProlificExclusion,
    ResponseRanking,
    Study,
)
from ..prolific import prolific_id_hash, prolific_session_hash
from ..selectors.prepared import PreparedLookup


PARTICIPANT_ACTOR = "participant"
PROLIFIC_ID_MAX = 64


def _clean_prolific(value) -> str:
    value = (value or "").strip()
    return value[:PROLIFIC_ID_MAX] if all(ch.isalnum() or ch in "-_" for ch in value) else ""


def participant_start(*, study: Study, nonce: str = "", prolific: dict | None = None, source: str = "",
                      synthetic: bool = False) -> Participant:
    """Issue a participant (token, pseudonym, seed) for the study; ``synthetic`` marks
    a simulated one (the demo cohort), which exports leave out unless asked.

    Idempotent: the same start nonce (a double-clicked Start button) or the
    same Prolific submission (PROLIFIC_PID + SESSION_ID) returns the same
    participant."""
    prolific = prolific or {}
    pid = prolific_id_hash(study_id=study.pk, prolific_id=_clean_prolific(prolific.get("PROLIFIC_PID")))
    session_id = prolific_session_hash(study_id=study.pk, session_id=_clean_prolific(prolific.get("SESSION_ID")))
    existing = _participant_existing(study, nonce, pid, session_id)
    if existing is not None:
        return existing
    if not study.is_active:
        raise SurveyError("This study is not taking new participants at the moment.")
    if pid:
        source = Participant.Source.PROLIFIC
    elif source not in Participant.Source.values or source == Participant.Source.PROLIFIC:
        # Only a Prolific id makes a Prolific participant (and earns the completion code);
        # a "source=prolific" parameter on its own does not.
        source = Participant.Source.DIRECT
    try:
        with transaction.atomic():
            # The row lock on the study hands out consecutive sequence numbers.
            sequence = _study_counter_next(study)
            return Participant.objects.create(
                study=study, sequence=sequence, source=source, start_nonce=nonce[:64], audit_subject=audit_subject_create(),
                prolific_pid_hash=pid, prolific_study_id=_clean_prolific(prolific.get("STUDY_ID")), prolific_session_hash=session_id,
                synthetic=synthetic,
            )
    except IntegrityError:
        existing = _participant_existing(study, nonce, pid, session_id)
        if existing is None:
            raise
        return existing


def _study_counter_next(study: Study) -> int:
    """Add one to the study's participant counter and return it, in one statement (PostgreSQL
    and SQLite both have UPDATE ... RETURNING)."""
    table = Study._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET participant_counter = participant_counter + 1 WHERE id = %s RETURNING participant_counter",
                       [study.pk])
        return cursor.fetchone()[0]


def _participant_existing(study, nonce, pid_hash, session_hash=""):
    """The participant this start belongs to (same start nonce, or same Prolific submission), if any.
    A Prolific id that was excluded (screened out or withdrawn) raises ProlificExcluded."""
    if not nonce and not pid_hash:
        return None
    match = Q(pk__in=[])
    if nonce:
        match |= Q(start_nonce=nonce[:64])
    if pid_hash:
        match |= Q(prolific_pid_hash=pid_hash)
    found = list(Participant.objects.filter(match, study=study)[:2])  # one query: both keys are unique per study
    by_nonce = next((p for p in found if nonce and p.start_nonce == nonce[:64]), None)
    if by_nonce is not None:
        return by_nonce
    if pid_hash:
        by_pid = next((p for p in found if p.prolific_pid_hash == pid_hash), None)
        if by_pid is None:
            if ProlificExclusion.objects.filter(study=study, prolific_pid_hash=pid_hash).exists():
                raise ProlificExcluded("This Prolific account has already taken part in this study and cannot start it again.")
            return None
        # The Prolific id alone is not a secret: hand back the participant only for the same submission.
        if session_hash and by_pid.prolific_session_hash == session_hash:
            return by_pid
        raise AlreadyStarted("This Prolific account has already started this study.")
    return None


def _locked_queryset():
    # FOR UPDATE OF the participant only: the study row stays free, so participants of one study
    # never wait for each other; order_by(): no join for the model's default order.
    return Participant.objects.select_for_update(of=("self",)).defer(*selectors.PAGE_DEFERRED).order_by()


# The lookup of a page's POST, compiled once (selectors.prepared).
_LOCK_BY_TOKEN = PreparedLookup(lambda token: _locked_queryset().select_related("study").filter(token=token))


def _mark_locked(participant: Participant) -> Participant:
    # The transaction (atomic block) that holds the lock: a service called inside it uses this row as locked.
    participant.locked_by = connection.atomic_blocks[-1]
    return participant


def participant_locked_here(participant: Participant) -> bool:
    """True while the transaction that locked this instance's row (participant_lock_by_token) is open."""
    block = getattr(participant, "locked_by", None)
    return block is not None and any(b is block for b in connection.atomic_blocks)


def participant_atomic(participant: Participant):
    """The transaction of a save: the caller's own when it already holds the participant's row lock
    (a page's POST, which locked it with the lookup), else a new one."""
    return nullcontext() if participant_locked_here(participant) else transaction.atomic()


def participant_lock_by_token(token: str) -> Participant | None:
    """A participant page's POST: look the link up and lock the row in one query, for the
    transaction the caller has open (the services then save under this lock). None when
    no such link (or the participant withdrew: their row is gone)."""
    if not token or len(token) > 64:
        return None
    locked = _LOCK_BY_TOKEN.first(token)
    return _mark_locked(locked) if locked is not None else None


def participant_lock_row(participant: Participant) -> Participant:
    """Lock the participant's row (only theirs) and return it fresh; the instance itself when this
    transaction locked it already. Raises StepNotAvailable when the row is gone (withdrawn)."""
    if participant_locked_here(participant):
        return participant
    queryset = _locked_queryset().filter(pk=participant.pk)
    study_cached = Participant._meta.get_field("study").is_cached(participant)
    if not study_cached:
        queryset = queryset.select_related("study")
    locked = queryset.first()
    if locked is None:
        raise StepNotAvailable("this participant has withdrawn")  # their row is gone
    if study_cached and locked.study_id == participant.study_id:
        locked.study = participant.study  # read with the participant a moment ago; this transaction does not write it
    return _mark_locked(locked)


def participant_lock(participant: Participant, step: str | None = None) -> Participant:
    """Lock the participant's row for this transaction and check they may answer ``step``
    (the progress is on the row: one query, none when the caller locked it already).

    The progress as it will be once the caller's save commits (``step`` done) is left on
    the caller's instance as ``participant.progress_after_save``, so the page can say where
    the person goes next without asking the database again."""
    locked = participant_lock_row(participant)
    participant_step_check(participant, locked, step)
    return locked


def participant_step_check(participant: Participant, locked: Participant, step: str | None) -> None:
    """Raise StepNotAvailable unless the locked participant is answering and ``step`` is open."""
    if locked.status != Participant.Status.IN_PROGRESS:
        raise StepNotAvailable(f"this participant is {locked.get_status_display().lower()}")
    progress = selectors.participant_progress(locked)
    if step is not None and not progress.reachable(step):
        raise StepNotAvailable(f"the step {step!r} is not open yet")
    participant.progress_after_save = progress.with_done(step) if step is not None else progress


def participant_step_saved(participant: Participant, locked: Participant, step: str, *, attention: bool = False,
                           **fields) -> None:
    """Record on the locked row that ``step`` is saved, with ``fields`` (and, with ``attention``,
    the count of failed attention checks), in one UPDATE in the save's transaction; no query
    when nothing changes (a resubmitted page). The new progress is left on the caller's
    instance as ``progress_after_save``."""
    steps = selectors.participant_steps(locked)
    done = locked.steps_done
    if step in steps and done == steps.index(step):
        done += 1  # the next step saved; a done one saved again (Back, a double submit) changes nothing
    for name, value in fields.items():
        setattr(locked, name, value)
    steps = selectors.participant_steps(locked)  # a plan fixed by this save fixes the steps
    # The closing page is done with completion only.
    done = len(steps) if locked.status == Participant.Status.COMPLETED else min(done, len(steps) - 1)
    if done != locked.steps_done:
        fields["steps_done"] = done
    if attention:
        failures = _attention_failures()
        fields.update(attention_failures=failures, attention_flagged=GreaterThanOrEqual(failures, questions.ATTENTION_FLAG_AFTER))
    if fields:
        fields["updated_at"] = timezone.now()
        Participant.objects.filter(pk=locked.pk).update(**fields)
        locked.steps_done = done
    participant.progress_after_save = selectors.participant_progress(locked)


def _attention_failures():
    """The participant's failed attention checks, counted in the UPDATE that stores them."""
    failed = Q(pk__in=[])
    for item in questions.ATTENTION_CHECKS:
        failed |= Q(item_key=item.key) & ~Q(value=item.correct)
    return Coalesce(Subquery(
        Answer.objects.filter(failed, participant=OuterRef("pk")).order_by().values("participant").annotate(n=Count("pk")).values("n")
    ), 0)


def consent_give(*, participant: Participant, consent_version_id, agreed: Iterable) -> ConsentRecord:
    """Record consent to the version the person saw; every statement must be ticked.
    Consent is given once: a resubmitted form returns the record and changes nothing."""
    with participant_atomic(participant):
        locked = participant_lock(participant, "consent")
        if "consent" in selectors.participant_progress(locked).done:
            return ConsentRecord.objects.get(participant_id=locked.pk)
        current = selectors.consent_version_current(participant.study)
        try:
            version_id = int(consent_version_id)
        except (TypeError, ValueError):
            version_id = None
        if current is None or version_id != current.pk:
            if version_id is None or not ConsentVersion.objects.filter(pk=version_id, study_id=participant.study_id).exists():
                raise InvalidAnswer("This consent form does not belong to this study; please reload the page.")
            # Consent counts only for the text the study asks people to agree to now.
            raise InvalidAnswer("The information and consent form has been updated since this page was opened. "
                                "Please reload the page, read the current version and tick the statements again. Nothing was saved.")
        statements = current.statement_list
        try:
            ticked = sorted({int(i) for i in agreed})
        except (TypeError, ValueError):
            raise InvalidAnswer("The consent answers were not understood; please tick the boxes again.") from None
        if ticked != list(range(len(statements))):
            if any(i < 0 or i >= len(statements) for i in ticked):
                raise InvalidAnswer("The consent answers do not match this consent form; please reload the page.")
            raise InvalidAnswer({"statements": "To take part, please tick every statement. If you would rather not, you can simply close this page."})
        record = ConsentRecord.objects.create(
            participant=locked, consent_version=current, statements_agreed=[statements[i] for i in ticked]
        )
        participant_step_saved(participant, locked, "consent")
        return record


def eligibility_submit(*, participant: Participant, answers: dict) -> bool:
    """True if eligible. Otherwise the person is screened out: their row and
    everything they answered are deleted; the study counts them, and a Prolific
    id is kept only as its exclusion hash (so it cannot start again)."""
    study_questions = selectors.study_eligibility_questions(participant.study_id)
    errors = {}
    for question in study_questions:
        value = answers.get(question.key)
        if value in (None, ""):
            errors[f"eligibility-{question.key}"] = f"Please answer: {question.text}"
        elif value not in EligibilityQuestion.Answer.values:
            errors[f"eligibility-{question.key}"] = f"Please answer yes or no: {question.text}"
    unknown = set(answers) - {q.key for q in study_questions}
    if unknown:
        errors[""] = f"Unknown eligibility question: {', '.join(sorted(unknown))}."
    if errors:
        raise InvalidAnswer(errors)
    eligible = all(answers[q.key] == q.eligible_answer for q in study_questions)
    with participant_atomic(participant):
        locked = participant_lock(participant, "eligibility")
        if locked.eligible_at is not None:
            return True  # already through; a resubmitted old page changes nothing
        if eligible:
            # The ranking screens are fixed now, so progress counts them from here on.
            participant_step_saved(participant, locked, "eligibility", eligible_at=timezone.now(),
                                   scenario_plan=selectors.scenario_plan_compute(locked))
            return True
        prolific_exclude(locked)
        participant_erase(locked)
        Study.objects.filter(pk=locked.study_id).update(screened_out_count=F("screened_out_count") + 1)
        return False


def participant_erase(participant: Participant):
    """Delete the participant's row and everything that hangs off it, and their audit subject."""
    subject = participant.audit_subject if participant.audit_subject_id else None
    _admin_history_delete(participant)
    DatasetVersionMember.objects.filter(participant=participant).delete()
    _delete_answers(participant)
    Participant.objects.filter(pk=participant.pk).delete()
    audit_subject_erase(subject=subject)


def prolific_exclude(participant: Participant):
    """Keep only the keyed hash of the Prolific id, apart from the participant, so it cannot start again."""
    if participant.prolific_pid_hash:
        ProlificExclusion.objects.get_or_create(study_id=participant.study_id, prolific_pid_hash=participant.prolific_pid_hash)
    participant.prolific_pid_hash = participant.prolific_session_hash = participant.prolific_study_id = ""


def _delete_answers(participant: Participant):
    for model in (Answer, ImportanceRating, ResponseRanking, CrisisFlag, CriteriaRanking, ConsentRecord, Persona):
        model.objects.filter(participant=participant).delete()

def participant_audit_subject(participant: Participant):
    """The participant's audit subject (made on first use for rows from before subjects existed)."""
    if participant.audit_subject_id is None:
        participant.audit_subject = audit_subject_create()
        Participant.objects.filter(pk=participant.pk).update(audit_subject=participant.audit_subject)
    return participant.audit_subject


def _admin_history_delete(participant: Participant):
    """Django admin's change history names objects (a persona's name carries the pseudonym);
    the entries about this participant's rows go with them."""
    from django.contrib.admin.models import LogEntry
    from django.contrib.contenttypes.models import ContentType

    objects = {Participant: [participant.pk],
               Persona: list(Persona.objects.filter(participant=participant).values_list("pk", flat=True)),
               CrisisFlag: list(CrisisFlag.objects.filter(participant=participant).values_list("pk", flat=True))}
    for model, pks in objects.items():
        if pks:
            LogEntry.objects.filter(content_type=ContentType.objects.get_for_model(model),
                                    object_id__in=[str(pk) for pk in pks]).delete()
