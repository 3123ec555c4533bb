"""De-identified exports of a study's answers and rankings, each recorded as a dataset version."""
from __future__ import annotations

import io
import json
from pathlib import Path

from core.models import Response
from core.spreadsheet import safe_csv_writer

from .. import questions, selectors
from ..models import CriteriaRanking, CrisisFlag, DatasetVersion, ImportanceRating, Participant, ResponseRanking, Study
from .datasets import dataset_version_write, export_path


def _exportable(study: Study, include_synthetic: bool = False):
    """Participants whose answers may be exported: consented, not screened out, not withdrawn;
    simulated ones (the demo cohort) only when asked."""
    participants = Participant.objects.filter(study=study, status__in=[Participant.Status.IN_PROGRESS, Participant.Status.COMPLETED],
                                              consent__isnull=False)
    if not include_synthetic:
        participants = participants.filter(synthetic=False)
    return (participants
            .select_related("consent__consent_version").prefetch_related("answers", "importance_ratings__criterion")
            .order_by("sequence"))


def _synthetic_note(participants) -> str:
    return f"; includes {sum(1 for p in participants if p.synthetic)} synthetic participants"


def survey_answers_export(*, study: Study, actor=None, include_free_text: bool = False, include_synthetic: bool = False,
                          path=None) -> DatasetVersion:
    """CSV, one row per participant under their pseudonym; free text only when asked."""
    criteria = selectors.study_criteria()
    participants = list(_exportable(study, include_synthetic))
    rankings = dict(CriteriaRanking.objects.filter(participant__in=participants).values_list("participant_id", "ranking"))
    flagged = set(CrisisFlag.objects.filter(participant__in=participants).values_list("participant_id", flat=True))
    choice_items = (*questions.BACKGROUND, *questions.ATTITUDES, *questions.ATTENTION_CHECKS)
    header = ["participant", "status", "source", "consent_version", "attention_failures", "attention_flagged", "crisis_flagged"]
    header += [i.key for i in choice_items]
    header += [f"importance.{c.key}" for c in criteria] + [f"rank.{c.key}" for c in criteria]
    if include_synthetic:
        header.append("synthetic")
    text_keys = [i.key for i in questions.BACKGROUND if i.text_choice] + [questions.FEEDBACK_KEY]
    if include_free_text:
        header += [f"{k}.text" for k in text_keys]
    buffer = io.StringIO()
    writer = safe_csv_writer(buffer)
    writer.writerow(header)
    for p in participants:
        answers = {a.item_key: a for a in p.answers.all()}
        ratings = {r.criterion.key: r.rating for r in p.importance_ratings.all()}
        ranking = rankings.get(p.pk) or []
        row = [p.pseudonym, p.status, p.source, p.consent.consent_version.version, p.attention_failures,
               int(p.attention_flagged), int(p.pk in flagged)]
        for item in choice_items:
            value = answers[item.key].value if item.key in answers else ""
            row.append(";".join(value) if isinstance(value, list) else value)
        row += [ratings.get(c.key, "") for c in criteria]
        row += [ranking.index(c.key) + 1 if c.key in ranking else "" for c in criteria]
        if include_synthetic:
            row.append(int(p.synthetic))
        if include_free_text:
            row += [answers[k].text if k in answers else "" for k in text_keys]
        writer.writerow(row)
    note = ("with free text" if include_free_text else "no free text") + (_synthetic_note(participants) if include_synthetic else "")
    return dataset_version_write(path=Path(path) if path else export_path(study, "survey-answers", ".csv"), content=buffer.getvalue(),
                              kind=DatasetVersion.Kind.SURVEY_ANSWERS, participants=participants, actor=actor, study=study, note=note)


def criteria_rankings_export(*, study: Study, actor=None, include_synthetic: bool = False, path=None) -> DatasetVersion:
    """CSV, one row per participant and criterion: rank (1 = most important), rating, shown position."""
    participants = [p for p in _exportable(study, include_synthetic)]
    rows = CriteriaRanking.objects.filter(participant__in=participants).select_related("participant").order_by("participant__sequence")
    ratings = {(pid, key): rating for pid, key, rating in
               ImportanceRating.objects.filter(participant__in=participants).values_list("participant_id", "criterion__key", "rating")}
    buffer = io.StringIO()
    writer = safe_csv_writer(buffer)
    writer.writerow(["participant", "criterion", "rank", "importance", "shown_position", "basis"]
                    + (["synthetic"] if include_synthetic else []))
    included = []
    for record in rows:
        included.append(record.participant)
        for rank, key in enumerate(record.ranking, start=1):
            shown = record.shown_order.index(key) + 1 if key in record.shown_order else ""
            writer.writerow([record.participant.pseudonym, key, rank, ratings.get((record.participant_id, key), ""), shown, record.basis]
                            + ([int(record.participant.synthetic)] if include_synthetic else []))
    return dataset_version_write(path=Path(path) if path else export_path(study, "criteria-rankings", ".csv"),
                              content=buffer.getvalue(), kind=DatasetVersion.Kind.CRITERIA_RANKINGS, participants=included,
                              actor=actor, study=study, note=_synthetic_note(included).lstrip("; ") if include_synthetic else "")


def response_rankings_export(*, study: Study, actor=None, include_synthetic: bool = False, path=None) -> DatasetVersion:
    """JSONL in the training pipeline's survey format, one line per ranked screen:
    {"prompt", "scenario_id", "criterion", "ranking": [texts best first], "participant", "shown_order": [texts as shown]}."""
    participants = list(_exportable(study, include_synthetic))
    rows = (ResponseRanking.objects.filter(participant__in=participants, skipped=False)
            .select_related("participant", "scenario", "criterion").order_by("participant__sequence", "position"))
    rows = list(rows)
    texts = dict(Response.objects.filter(pk__in={pk for r in rows for pk in r.shown_order}).values_list("pk", "text"))
    lines, included = [], {}
    for record in rows:
        included[record.participant_id] = record.participant
        lines.append(json.dumps({
            "prompt": record.scenario.text,
            "scenario_id": f"s{record.scenario_id}",
            "criterion": record.criterion.key,
            "ranking": [texts[pk] for pk in record.ranking],
            "participant": record.participant.pseudonym,
            "shown_order": [texts[pk] for pk in record.shown_order],
            **({"synthetic": record.participant.synthetic} if include_synthetic else {}),
        }, ensure_ascii=False))
    content = "".join(line + "\n" for line in lines)
    return dataset_version_write(path=Path(path) if path else export_path(study, "response-rankings", ".jsonl"), content=content,
                              kind=DatasetVersion.Kind.RESPONSE_RANKINGS, participants=list(included.values()), actor=actor,
                              study=study, note=f"{len(lines)} rankings" + (_synthetic_note(included.values()) if include_synthetic else ""))
