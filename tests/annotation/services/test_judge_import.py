"""Judge decisions (annotation.services.judge_import): CSV and the pipeline's file, bad rows and files
that import nothing."""
import json

import pytest

from annotation import services
from annotation.exceptions import JudgeImportError
from annotation.models import JudgeDecision
from core.models import AuditEvent
from tests.annotation.factories import make_study
from tests.factories import ResearcherFactory

pytestmark = pytest.mark.django_db


def _rated_study():
    study = make_study(n_items=3, n_clinicians=2, overlap=2, keys=("empathy",))
    items = list(study.items.order_by("order"))
    return study, items


def test_judge_import_csv_in_source_terms(tmp_path):
    study, items = _rated_study()
    path = tmp_path / "judge.csv"
    lines = ["scenario_id,criterion,choice"]
    lines += [f"{items[0].scenario.external_id},overall,source_a", f"s{items[1].scenario_id},overall,tie",
              f"{items[2].token},empathy,source_b"]
    path.write_text("\n".join(lines) + "\n")
    report = services.judge_decisions_import(study=study, path=path, judge_name="gpt-judge", actor=ResearcherFactory())
    assert report.imported == 3
    stored = {(d.item_id, d.criterion.key): d.choice for d in JudgeDecision.objects.filter(study=study)}
    assert stored == {(items[0].pk, "overall"): "a", (items[1].pk, "overall"): "tie", (items[2].pk, "empathy"): "b"}
    assert AuditEvent.objects.filter(action="annotation.judge.import").count() == 1
    # Importing under the same name replaces, it does not add.
    services.judge_decisions_import(study=study, rows=[{"scenario_id": f"s{items[0].scenario_id}", "criterion": "overall",
                                                        "choice": "source_b"}], judge_name="gpt-judge", actor=None)
    assert list(JudgeDecision.objects.filter(study=study).values_list("choice", flat=True)) == ["b"]


def test_judge_import_reads_the_pipeline_file_in_either_orientation(tmp_path):
    study, items = _rated_study()
    a_name, b_name = "dpo_empathy", "base"
    lines = []
    for index, item in enumerate(items):
        # The pipeline lists source B first for odd items: model_a is then the study's source B.
        flip = index % 2 == 1
        model_a, model_b = (b_name, a_name) if flip else (a_name, b_name)
        text_a, text_b = (item.response_b.text, item.response_a.text) if flip else (item.response_a.text, item.response_b.text)
        lines.append({"scenario_id": f"s{item.scenario_id}", "prompt": item.scenario.text, "criterion": "overall",
                      "model_a": model_a, "model_b": model_b, "response_a": text_a, "response_b": text_b,
                      "majority": "a", "winner": model_a, "judge": {"name": "rubric"}, "synthetic": True})
    lines.append({**lines[0], "model_b": "sft_empathy"})  # another pairing
    lines.append({**lines[0], "criterion": "empathy", "majority": "none"})  # no decision
    lines.append({**lines[0], "scenario_id": "s999999"})  # outside the study
    path = tmp_path / "judge_decisions.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    report = services.judge_decisions_import(
        study=study, path=path, judge_name="rubric", actor=None, skip_unmatched=True,
        source_names={a_name: "source_a", b_name: "source_b"},
    )
    assert (report.imported, report.skipped_other_pairs, report.skipped_no_decision, report.skipped_unmatched) == (3, 1, 1, 1)
    assert report.synthetic
    decisions = dict(JudgeDecision.objects.filter(study=study).values_list("item_id", "choice"))
    # "a" means the pipeline's model_a: source A for even items, source B for the odd one.
    assert decisions == {items[0].pk: "a", items[1].pk: "b", items[2].pk: "a"}


@pytest.mark.parametrize(
    "rows,message",
    [
        ([{"scenario_id": "X", "criterion": "charisma", "choice": "source_a"}], "unknown dimension"),
        ([{"scenario_id": "X", "criterion": "overall", "choice": "left"}], "choice must be"),
        ([{"scenario_id": "nope", "criterion": "overall", "choice": "tie"}], "not in this study"),
        ([{"criterion": "overall", "choice": "tie"}], "needs item or scenario_id"),
        ([{"scenario_id": "X", "criterion": "overall"}], "needs choice"),
        ([{"scenario_id": "X", "criterion": "overall", "choice": "tie"}] * 2, "second decision"),
        ([{"scenario_id": "X", "criterion": "overall", "model_a": "A", "model_b": "B", "majority": "maybe"}], "majority must be"),
        ([{"scenario_id": "X", "criterion": "overall", "model_a": "A", "model_b": "B", "majority": "a",
           "response_a": "something else", "response_b": "entirely"}], "different responses"),
        ([{"scenario_id": "X", "criterion": "overall", "model_a": "A", "model_b": "other", "majority": "a"}], "no decision"),
        ([], "no decision"),
    ],
)
def test_judge_import_rejects_bad_rows_and_imports_nothing(rows, message):
    study, items = _rated_study()
    good = {"scenario_id": f"s{items[0].scenario_id}", "criterion": "overall", "choice": "source_a"}
    rows = [dict(r, scenario_id=f"s{items[1].scenario_id}") if r.get("scenario_id") == "X" else r for r in rows]
    with pytest.raises(JudgeImportError) as caught:
        services.judge_decisions_import(
            study=study, rows=([good] + rows) if "no decision" not in message else rows, judge_name="j", actor=None,
            source_names={"A": "source_a", "B": "source_b"},
        )
    assert message in " ".join(caught.value.errors + [caught.value.message])
    assert not JudgeDecision.objects.exists()
    assert not AuditEvent.objects.filter(action="annotation.judge.import").exists()


def test_judge_import_rejects_malformed_files(tmp_path):
    study, _ = _rated_study()
    bad_json = tmp_path / "bad.jsonl"
    bad_json.write_text('{"scenario_id": "s1"\n')
    with pytest.raises(JudgeImportError, match="line 1: not valid JSON"):
        services.judge_decisions_import(study=study, path=bad_json, judge_name="j", actor=None)
    wrong = tmp_path / "judge.txt"
    wrong.write_text("x")
    with pytest.raises(JudgeImportError, match="expected a .jsonl"):
        services.judge_decisions_import(study=study, path=wrong, judge_name="j", actor=None)
    with pytest.raises(JudgeImportError, match="name"):
        services.judge_decisions_import(study=study, rows=[{}], judge_name=" ", actor=None)
    assert not JudgeDecision.objects.exists()
