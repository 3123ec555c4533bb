"""An automatic judge's decisions on a study's items, imported all or nothing."""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from django.db import transaction

from core.services import audit_record

from .. import screening, selectors
from ..exceptions import JudgeImportError
from ..models import Choice, JudgeDecision, RatingItem, RatingStudy


SOURCE_CHOICES = {"source_a": Choice.A.value, "source_b": Choice.B.value, "tie": Choice.TIE.value}
MAX_REPORTED_ERRORS = 20


@dataclass
class JudgeImportReport:
    judge_name: str
    imported: int = 0
    replaced: int = 0
    rows: int = 0
    skipped_other_pairs: int = 0
    skipped_no_decision: int = 0
    skipped_unmatched: int = 0
    synthetic: bool = False
    by_criterion: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        parts = [f"{self.imported} decisions imported for {self.judge_name!r} from {self.rows} rows"]
        for label, n in (("other model pairs", self.skipped_other_pairs), ("no decision", self.skipped_no_decision),
                         ("scenario not in the study", self.skipped_unmatched)):
            if n:
                parts.append(f"skipped {n} ({label})")
        if self.replaced:
            parts.append(f"replaced {self.replaced} earlier decisions")
        return "; ".join(parts)


def parse_judge_file(path) -> list[dict]:
    """Rows of a judge-decision file: ``.jsonl`` (the pipeline's
    judge_decisions.jsonl, or any rows with the fields below) or ``.csv``."""
    path = Path(path)
    try:
        content = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise JudgeImportError(f"{path.name}: no such file") from None
    except UnicodeDecodeError as exc:
        raise JudgeImportError(f"{path.name}: not UTF-8 text ({exc.reason})") from None
    return parse_judge_text(content, fmt=path.suffix.lower().lstrip("."))


def parse_judge_text(content: str, *, fmt: str) -> list[dict]:
    if fmt in ("jsonl", "ndjson"):
        rows = []
        for number, raw in enumerate(content.splitlines(), start=1):
            if not raw.strip():
                continue
            try:
                record = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise JudgeImportError(f"line {number}: not valid JSON ({exc.msg})") from None
            if not isinstance(record, dict):
                raise JudgeImportError(f"line {number}: expected a JSON object")
            record["_line"] = number
            rows.append(record)
        return rows
    if fmt == "csv":
        reader = csv.DictReader(io.StringIO(content))
        if not reader.fieldnames:
            raise JudgeImportError("the CSV file is empty")
        rows = []
        for record in reader:
            if None in record or any(v is None for v in record.values()):
                raise JudgeImportError(f"line {reader.line_num}: wrong number of fields")
            record = {k.strip(): v.strip() for k, v in record.items()}
            record["_line"] = reader.line_num
            rows.append(record)
        return rows
    raise JudgeImportError("expected a .jsonl (the pipeline's judge_decisions.jsonl) or .csv file")


def _first(row: dict, *keys):
    for key in keys:
        value = row.get(key)
        if value not in (None, ""):
            return value
    return None


def _same_text(x, y) -> bool:
    return " ".join(str(x).split()) == " ".join(str(y).split())


