"""Dataset versions: a record of each file built from participants' data, so a withdrawal can find it."""
from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from core.audit import AuditAction, actor_user, audit_record
from core.files import atomic_write_text, sha256_file

from ..exceptions import SurveyError
from ..models import DatasetVersion, DatasetVersionMember, Participant, Study


def _participant_ids(participants) -> list[int]:
    ids, pseudonyms = set(), set()
    for item in participants:
        if isinstance(item, Participant):
            ids.add(item.pk)
        elif isinstance(item, int):
            ids.add(item)
        elif isinstance(item, str):
            pseudonyms.add(item.removeprefix("survey-"))
        else:
            raise SurveyError(f"participants must be Participant objects, ids or pseudonyms, not {type(item).__name__}")
    if pseudonyms:
        found = dict(Participant.objects.filter(pseudonym__in=pseudonyms).values_list("pseudonym", "pk"))
        unknown = pseudonyms - set(found)
        if unknown:
            raise SurveyError(f"unknown participant pseudonyms: {', '.join(sorted(unknown)[:5])} "
                              "(a participant who has withdrawn is gone; build the dataset without them)")
        ids |= set(found.values())
    return sorted(ids)


def dataset_version_create(*, kind: str, participants, files, actor=None, study: Study | None = None, note: str = "") -> DatasetVersion:
    """Record a dataset built from these participants' data (files already written).

    Refuses (SurveyError) if any of them has withdrawn; the check and the
    membership rows are written under the participants' row locks, so a
    withdrawal either happens before (and is refused here) or after (and
    marks this version)."""
    if kind not in DatasetVersion.Kind.values:
        raise SurveyError(f"unknown dataset kind {kind!r}; use one of {', '.join(DatasetVersion.Kind.values)}")
    paths = [Path(p) for p in files]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise SurveyError(f"dataset files not found: {', '.join(missing)}")
    file_info = [{"path": str(p), "sha256": sha256_file(p), "bytes": p.stat().st_size} for p in paths]
    if len(file_info) == 1:
        digest = file_info[0]["sha256"]
    else:
        digest = hashlib.sha256("\n".join(sorted(f"{f['sha256']}  {Path(f['path']).name}" for f in file_info)).encode()).hexdigest()
    ids = _participant_ids(participants)
    with transaction.atomic():
        rows = list(Participant.objects.select_for_update().filter(pk__in=ids).order_by("pk").values_list("pk", "status"))
        unknown = set(ids) - {pk for pk, _ in rows}
        if unknown:
            raise SurveyError(f"unknown participant ids: {', '.join(map(str, sorted(unknown)[:5]))} "
                              "(a participant who has withdrawn is gone; build the dataset without them)")
        withdrawn = [pk for pk, status in rows if status == Participant.Status.WITHDRAWN]
        if withdrawn:
            raise SurveyError(f"{len(withdrawn)} of these participants have withdrawn; build the dataset without them")
        version = DatasetVersion.objects.create(
            kind=kind, study=study, created_by=actor_user(actor),
            files=file_info, sha256=digest, participant_count=len(ids), note=note,
        )
        DatasetVersionMember.objects.bulk_create(DatasetVersionMember(dataset_version=version, participant_id=pk) for pk in ids)
        audit_record(
            actor=actor, action=AuditAction.SURVEY_DATASET_VERSION_CREATE, target=version,
            details={"kind": kind, "study": study.slug if study else None, "files": [Path(f["path"]).name for f in file_info],
                     "sha256": digest, "participants": len(ids), "note": note},
        )
    return version


def export_path(study: Study | None, kind: str, suffix: str) -> Path:
    stamp = timezone.now().strftime("%Y%m%dT%H%M%S")
    folder = Path(settings.ARTIFACT_ROOT) / "survey" / (study.slug if study else "all")
    return folder / f"{kind}-{stamp}-{secrets.token_hex(3)}{suffix}"


def dataset_version_write(*, path, content, kind, participants, actor, study, note) -> DatasetVersion:
    atomic_write_text(path, content)
    try:
        return dataset_version_create(kind=kind, participants=participants, files=[path], actor=actor, study=study, note=note)
    except SurveyError:
        Path(path).unlink(missing_ok=True)  # a participant withdrew while the file was written
        raise
