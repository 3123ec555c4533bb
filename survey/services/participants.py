"""A participant's start (idempotent, Prolific-aware), and the audit subject and erasure
that every participant write shares. Saving a page is ``answers`` (the protocol) and
``questionnaire`` (the pages)."""
from __future__ import annotations

from django.db import IntegrityError, connection, transaction
from django.db.models import Q

from core.audit import audit_subject_create, audit_subject_erase

from ..exceptions import AlreadyStarted, ProlificExcluded, SurveyError
from ..models import (
    Answer,
    ConsentRecord,
    CriteriaRanking,
    CrisisFlag,
    DatasetVersionMember,
    ImportanceRating,
    Participant,
    Persona,
    ProlificExclusion,
    ResponseRanking,
    Study,
)
from ..prolific import prolific_id_hash, prolific_session_hash
from ..prepared import INTEGER, TEXT, PreparedInsert, PreparedLookup, PreparedRows


PARTICIPANT_ACTOR = "participant"
PROLIFIC_ID_MAX = 64


def _clean_prolific(value) -> str:
    value = (value or "").strip()
    return value[:PROLIFIC_ID_MAX] if all(ch.isalnum() or ch in "-_" for ch in value) else ""


_PARTICIPANT_INSERT = PreparedInsert(Participant)


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
            [participant] = _PARTICIPANT_INSERT.save([Participant(
                study=study, sequence=sequence, source=source, start_nonce=nonce[:64], audit_subject=audit_subject_create(),
                prolific_pid_hash=pid, prolific_study_id=_clean_prolific(prolific.get("STUDY_ID")), prolific_session_hash=session_id,
                synthetic=synthetic,
            )])
            return participant
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


# A start's look for the participant it belongs to, compiled once: the same start nonce or the same
# Prolific id in the study (one query: both are unique per study). An empty one is given as NULL,
# which matches no row.
_EXISTING = PreparedLookup(lambda study_id, nonce, pid_hash: Participant.objects.filter(
    Q(start_nonce=nonce) | Q(prolific_pid_hash=pid_hash), study_id=study_id).order_by(), kinds=(INTEGER, TEXT, TEXT), limit=2)
_EXCLUDED = PreparedRows(lambda study_id, pid_hash: ProlificExclusion.objects.filter(
    study_id=study_id, prolific_pid_hash=pid_hash).values_list("pk"), kinds=(INTEGER, TEXT), limit=1)


def _participant_existing(study, nonce, pid_hash, session_hash=""):
    """The participant this start belongs to (same start nonce, or same Prolific submission), if any.
    A Prolific id that was excluded (screened out or withdrawn) raises ProlificExcluded."""
    if not nonce and not pid_hash:
        return None
    found = _EXISTING.all(study.pk, nonce[:64] or None, pid_hash or None)
    by_nonce = next((p for p in found if nonce and p.start_nonce == nonce[:64]), None)
    if by_nonce is not None:
        return by_nonce
    if pid_hash:
        by_pid = next((p for p in found if p.prolific_pid_hash == pid_hash), None)
        if by_pid is None:
            if _EXCLUDED.rows(study.pk, pid_hash):
                raise ProlificExcluded("This Prolific account has already taken part in this study and cannot start it again.")
            return None
        # The Prolific id alone is not a secret: hand back the participant only for the same submission.
        if session_hash and by_pid.prolific_session_hash == session_hash:
            return by_pid
        raise AlreadyStarted("This Prolific account has already started this study.")
    return None


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