def _same_response(shown, text) -> bool:
    """The judge saw this response, raw or as normalised for display."""
    return _same_text(shown, text) or _same_text(screening.normalise_for_display(str(shown)),
                                                 screening.normalise_for_display(text))


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
    items = list(study.items.exclude(screen=RatingItem.Screen.EXCLUDE).select_related("scenario", "response_a", "response_b"))
    by_token = {i.token: i for i in items}
    by_pk = {i.scenario_id: i for i in items}
    by_external: dict[str, list[RatingItem]] = {}
    for item in items:
        if item.scenario.external_id:
            by_external.setdefault(item.scenario.external_id, []).append(item)

    def find_item(ref: str):
        ref = str(ref).strip()
        if ref in by_token:
            return by_token[ref]
        matches = list(by_external.get(ref, []))
        digits = ref[1:] if ref[:1] in ("s", "S") else ref
        if digits.isdigit() and int(digits) in by_pk and by_pk[int(digits)] not in matches:
            matches.append(by_pk[int(digits)])
        if len(matches) > 1:
            raise ValueError(f"scenario {ref!r} matches {len(matches)} items (an external id and a database id); use the item token")
        return matches[0] if matches else None

    errors, decided = [], {}
    for index, row in enumerate(rows, start=1):
        if len(errors) >= MAX_REPORTED_ERRORS:
            errors.append("(further lines not checked)")
            break
        where = f"line {row.get('_line', index)}" if isinstance(row, Mapping) else f"row {index}"
        if not isinstance(row, Mapping):
            errors.append(f"{where}: expected an object with item/scenario_id, criterion and choice")
            continue
        ref = _first(row, "item", "scenario_id", "scenario_external_id", "scenario")
        key = _first(row, "criterion", "dimension")
        explicit = _first(row, "choice", "judge_choice")
        pipeline = all(k in row for k in ("model_a", "model_b", "majority"))
        if ref is None:
            errors.append(f"{where}: needs item or scenario_id")
            continue
        if key is None:
            errors.append(f"{where}: needs criterion (or dimension)")
            continue
        key = str(key).strip()
        if key not in criteria:
            errors.append(f"{where}: unknown dimension {key!r} (this study has {', '.join(criteria)})")
            continue
        flip = False
        if explicit is not None:
            value = str(explicit).strip()
            value = names.get(value, value)
            if value not in SOURCE_CHOICES:
                errors.append(f"{where}: choice must be source_a, source_b or tie, got {explicit!r}")
                continue
            choice = SOURCE_CHOICES[value]
        elif pipeline:
            pair = (names.get(str(row["model_a"])), names.get(str(row["model_b"])))
            if set(pair) != {"source_a", "source_b"}:
                report.skipped_other_pairs += 1
                continue
            flip = pair[0] == "source_b"
            majority = str(row["majority"]).strip().lower()
            if majority == "none":
                report.skipped_no_decision += 1
                continue
            if majority not in ("a", "b", "tie"):
                errors.append(f"{where}: majority must be a, b, tie or none, got {row['majority']!r}")
                continue
            if majority == "tie":
                choice = Choice.TIE.value
            else:
                choice = SOURCE_CHOICES[pair[0] if majority == "a" else pair[1]]
        else:
            errors.append(f"{where}: needs choice (source_a, source_b or tie), or the pipeline's model_a, model_b and majority")
            continue
        try:
            item = find_item(ref)
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            continue
        if item is None:
            if skip_unmatched:
                report.skipped_unmatched += 1
                continue
            errors.append(f"{where}: scenario {ref!r} is not in this study")
            continue
        shown_a, shown_b = row.get("response_a"), row.get("response_b")
        if shown_a is not None and shown_b is not None:
            if flip:
                shown_a, shown_b = shown_b, shown_a
            if not (_same_response(shown_a, item.response_a.text) and _same_response(shown_b, item.response_b.text)):
                errors.append(f"{where}: the judge rated different responses from the ones this study shows for {ref!r}")
                continue
        if (item.pk, key) in decided:
            errors.append(f"{where}: a second decision for {ref!r} on {key!r}")
            continue
        decided[(item.pk, key)] = choice
        if row.get("synthetic") in (True, "true", "True", "1"):
            report.synthetic = True
    if errors:
        raise JudgeImportError("the judge decisions cannot be imported; nothing was imported", errors=errors)
    if not decided:
        raise JudgeImportError("no decision for this study's items and sources was found; nothing was imported")
    with transaction.atomic():
        existing = JudgeDecision.objects.filter(study=study, judge_name=judge_name)
        report.replaced = existing.count()
        existing.delete()
        JudgeDecision.objects.bulk_create(
            JudgeDecision(study=study, judge_name=judge_name, item_id=item_id, criterion=criteria[key], choice=choice,
                          synthetic=report.synthetic)
            for (item_id, key), choice in decided.items()
        )
        report.imported = len(decided)
        for _, key in decided:
            report.by_criterion[key] = report.by_criterion.get(key, 0) + 1
        audit_record(actor=actor, action="annotation.judge.import", target=study, details=report.as_dict())
    return report
