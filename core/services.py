"""Writes to the shared vocabulary: criteria, helplines, scenarios (the audit log's writes are core.audit)."""
from __future__ import annotations

import csv
import io
import random
from dataclasses import dataclass, field
from pathlib import Path

from django.db import transaction

from .audit import AuditAction, audit_record
from .criteria import ALL_CRITERIA, CRITERIA_SETS, THERAPEUTIC
from .files import FileTextError, JsonlLineError, jsonl_objects, read_text
from .input import has_control_character
from .models import CriteriaSet, CriteriaSetMember, Criterion, Helpline, Scenario

@transaction.atomic
def vocabulary_seed():
    """Create or refresh the criteria and the study's criteria sets (idempotent)."""
    therapeutic_keys = {c.key for c in THERAPEUTIC}
    criteria = {}
    for position, spec in enumerate(ALL_CRITERIA.values()):
        criteria[spec.key], _ = Criterion.objects.update_or_create(
            key=spec.key,
            defaults=dict(
                name=spec.name,
                question=spec.question,
                better_when=spec.better_when,
                worse_when=spec.worse_when,
                source_reference=spec.source,
                is_safety=spec.is_safety,
                evaluation_only=spec.evaluation_only,
                is_therapeutic=spec.key in therapeutic_keys,
                position=position,
            ),
        )
    for set_spec in CRITERIA_SETS:
        criteria_set, _ = CriteriaSet.objects.update_or_create(
            key=set_spec.key,
            defaults=dict(
                name=set_spec.name,
                description=set_spec.description,
                safety_criterion=criteria[set_spec.safety] if set_spec.safety else None,
            ),
        )
        criteria_set.members.all().delete()
        CriteriaSetMember.objects.bulk_create(
            CriteriaSetMember(criteria_set=criteria_set, criterion=criteria[key], order=order)
            for order, key in enumerate(set_spec.criteria)
        )
    return criteria


DEFAULT_HELPLINES = [
    # (region, name, phone, text, url, hours, description)
    ("International", "Emergency services", "112 / 911 / 999", "", "", "24/7",
     "If you or someone else is in immediate danger, call your local emergency number."),
    ("International", "Find A Helpline", "", "", "https://findahelpline.com", "",
     "Free, confidential helplines in many countries."),
    ("United Kingdom and Ireland", "Samaritans", "116 123", "", "https://www.samaritans.org", "24/7",
     "Someone to talk to, whatever you are going through."),
    ("United Kingdom and Ireland", "Shout", "", "Text SHOUT to 85258", "https://giveusashout.org", "24/7",
     "Free text support in the UK."),
    ("United States", "988 Suicide & Crisis Lifeline", "988", "Text 988", "https://988lifeline.org", "24/7",
     "Call or text for free, confidential support."),
    ("United States", "Crisis Text Line", "", "Text HOME to 741741", "https://www.crisistextline.org", "24/7", ""),
    ("Australia", "Lifeline", "13 11 14", "Text 0477 13 11 14", "https://www.lifeline.org.au", "24/7", ""),
]


@transaction.atomic
def helplines_seed():
    """Add the default helplines once; researchers edit them in the admin afterwards."""
    if Helpline.objects.exists():
        return 0
    Helpline.objects.bulk_create(
        Helpline(region=r, name=n, phone=p, text_contact=t, url=u, hours=h, description=d, order=i)
        for i, (r, n, p, t, u, h, d) in enumerate(DEFAULT_HELPLINES)
    )
    return len(DEFAULT_HELPLINES)


# --- Scenario import -------------------------------------------------------

MIN_CHARS, MAX_CHARS, MIN_WORDS = 10, 2000, 3
RISK_LEVELS = {choice for choice, _ in Scenario.RiskLevel.choices}


class ScenarioFileError(ValueError):
    """The file cannot be imported; nothing was written."""


@dataclass
class ScenarioRow:
    line: int
    external_id: str
    text: str
    topics: list = field(default_factory=list)
    risk_level: str = Scenario.RiskLevel.NONE


@dataclass
class ImportReport:
    read: int = 0
    imported: int = 0
    dropped: dict = field(default_factory=dict)
    split_counts: dict = field(default_factory=dict)

    def drop(self, reason: str):
        self.dropped[reason] = self.dropped.get(reason, 0) + 1

    def summary(self) -> str:
        parts = [f"read {self.read}", f"imported {self.imported}"]
        parts += [f"dropped {n} ({reason})" for reason, n in sorted(self.dropped.items())]
        if self.split_counts:
            parts.append("split " + ", ".join(f"{k} {v}" for k, v in sorted(self.split_counts.items())))
        return "; ".join(parts)


def _parse_csv(content: str) -> list[ScenarioRow]:
    reader = csv.DictReader(io.StringIO(content))
    missing = {"sp_id", "seeker_post"} - set(reader.fieldnames or [])
    if missing:
        raise ScenarioFileError(f"line 1: CSV header must contain sp_id and seeker_post (missing: {', '.join(sorted(missing))})")
    rows = []
    for record in reader:
        line = reader.line_num
        if None in record or any(value is None for value in record.values()):
            raise ScenarioFileError(f"line {line}: wrong number of fields")
        rows.append(ScenarioRow(line=line, external_id=record["sp_id"].strip(), text=record["seeker_post"]))
    return rows


