"""Study setup: a study's settings and its consent text (the admin calls these)."""
from __future__ import annotations

from collections.abc import Iterable

from django.db import transaction
from django.db.models import Max

from core.audit import AuditAction, actor_user, audit_record

from ..exceptions import InvalidAnswer
from ..models import ConsentVersion, Study


@transaction.atomic
def consent_version_publish(*, study: Study, information_sheet: str, statements: str, actor=None) -> ConsentVersion:
    """A new version of the study's consent text (versions are never edited in place)."""
    if not information_sheet.strip() or not [s for s in statements.splitlines() if s.strip()]:
        raise InvalidAnswer("The information sheet and at least one consent statement are required.")
    Study.objects.select_for_update().get(pk=study.pk)  # serialise version numbers
    number = (study.consent_versions.aggregate(n=Max("version"))["n"] or 0) + 1
    version = ConsentVersion.objects.create(
        study=study, version=number, information_sheet=information_sheet.strip(), statements=statements.strip(),
        created_by=actor_user(actor),
    )
    audit_record(actor=actor, action=AuditAction.SURVEY_CONSENT_PUBLISH, target=version, details={"study": study.slug, "version": number})
    return version


@transaction.atomic
def study_save(*, study: Study, actor=None, changed: Iterable[str] = ()) -> Study:
    """Create or change a study (the admin calls this), with its audit row."""
    study.full_clean()
    created = study.pk is None
    study.save()
    audit_record(actor=actor, action=AuditAction.SURVEY_STUDY_CREATE if created else AuditAction.SURVEY_STUDY_CHANGE, target=study,
                 details={"slug": study.slug, "changed": sorted(changed)})
    return study
