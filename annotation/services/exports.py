"""Audited researcher exports of a study's judgments and clinician-majority preference pairs."""
from __future__ import annotations

import io
import json

from django.db import transaction

from core.audit import AuditAction, audit_record
from core.spreadsheet import safe_dict_writer

from .. import selectors
from ..models import RatingStudy


def judgments_export(*, study: RatingStudy, actor) -> str:
    """Every current judgment as CSV, one row per judgment and dimension, with
    the order it was shown in (researchers only; audited)."""
    rows = selectors.judgment_export_rows(study)
    buffer = io.StringIO()
    writer = safe_dict_writer(buffer, selectors.JUDGMENT_EXPORT_FIELDS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    with transaction.atomic():
        audit_record(actor=actor, action=AuditAction.ANNOTATION_EXPORT_JUDGMENTS, target=study, details={"rows": len(rows), "format": "csv"})
    return buffer.getvalue()


def preference_pairs_export(*, study: RatingStudy, actor) -> str:
    """Per-dimension preference pairs from the clinician majority as JSONL
    ({"prompt", "scenario_id", "criterion", "chosen", "rejected",
    "normalisation"}: the texts as the clinicians saw them; researchers only;
    audited)."""
    pairs = selectors.preference_pairs(study)
    text = "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs)
    with transaction.atomic():
        audit_record(actor=actor, action=AuditAction.ANNOTATION_EXPORT_PAIRS, target=study, details={"pairs": len(pairs), "format": "jsonl"})
    return text
