"""A participant's start, consent and eligibility; the row lock, audit subject and erasure
that every participant write shares."""
from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from core.audit import audit_subject_create, audit_subject_erase

from .. import selectors
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
    if pid and ProlificExclusion.objects.filter(study=study, prolific_pid_hash=pid).exists():
        raise ProlificExcluded("This Prolific account has already taken part in this study and cannot start it again.")
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
            Study.objects.filter(pk=study.pk).update(participant_counter=F("participant_counter") + 1)
            sequence = Study.objects.values_list("participant_counter", flat=True).get(pk=study.pk)
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


def _participant_existing(study, nonce, pid_hash, session_hash=""):
    if nonce:
        found = Participant.objects.filter(study=study, start_nonce=nonce[:64]).first()
        if found:
            return found
    if pid_hash:
        found = Participant.objects.filter(study=study, prolific_pid_hash=pid_hash).first()
        if found is None:
            if ProlificExclusion.objects.filter(study=study, prolific_pid_hash=pid_hash).exists():
                raise ProlificExcluded("This Prolific account has already taken part in this study and cannot start it again.")
            return None
        # The Prolific id alone is not a secret: hand back the participant only for the same submission.
        if session_hash and found.prolific_session_hash == session_hash:
            return found
        raise AlreadyStarted("This Prolific account has already started this study.")
    return None


def participant_lock_row(participant: Participant) -> Participant:
    locked = Participant.objects.select_for_update().select_related("study").filter(pk=participant.pk).first()
    if locked is None:
        raise StepNotAvailable("this participant has withdrawn")  # their row is gone
    return locked


def participant_lock(participant: Participant, step: str | None = None) -> Participant:
    """Lock the participant's row for this transaction and check they may answer ``step``."""
    locked = participant_lock_row(participant)
    if locked.status != Participant.Status.IN_PROGRESS:
        raise StepNotAvailable(f"this participant is {locked.get_status_display().lower()}")
    if step is not None and not selectors.participant_progress(locked).reachable(step):
        raise StepNotAvailable(f"the step {step!r} is not open yet")
    return locked


def consent_give(*, participant: Participant, consent_version_id, agreed: Iterable) -> ConsentRecord:
    """Record consent to the version the person saw; every statement must be ticked."""
    try:
        version = ConsentVersion.objects.get(pk=int(consent_version_id), study_id=participant.study_id)
    except (TypeError, ValueError, ConsentVersion.DoesNotExist):
        raise InvalidAnswer("This consent form does not belong to this study; please reload the page.") from None
    current = selectors.consent_version_current(participant.study)
    if current is None or version.pk != current.pk:
        # Consent counts only for the text the study asks people to agree to now.
        raise InvalidAnswer("The information and consent form has been updated since this page was opened. "
                            "Please reload the page, read the current version and tick the statements again. Nothing was saved.")
    statements = version.statement_list
    try:
        ticked = sorted({int(i) for i in agreed})
    except (TypeError, ValueError):
        raise InvalidAnswer("The consent answers were not understood; please tick the boxes again.") from None
    if ticked != list(range(len(statements))):
        if any(i < 0 or i >= len(statements) for i in ticked):
            raise InvalidAnswer("The consent answers do not match this consent form; please reload the page.")
        raise InvalidAnswer({"statements": "To take part, please tick every statement. If you would rather not, you can simply close this page."})
    with transaction.atomic():
        locked = participant_lock(participant)
        record = ConsentRecord.objects.filter(participant=locked).first()
        if record is not None:
            return record  # consent is given once; a resubmitted form changes nothing
        return ConsentRecord.objects.create(
            participant=locked, consent_version=version, statements_agreed=[statements[i] for i in ticked]
        )


def eligibility_submit(*, participant: Participant, answers: dict) -> bool:
    """True if eligible. Otherwise the person is screened out: their row and
    everything they answered are deleted; the study counts them, and a Prolific
    id is kept only as its exclusion hash (so it cannot start again)."""
    study_questions = list(EligibilityQuestion.objects.filter(study_id=participant.study_id))
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
    with transaction.atomic():
        locked = participant_lock(participant, "eligibility")
        if locked.eligible_at is not None:
            return True  # already through; a resubmitted old page changes nothing
        if eligible:
            locked.eligible_at = timezone.now()
            # The ranking screens are fixed now, so progress counts them from here on.
            locked.scenario_plan = selectors.scenario_plan_compute(locked)
            locked.save(update_fields=["eligible_at", "scenario_plan", "updated_at"])
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
