"""An automatic judge's decisions on a study's items, imported all or nothing
(the rows are read and matched by the plain module annotation.judge_rows)."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

from django.db import transaction

from core.audit import AuditAction, audit_record

from .. import selectors
from ..exceptions import JudgeImportError
from ..judge_rows import ItemRef, JudgeImportReport, judge_rows_match, parse_judge_file
from ..models import JudgeDecision, RatingItem, RatingStudy


def judge_decisions_import(
    *,
    study: RatingStudy,
    judge_name: str,
    actor,
    rows: Iterable[Mapping] | None = None,
    path=None,
    source_names: Mapping[str, str] | None = None,
    skip_unmatched: bool = False,
) -> JudgeImportReport:
    """Import an automatic judge's decisions on the study's items, all or nothing.

    Give ``rows`` (dicts) or ``path`` (.jsonl or .csv). Each row names:

    - the item: ``item`` (an item token from the exports), or ``scenario_id``
      (also ``scenario_external_id``/``scenario``): the scenario's external id,
      or ``s<pk>`` / ``<pk>`` as the training pipeline writes it;
    - the dimension: ``criterion`` (or ``dimension``), one of the study's;
    - the decision, in terms of SOURCE, never screen position, either
      ``choice`` (or ``judge_choice``) = ``source_a`` | ``source_b`` | ``tie``
      (a source's ModelVersion name is accepted too), or the pipeline's
      ``model_a``, ``model_b`` and ``majority`` (a | b | tie | none). Pipeline
      model names map to sources through ``source_names`` ({name: "source_a" |
      "source_b"}; the sources' own ModelVersion names always map). Lines for
      other model pairs and lines with no decision (``majority`` "none") are
      skipped and counted; when a line carries ``response_a``/``response_b``
      they must be the texts the study shows, or the judge rated something else.

    An unknown scenario is an error unless ``skip_unmatched`` (for pipeline files
    that cover more scenarios than the study). Any error raises
    ``JudgeImportError`` listing the bad lines, and nothing is written.
    Decisions already stored under ``judge_name`` are replaced. Audited."""
    judge_name = (judge_name or "").strip()
    if not judge_name:
        raise JudgeImportError("the judge needs a name")
    if len(judge_name) > 200:
        raise JudgeImportError("the judge name is longer than 200 characters")
    if (rows is None) == (path is None):
        raise JudgeImportError("give either rows or a file path")
    if path is not None:
        rows = parse_judge_file(path)
    rows = list(rows)
    report = JudgeImportReport(judge_name=judge_name, rows=len(rows))

    names = {study.source_a.name: "source_a", study.source_b.name: "source_b"}
    for name, source in (source_names or {}).items():
        if source not in ("source_a", "source_b"):
            raise JudgeImportError(f"source_names: {name!r} must map to source_a or source_b, not {source!r}")
        names[str(name)] = source
    criteria = selectors.study_criteria_by_key(study)
    # Items excluded by the self-identification screen are no longer part of the study.
    items = study.items.exclude(screen=RatingItem.Screen.EXCLUDE).select_related("scenario", "response_a", "response_b")
    match = judge_rows_match(
        rows, names=names, dimensions=criteria, skip_unmatched=skip_unmatched,
        items=[ItemRef(pk=i.pk, token=i.token, scenario_id=i.scenario_id, external_id=i.scenario.external_id,
                       response_a=i.response_a.text, response_b=i.response_b.text) for i in items],
    )
    if match.errors:
        raise JudgeImportError("the judge decisions cannot be imported; nothing was imported", errors=match.errors)
    if not match.decided:
        raise JudgeImportError("no decision for this study's items and sources was found; nothing was imported")
    report.skipped_other_pairs, report.skipped_no_decision = match.skipped_other_pairs, match.skipped_no_decision
    report.skipped_unmatched, report.synthetic = match.skipped_unmatched, match.synthetic
    with transaction.atomic():
        existing = JudgeDecision.objects.filter(study=study, judge_name=judge_name)
        report.replaced = existing.count()
        existing.delete()
        JudgeDecision.objects.bulk_create(
            JudgeDecision(study=study, judge_name=judge_name, item_id=item_id, criterion=criteria[key], choice=choice,
                          synthetic=report.synthetic)
            for (item_id, key), choice in match.decided.items()
        )
        report.imported = len(match.decided)
        for _, key in match.decided:
            report.by_criterion[key] = report.by_criterion.get(key, 0) + 1
        audit_record(actor=actor, action=AuditAction.ANNOTATION_JUDGE_IMPORT, target=study, details=report.as_dict())
    return report
