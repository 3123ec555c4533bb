"""The report page from a stored run directory built from hand-made votes: shape checks at the top,
intervals, tie rates, length control, Holm-corrected McNemar, reward-model accuracy with its interval."""
from __future__ import annotations

import json
from decimal import ROUND_HALF_UP, Decimal

import pytest

from tests.training.factories import ExperimentFactory, JobFactory
from tests.training.pipeline.vote_sets import strength_decisions
from training.models import Job
from training.pipeline.evaluation import evaluation_statistics, plot_pareto

pytestmark = pytest.mark.django_db

MODELS = ("base", "sft", "dpo:empathy", "dpo:safety", "modpo:empathy")


@pytest.fixture
def stored_run(tmp_path):
    """An experiment whose evaluate, reward_model and export_inputs jobs point at files written here."""
    strengths = {m: {"empathy": 1.0, "safety": 1.0} for m in MODELS}
    strengths["dpo:empathy"]["empathy"] = 6.0  # DPO-empathy clearly ahead on empathy
    decisions = strength_decisions(strengths, scenarios=20, personas=5)
    run_dir = tmp_path / "evaluation"
    run_dir.mkdir()
    numbers = evaluation_statistics(decisions, list(MODELS), ["empathy", "safety"], samples=200, seed=0)
    plots = plot_pareto(numbers["table"], "empathy", "safety", run_dir / "pareto", synthetic=True)
    report = {"synthetic": True, "judge": {"name": "rubric", "synthetic": True}, "criteria": ["empathy", "safety"],
              "models": [{"name": m} for m in MODELS], "rules": {}, **numbers}
    (run_dir / "evaluation.json").write_text(json.dumps(report))
    scenarios = tmp_path / "scenarios.jsonl"
    records = [{"scenario_id": f"s{i}", "prompt": "p", "split": "test" if i < 20 else "train",
                "risk_level": "high" if i < 5 else "none", "topics": ["grief" if i % 2 else "sleep"]} for i in range(60)]
    scenarios.write_text("".join(json.dumps(r) + "\n" for r in records))
    experiment = ExperimentFactory(output_dir=str(tmp_path))
    JobFactory(experiment=experiment, key="scenarios", kind="export_inputs", state=Job.State.SUCCEEDED, position=0,
               result={"scenarios_path": str(scenarios), "test_split": "stratified"})
    JobFactory(experiment=experiment, key="reward:empathy", kind="reward_model", state=Job.State.SUCCEEDED, position=1,
               params={"criterion": "empathy"},
               result={"validation_accuracy": 1.0, "validation_pairs": 2, "train_accuracy": 1.0, "train_pairs": 14})
    JobFactory(experiment=experiment, key="reward:safety", kind="reward_model", state=Job.State.SUCCEEDED, position=2,
               params={"criterion": "safety"},
               result={"validation_accuracy": 0.8, "validation_pairs": 40, "train_accuracy": 0.9, "train_pairs": 120})
    JobFactory(experiment=experiment, key="evaluate", kind="evaluate", state=Job.State.SUCCEEDED, position=3,
               result={"evaluation_json": str(run_dir / "evaluation.json"), "plots": [str(p) for p in plots]})
    return experiment, report


def _one(value: float) -> str:
    """A number as the template's floatformat:1 writes it (half up, from the decimal representation)."""
    return str(Decimal(repr(value)).quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _section(page: str, element_id: str) -> str:
    start = page.index(f'id="{element_id}"')
    return page[start:page.index("</table>", start)]


def test_report_shows_checks_intervals_lengths_and_corrected_tests(client, researcher, stored_run):
    experiment, report = stored_run
    client.force_login(researcher)
    page = client.get(f"/admin/training/experiment/{experiment.pk}/report/").content.decode()

    # The shape checks come first, each with its outcome and the interval it rests on.
    assert page.index('id="shape-checks"') < page.index('id="win-rate-table"')
    checks = _section(page, "shape-checks")
    dpo_check = next(c for c in report["shape_checks"] if c["key"] == "dpo_beats_base")
    assert dpo_check["status"] == "PASS"
    low, high = (100 * v for v in dpo_check["interval"])
    row = checks[checks.index("DPO (empathy) beats the base model"):]
    row = row[:row.index("</tr>")]
    assert "<strong>PASS</strong>" in row and f"[{_one(low)}, {_one(high)}]" in row
    assert "not applicable" in checks and "modpo:therapeutic_five_safety" in checks  # phase 2 absent: not a PASS

    # Every win rate with its interval, tie rate and decisive count; mean length beside the table.
    table = _section(page, "win-rate-table")
    base = report["table"]["base"]["empathy"]
    low, high = (100 * v for v in base["interval"])
    assert f"[{_one(low)}, {_one(high)}]" in table and f"{base['decisive']} of {base['decisions']} decisive" in table
    assert "Mean length (words)" in table and _one(report["lengths"]["base"]["mean_words"]) in table
    length_table = _section(page, "length-control-table")
    assert "length-controlled" in length_table and "Ends mid-sentence (%)" in length_table

    pairings = _section(page, "pairings-table")
    assert "p (Holm)" in pairings and "Holm" in page and "20 tests" in page  # 10 pairings x 2 criteria

    # Reward models: the pair count, a Wilson interval, and a warning instead of a bare 1.000 on 2 pairs.
    rewards = _section(page, "reward-models-table")
    empathy_row = rewards[rewards.index("<td>empathy</td>"):]
    empathy_row = empathy_row[:empathy_row.index("</tr>")]
    assert "Warning: only 2 held-out pairs" in empathy_row and "[0.342, 1.000]" in empathy_row
    safety_row = rewards[rewards.index("<td>safety</td>"):]
    assert "Warning" not in safety_row[:safety_row.index("</tr>")]

    split = page[page.index('id="scenario-split"'):]
    assert "40 training, 20 test (test set stratified by topic and risk level)" in split[:600]
    assert "high 5" in split[:600] and "none 15" in split[:600]
    assert "95% bootstrap intervals" in page  # the Pareto plot's title says it draws them

