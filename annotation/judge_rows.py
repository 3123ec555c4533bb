"""Reading and matching an automatic judge's decision rows: plain inputs and outputs, no database.

``parse_judge_file`` / ``parse_judge_text`` read the pipeline's
``judge_decisions.jsonl`` or a CSV into row dicts; ``judge_rows_match`` checks
every row against a study's items (``ItemRef``), dimensions and sources and
returns the decisions in SOURCE terms with every problem found.
annotation.services.judge_import stores them.
"""
from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

from core.files import FileTextError, JsonlLineError, jsonl_objects, read_text

from . import screening
from .exceptions import JudgeImportError

# The stored choice values (annotation.models.Choice), in SOURCE terms.
CHOICE_A, CHOICE_B, CHOICE_TIE = "a", "b", "tie"
SOURCE_CHOICES = {"source_a": CHOICE_A, "source_b": CHOICE_B, "tie": CHOICE_TIE}
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
        content = read_text(path)
    except FileTextError as exc:
        raise JudgeImportError(f"{path.name}: {exc.reason}") from None
    return parse_judge_text(content, fmt=path.suffix.lower().lstrip("."))


def parse_judge_text(content: str, *, fmt: str) -> list[dict]:
    if fmt in ("jsonl", "ndjson"):
        try:
            return [{**record, "_line": number} for number, record in jsonl_objects(content)]
        except JsonlLineError as exc:
            raise JudgeImportError(str(exc)) from None
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


@dataclass(frozen=True)
class ItemRef:
    """What matching needs of a rating item."""

    pk: int
    token: str
    scenario_id: int
    external_id: str
    response_a: str
    response_b: str


@dataclass
class JudgeRowsMatch:
    decided: dict = field(default_factory=dict)  # {(item pk, dimension key): stored choice}
    errors: list = field(default_factory=list)
    skipped_other_pairs: int = 0
    skipped_no_decision: int = 0
    skipped_unmatched: int = 0
    synthetic: bool = False


class _ItemIndex:
    def __init__(self, items: Iterable[ItemRef]):
        self.by_token, self.by_pk, self.by_external = {}, {}, {}
        for item in items:
            self.by_token[item.token] = item
            self.by_pk[item.scenario_id] = item
            if item.external_id:
                self.by_external.setdefault(item.external_id, []).append(item)

    def find(self, ref) -> ItemRef | None:
        ref = str(ref).strip()
        if ref in self.by_token:
            return self.by_token[ref]
        matches = list(self.by_external.get(ref, []))
        digits = ref[1:] if ref[:1] in ("s", "S") else ref
        # ASCII digits only: "²".isdigit() is true, and int() would fail on it with a raw message.
        if digits.isascii() and digits.isdigit() and int(digits) in self.by_pk and self.by_pk[int(digits)] not in matches:
            matches.append(self.by_pk[int(digits)])
        if len(matches) > 1:
            raise ValueError(f"scenario {ref!r} matches {len(matches)} items (an external id and a database id); use the item token")
        return matches[0] if matches else None


def judge_rows_match(rows: list, *, items: Iterable[ItemRef], dimensions: Iterable[str], names: Mapping[str, str],
                     skip_unmatched: bool) -> JudgeRowsMatch:
    """Check every row (see annotation.services.judge_decisions_import for the
    fields) against the study: ``dimensions`` are its dimension keys, ``names``
    maps model names to "source_a" | "source_b". Rows for other model pairs or
    with no decision are counted, not errors; after MAX_REPORTED_ERRORS errors
    the rest is not checked."""
    index, dimensions = _ItemIndex(items), list(dimensions)
    result = JudgeRowsMatch()
    errors, decided = result.errors, result.decided
    for number, row in enumerate(rows, start=1):
        if len(errors) >= MAX_REPORTED_ERRORS:
            errors.append("(further lines not checked)")
            break
        where = f"line {row.get('_line', number)}" if isinstance(row, Mapping) else f"row {number}"
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
        if key not in dimensions:
            errors.append(f"{where}: unknown dimension {key!r} (this study has {', '.join(dimensions)})")
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
                result.skipped_other_pairs += 1
                continue
            flip = pair[0] == "source_b"
            majority = str(row["majority"]).strip().lower()
            if majority == "none":
                result.skipped_no_decision += 1
                continue
            if majority not in ("a", "b", "tie"):
                errors.append(f"{where}: majority must be a, b, tie or none, got {row['majority']!r}")
                continue
            if majority == "tie":
                choice = CHOICE_TIE
            else:
                choice = SOURCE_CHOICES[pair[0] if majority == "a" else pair[1]]
        else:
            errors.append(f"{where}: needs choice (source_a, source_b or tie), or the pipeline's model_a, model_b and majority")
            continue
        try:
            item = index.find(ref)
        except ValueError as exc:
            errors.append(f"{where}: {exc}")
            continue
        if item is None:
            if skip_unmatched:
                result.skipped_unmatched += 1
                continue
            errors.append(f"{where}: scenario {ref!r} is not in this study")
            continue
        shown_a, shown_b = row.get("response_a"), row.get("response_b")
        if shown_a is not None and shown_b is not None:
            if flip:
                shown_a, shown_b = shown_b, shown_a
            if not (_same_response(shown_a, item.response_a) and _same_response(shown_b, item.response_b)):
                errors.append(f"{where}: the judge rated different responses from the ones this study shows for {ref!r}")
                continue
        if (item.pk, key) in decided:
            errors.append(f"{where}: a second decision for {ref!r} on {key!r}")
            continue
        decided[(item.pk, key)] = choice
        if row.get("synthetic") in (True, "true", "True", "1"):
            result.synthetic = True
    return result
