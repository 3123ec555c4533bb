"""The audit log's writes, its action names and the "actor or None" rule.

``audit_record`` appends one row inside the action's own transaction;
``AuditAction`` is every action name a row may carry (one enumeration, so a
name is never spelt two ways); ``actor_user`` is who a row or a ``created_by``
column names: the signed-in user, or None for the system, a participant or an
anonymous request.
"""
from __future__ import annotations

from django.db import models, transaction

from .models import AuditEvent, AuditSubject


class AuditAction(models.TextChoices):
    ACCOUNTS_CREATE_DEMO = "accounts.create_demo"
    SCENARIOS_IMPORT = "scenarios.import"
    # survey
    SURVEY_STUDY_CREATE = "survey.study_create"
    SURVEY_STUDY_CHANGE = "survey.study_change"
    SURVEY_CONSENT_PUBLISH = "survey.consent_publish"
    SURVEY_CRISIS_FLAG = "survey.crisis_flag"
    SURVEY_CRISIS_FLAG_REVIEW = "survey.crisis_flag_review"
    SURVEY_PARTICIPANT_WITHDRAW = "survey.participant_withdraw"
    SURVEY_DATASET_VERSION_CREATE = "survey.dataset_version_create"
    SURVEY_DATASET_DOWNLOAD = "survey.dataset_download"
    SURVEY_PERSONAS_BUILD = "survey.personas_build"
    SURVEY_PERSONA_EDIT = "survey.persona_edit"
    SURVEY_PERSONAS_SELECT = "survey.personas_select"
    SURVEY_WEIGHT_VECTOR_CREATE = "survey.weight_vector_create"
    # annotation
    ANNOTATION_STUDY_CREATE = "annotation.study.create"
    ANNOTATION_STUDY_OPEN = "annotation.study.open"
    ANNOTATION_STUDY_CLOSE = "annotation.study.close"
    ANNOTATION_STUDY_SCREEN = "annotation.study.screen"
    ANNOTATION_ITEM_SCREEN_REVIEW = "annotation.item.screen_review"
    ANNOTATION_JUDGMENT_SUBMIT = "annotation.judgment.submit"
    ANNOTATION_JUDGMENT_CHANGE = "annotation.judgment.change"
    ANNOTATION_JUDGMENT_UNDO = "annotation.judgment.undo"
    ANNOTATION_JUDGE_IMPORT = "annotation.judge.import"
    ANNOTATION_EXPORT_JUDGMENTS = "annotation.export.judgments"
    ANNOTATION_EXPORT_PAIRS = "annotation.export.pairs"
    # training
    EXPERIMENT_START = "experiment.start"
    EXPERIMENT_SEND_FOR_RATING = "experiment.send_for_rating"
    JOB_CANCEL = "job.cancel"
    JOB_RETRY = "job.retry"


def actor_user(actor):
    """The signed-in user behind ``actor``, or None (the system, a participant, an anonymous request)."""
    return actor if actor is not None and actor.is_authenticated else None


SYSTEM_ACTOR = "system"


def audit_record(*, actor=None, action: AuditAction, target=None, target_type: str = "", target_id: str = "", details=None,
                 actor_label: str = "", subject=None):
    """Append one audit row. Call it inside the transaction of the action it
    records, so both land or neither does.

    ``subject``: the AuditSubject of the person the action is about. Rows about
    a person carry its random key and no id of theirs (pass ``target_type``
    without a ``target``), so deleting the subject with the person unlinks them."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("audit_record must run inside the action's transaction (transaction.atomic)")
    if target is not None:
        target_type = target_type or target._meta.label_lower
        target_id = target_id or str(target.pk)
    action = AuditAction(action)  # a name outside the enumeration is refused (ValueError)
    user = actor_user(actor)
    return AuditEvent.objects.create(
        actor=user,
        actor_label=actor_label or (user.get_username() if user is not None else SYSTEM_ACTOR),
        action=action.value,
        target_type=target_type,
        target_id=str(target_id),
        subject_key=subject.key if subject is not None else "",
        details=details or {},
    )


def audit_subject_create() -> AuditSubject:
    return AuditSubject.objects.create()


def audit_subject_erase(*, subject: AuditSubject | None) -> None:
    """Delete the subject row: its key stays in the (append-only) audit rows but leads nowhere."""
    if subject is not None:
        AuditSubject.objects.filter(pk=subject.pk).delete()