def _parse_jsonl(content: str) -> list[ScenarioRow]:
    rows = []
    try:
        for line_number, record in jsonl_objects(content):
            rows.append(_scenario_row(line_number, record))
    except JsonlLineError as exc:
        raise ScenarioFileError(str(exc)) from None
    return rows


def _scenario_row(line_number: int, record: dict) -> ScenarioRow:
    text = record.get("text", record.get("seeker_post"))
    if not isinstance(text, str):
        raise ScenarioFileError(f"line {line_number}: needs a string field 'text' (or 'seeker_post')")
    external_id = record.get("external_id", record.get("sp_id", ""))
    topics = record.get("topics", [])
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise ScenarioFileError(f"line {line_number}: 'topics' must be a list of strings")
    risk_level = record.get("risk_level", Scenario.RiskLevel.NONE)
    if risk_level not in RISK_LEVELS:
        raise ScenarioFileError(f"line {line_number}: 'risk_level' must be one of {', '.join(sorted(RISK_LEVELS))}")
    return ScenarioRow(line=line_number, external_id=str(external_id), text=text, topics=topics, risk_level=risk_level)


def parse_scenario_file(path: Path) -> list[ScenarioRow]:
    path = Path(path)
    try:
        content = read_text(path)
    except FileTextError as exc:
        raise ScenarioFileError(f"{path}: {exc.reason}") from None
    if path.suffix.lower() == ".csv":
        return _parse_csv(content)
    if path.suffix.lower() in {".jsonl", ".ndjson"}:
        return _parse_jsonl(content)
    raise ScenarioFileError(f"{path}: expected a .csv (EPITOME: sp_id, seeker_post) or .jsonl file")


def split_by_length_quartile(lengths: list[int], *, test_fraction: float, seed: int) -> list[str]:
    """Train/test labels stratified by length quartile, as the study split its posts."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
    labels = ["train"] * len(lengths)
    rng = random.Random(seed)
    quartiles = [order[q * len(order) // 4:(q + 1) * len(order) // 4] for q in range(4)]
    for members in quartiles:
        members = list(members)
        rng.shuffle(members)
        for index in members[: round(len(members) * test_fraction)]:
            labels[index] = "test"
    return labels


def scenarios_import(*, path: Path, source: str, actor=None, test_fraction: float = 0.2, seed: int = 0) -> ImportReport:
    """Import scenarios from an EPITOME-format CSV or a JSONL file.

    Applies the study's filters (10-2,000 characters, at least 3 words),
    de-duplicates against the file and the database, and splits the new
    scenarios train/test by length quartile. A malformed file raises
    ScenarioFileError and imports nothing."""
    rows = parse_scenario_file(path)
    report = ImportReport(read=len(rows))
    seen = set(Scenario.objects.values_list("text_sha256", flat=True))
    seen_ids = set(Scenario.objects.filter(source=source).exclude(external_id="").values_list("external_id", flat=True))
    kept = []
    for row in rows:
        text = row.text.strip()
        if has_control_character(text) or has_control_character(row.external_id or ""):
            report.drop("contains a control character")
            continue
        if len(text) < MIN_CHARS:
            report.drop(f"shorter than {MIN_CHARS} characters")
            continue
        if len(text) > MAX_CHARS:
            report.drop(f"longer than {MAX_CHARS} characters")
            continue
        if len(text.split()) < MIN_WORDS:
            report.drop(f"fewer than {MIN_WORDS} words")
            continue
        digest = Scenario.hash_text(text)
        if digest in seen or (row.external_id and row.external_id in seen_ids):
            report.drop("duplicate")
            continue
        seen.add(digest)
        if row.external_id:
            seen_ids.add(row.external_id)
        row.text = text
        kept.append(row)
    splits = split_by_length_quartile([len(r.text) for r in kept], test_fraction=test_fraction, seed=seed)
    with transaction.atomic():
        Scenario.objects.bulk_create(
            Scenario(
                text=row.text,
                text_sha256=Scenario.hash_text(row.text),
                source=source,
                external_id=row.external_id,
                split=split,
                topics=row.topics,
                risk_level=row.risk_level,
            )
            for row, split in zip(kept, splits)
        )
        report.imported = len(kept)
        for split in splits:
            report.split_counts[split] = report.split_counts.get(split, 0) + 1
        audit_record(
            actor=actor,
            action=AuditAction.SCENARIOS_IMPORT,
            target_type="core.scenario",
            details={"file": Path(path).name, "source": source, "read": report.read, "imported": report.imported, "dropped": report.dropped},
        )
    return report


SCENARIO_BANK_PATH = Path(__file__).resolve().parent / "data" / "scenario_bank.jsonl"
SCENARIO_BANK_SOURCE = "attune-bank"


def scenario_bank_load(*, actor=None) -> ImportReport:
    """Import the project's own scenario bank (idempotent: reruns add nothing)."""
    return scenarios_import(path=SCENARIO_BANK_PATH, source=SCENARIO_BANK_SOURCE, actor=actor, test_fraction=0.2, seed=2026)
