"""A participant's withdrawal: their data deleted, what was built from it marked."""
from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from core.audit import AuditAction, audit_record

from .. import selectors
from ..models import DatasetVersion, DatasetVersionMember, Participant, Study
from ..signals import dataset_versions_withdrawn
from .participants import PARTICIPANT_ACTOR, participant_audit_subject, participant_erase, prolific_exclude


def participant_withdraw(*, participant: Participant, via: str, actor=None) -> list[int]:
    """Withdraw a participant at any stage, leaving nothing that links back to them.

    In one transaction: mark every dataset version that contained them
    (``affected_by_withdrawal_at``), delete those versions' files from disk
    (``files_deleted_at``; the rows keep the paths and hashes), turn a Prolific
    id into an exclusion hash, delete the participant's row with everything
    that hangs off it (answers, consent, flags, persona, dataset memberships,
    admin history) and their audit subject, and write the audit row under that
    subject's key, which then leads nowhere. Receivers of
    ``survey.signals.dataset_versions_withdrawn`` (training) mark what was built
    from the versions. After commit the study's cached report is dropped.
    Returns the ids of the versions newly marked. Idempotent: a participant
    already gone returns []."""
    with transaction.atomic():
        locked = Participant.objects.select_for_update().select_related("study").filter(pk=participant.pk).first()
        if locked is None or locked.status == Participant.Status.WITHDRAWN:
            return []
        now = timezone.now()
        study = locked.study
        containing = list(DatasetVersion.objects.filter(pk__in=DatasetVersionMember.objects.filter(participant=locked)
                                                        .values("dataset_version_id")).order_by("pk"))
        affected = [v.pk for v in containing if v.affected_by_withdrawal_at is None]
        DatasetVersion.objects.filter(pk__in=affected).update(affected_by_withdrawal_at=now)
        files_deleted = _dataset_files_delete([v for v in containing if v.files_deleted_at is None], now)
        dataset_versions_withdrawn.send(sender=Participant, version_ids=[v.pk for v in containing], at=now,
                                        texts=_participant_identifiers(locked))
        previous_status = locked.status
        subject = participant_audit_subject(locked)
        prolific_exclude(locked)
        participant_erase(locked)
        Study.objects.filter(pk=study.pk).update(withdrawn_count=F("withdrawn_count") + 1)
        audit_record(
            actor=actor, actor_label="" if actor is not None else PARTICIPANT_ACTOR,
            action=AuditAction.SURVEY_PARTICIPANT_WITHDRAW, target_type="survey.participant", subject=subject,
            details={"study": study.slug, "via": via, "previous_status": previous_status,
                     "dataset_versions_marked": affected, "files_deleted": files_deleted},
        )
        selectors.study_report_forget(study)
        transaction.on_commit(lambda: selectors.study_report_forget(study))
        return affected


def _participant_identifiers(participant: Participant) -> list[str]:
    """What would link a file back to this participant: for receivers that scrub derived files."""
    return [participant.pseudonym, f"survey-{participant.pseudonym}", participant.token, participant.withdrawal_code]


def _dataset_files_delete(versions: list[DatasetVersion], now) -> int:
    """Delete the versions' files from disk (the rows keep paths and hashes as the record)."""
    deleted = 0
    for version in versions:
        for entry in version.files:
            path = Path(entry["path"])
            if path.is_file():
                path.unlink(missing_ok=True)
                deleted += 1
        DatasetVersion.objects.filter(pk=version.pk).update(files_deleted_at=now)
    return deleted
