"""Results of a study computed from the database (annotation.selectors.results): the selector others
render."""
import pytest

from annotation import selectors, services
from tests.factories import ResearcherFactory

pytestmark = pytest.mark.django_db


def test_results_win_loss_tie_and_agreement(worked_study):
    study, items, clinicians = worked_study
    results = selectors.rating_study_results(study, n_boot=50, pair_boot=20, use_cache=False)
    by_key = {d["key"]: d for d in results["dimensions"]}
    assert list(by_key) == ["empathy", "overall"]
    overall = by_key["overall"]["by_judgment"]
    assert (overall["wins"], overall["losses"], overall["ties"], overall["n"]) == (5, 5, 2, 12)
    assert overall["win_pct"] == pytest.approx(100 * 5 / 12)
    majority = by_key["overall"]["by_item_majority"]
    assert (majority["wins"], majority["losses"], majority["ties"], majority["no_majority"]) == (2, 1, 0, 1)
    assert by_key["overall"]["agreement"]["percent_agreement"]["value"] == pytest.approx(5 / 12)
    # Everyone chose source A on empathy: 100% agreement, kappa and alpha undefined (no variation).
    empathy = by_key["empathy"]
    assert empathy["by_judgment"]["win_pct"] == 100.0
    assert empathy["by_judgment"]["sign_test_p"] == pytest.approx(2 / 2 ** 12)
    assert empathy["agreement"]["percent_agreement"]["value"] == 1.0
    for key in ("fleiss_kappa", "krippendorff_alpha"):
        assert empathy["agreement"][key]["value"] is None and empathy["agreement"][key]["undefined"]
    assert all(p["cohen_kappa"]["value"] is None for p in empathy["agreement"]["cohen_pairs"])
    assert len(by_key["overall"]["agreement"]["cohen_pairs"]) == 3
    assert results["unsafe"] == {"judgments": 12, "source_a": 0, "source_b": 5, "both": 0, "items_flagged": 3}
    assert results["study"]["complete_items"] == 4
    assert [p["done"] for p in results["progress"]] == [4, 4, 4]
    # Position bias counts screen sides: every empathy choice was source A, wherever it was shown.
    assert sum(p["n"] for p in results["position_bias"]) == 24
    for row in results["position_bias"]:
        assert row["left"] + row["right"] + row["ties"] == row["n"]


def test_judge_agreement_reproduces_the_worked_example(worked_study):
    study, items, clinicians = worked_study
    services.judge_decisions_import(
        study=study, judge_name="llm", actor=ResearcherFactory(),
        rows=[{"item": item.token, "criterion": "overall", "choice": choice}
              for item, choice in zip(items, ["source_a", "source_b", "tie", "source_b"])],
    )
    results = selectors.rating_study_results(study, n_boot=0, pair_boot=0)
    judge = next(d for d in results["dimensions"] if d["key"] == "overall")["judges"][0]
    assert judge["judge"] == "llm"
    assert judge["vs_clinicians"]["value"] == pytest.approx(0.5)
    assert judge["vs_majority"]["value"] == pytest.approx(2 / 3)
    assert judge["clinician_pairwise"]["value"] == pytest.approx(5 / 12)
    assert [p["agree"] for p in judge["per_clinician"]] == [2, 3, 1]
    empathy_judges = next(d for d in results["dimensions"] if d["key"] == "empathy")["judges"]
    assert empathy_judges[0]["n_items"] == 0 and empathy_judges[0]["vs_clinicians"]["value"] is None


def test_results_cache_follows_changes(worked_study):
    study, items, clinicians = worked_study
    first = selectors.rating_study_results(study, n_boot=0, pair_boot=0)
    services.judgment_undo(study=study, clinician=clinicians[0])
    second = selectors.rating_study_results(study, n_boot=0, pair_boot=0)
    assert second["study"]["judgments"] == first["study"]["judgments"] - 1


def test_chart_is_svg(worked_study):
    study, _, _ = worked_study
    results = selectors.rating_study_results(study, n_boot=0, pair_boot=0, chart=True, use_cache=False)
    assert results["chart_svg"].startswith("<svg") and "Overall preference" in results["chart_svg"]
