"""The scenario importer: EPITOME CSV and JSONL, filters, de-duplication, all-or-nothing."""
import json
from collections import Counter

import pytest
from django.core.management import CommandError, call_command

from core.models import AuditEvent, Scenario
from core.services import SCENARIO_BANK_PATH, ScenarioFileError, scenario_bank_load, scenarios_import, split_by_length_quartile

GOOD = "I keep waking up at 4am and my mind will not stop racing about work."


def write(tmp_path, name, content):
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return path


def test_epitome_csv_imports_and_filters(db, tmp_path):
    path = write(
        tmp_path,
        "epitome.csv",
        "sp_id,seeker_post\n"
        f'a1,"{GOOD}"\n'
        'a2,"too short"\n'  # 9 characters
        'a3,"Aaaaaaaaaaaaaaaa bbbbbbbbbbbbbbb"\n'  # two words
        f'a4,"{"x " * 1001}"\n'  # over 2,000 characters
        f'a5,"{GOOD}"\n'  # duplicate text
        'a6,"My sister and I have not spoken since the funeral, and it hurts."\n',
    )
    report = scenarios_import(path=path, source="epitome")
    assert report.read == 6
    assert report.imported == 2
    assert report.dropped == {
        "shorter than 10 characters": 1,
        "fewer than 3 words": 1,
        "longer than 2000 characters": 1,
        "duplicate": 1,
    }
    assert set(Scenario.objects.values_list("external_id", flat=True)) == {"a1", "a6"}
    assert AuditEvent.objects.filter(action="scenarios.import").count() == 1


def test_reimport_adds_nothing(db, tmp_path):
    path = write(tmp_path, "posts.jsonl", json.dumps({"external_id": "j1", "text": GOOD}) + "\n")
    assert scenarios_import(path=path, source="f").imported == 1
    again = scenarios_import(path=path, source="f")
    assert again.imported == 0 and again.dropped == {"duplicate": 1}
    # Whitespace differences are still the same post.
    spaced = write(tmp_path, "spaced.jsonl", json.dumps({"text": "  " + GOOD.replace(" ", "   ") + "\n"}) + "\n")
    assert scenarios_import(path=spaced, source="g").imported == 0
    assert Scenario.objects.count() == 1


@pytest.mark.parametrize(
    "name,content,message",
    [
        ("bad.jsonl", json.dumps({"text": GOOD}) + "\n{not json\n", "line 2: not valid JSON"),
        ("bad.jsonl", json.dumps({"text": GOOD}) + "\n" + json.dumps({"body": "x"}) + "\n", "line 2: needs a string field 'text'"),
        ("bad.jsonl", json.dumps({"text": GOOD, "risk_level": "extreme"}) + "\n", "line 1: 'risk_level' must be one of"),
        ("bad.csv", "id,post\n1,hello there friend\n", "line 1: CSV header must contain sp_id and seeker_post"),
        ("bad.csv", f'sp_id,seeker_post\na1,"{GOOD}"\na2,"{GOOD} again",extra\n', "line 3: wrong number of fields"),
        ("bad.txt", GOOD, "expected a .csv"),
    ],
)
def test_malformed_file_imports_nothing(db, tmp_path, name, content, message):
    path = write(tmp_path, name, content)
    with pytest.raises(ScenarioFileError, match=message):
        scenarios_import(path=path, source="bad")
    assert Scenario.objects.count() == 0
    assert not AuditEvent.objects.filter(action="scenarios.import").exists()


def test_command_reports_counts_and_errors(db, tmp_path, capsys):
    path = write(tmp_path, "ok.jsonl", json.dumps({"text": GOOD}) + "\n" + json.dumps({"text": "no"}) + "\n")
    call_command("import_scenarios", str(path))
    out = capsys.readouterr().out
    assert "read 2" in out and "imported 1" in out and "dropped 1 (shorter than 10 characters)" in out
    bad = write(tmp_path, "broken.jsonl", "{oops\n")
    with pytest.raises(CommandError, match="nothing imported: line 1"):
        call_command("import_scenarios", str(bad))


def test_split_is_stratified_by_length_quartile():
    lengths = list(range(10, 210))  # 200 posts, 50 per quartile
    labels = split_by_length_quartile(lengths, test_fraction=0.2, seed=1)
    assert labels.count("test") == 40
    for q in range(4):
        assert labels[q * 50:(q + 1) * 50].count("test") == 10
    assert labels == split_by_length_quartile(lengths, test_fraction=0.2, seed=1)
    assert labels != split_by_length_quartile(lengths, test_fraction=0.2, seed=2)


@pytest.mark.skipif(not SCENARIO_BANK_PATH.exists(), reason="scenario bank not written yet")
def test_scenario_bank_meets_the_brief(db):
    report = scenario_bank_load()
    assert report.dropped == {}, report.summary()
    scenarios = list(Scenario.objects.filter(source="attune-bank"))
    assert len(scenarios) >= 150
    topics = Counter(t for s in scenarios for t in s.topics)
    assert len([t for t, n in topics.items() if n >= 3]) >= 12
    risky = [s for s in scenarios if s.risk_level in ("moderate", "high")]
    assert len(risky) >= 20
    lengths = sorted(len(s.text) for s in scenarios)
    assert lengths[0] < 120 and lengths[-1] > 900  # one line to several paragraphs
    splits = Counter(s.split for s in scenarios)
    assert 0.15 <= splits["test"] / len(scenarios) <= 0.25
    assert scenario_bank_load().imported == 0


def test_rows_with_control_characters_are_dropped_not_a_database_error(db, tmp_path):
    rows = [{"text": GOOD}, {"text": "My partner left and I can't\u0000 stop crying at night."},
            {"text": "Work has been overwhelming and I feel numb most days.", "external_id": "x\u0001"}]
    path = write(tmp_path, "nul.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
    report = scenarios_import(path=path, source="nul-test")
    assert report.imported == 1 and report.dropped == {"contains a control character": 2}
    assert not Scenario.objects.filter(text__contains="crying").exists()
