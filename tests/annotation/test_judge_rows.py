"""The judge-row matching on plain inputs, without a database."""
from annotation.judge_rows import ItemRef, judge_rows_match

ITEMS = [ItemRef(pk=7, token="tok7", scenario_id=70, external_id="ext-a", response_a="Reply from A.", response_b="Reply from B.")]
NAMES = {"model-a": "source_a", "model-b": "source_b"}


def test_a_pipeline_row_with_the_sources_swapped_is_stored_in_source_terms():
    rows = [{"scenario_id": "s70", "criterion": "empathy", "model_a": "model-b", "model_b": "model-a", "majority": "a",
             "response_a": "Reply from B.", "response_b": "Reply from A."}]
    match = judge_rows_match(rows, items=ITEMS, dimensions=["empathy"], names=NAMES, skip_unmatched=False)
    assert match.errors == [] and match.decided == {(7, "empathy"): "b"}


def test_rows_for_other_pairs_or_without_a_decision_are_counted_and_bad_rows_are_errors():
    rows = [{"scenario_id": "ext-a", "criterion": "empathy", "model_a": "x", "model_b": "model-a", "majority": "a"},
            {"scenario_id": "ext-a", "criterion": "empathy", "model_a": "model-a", "model_b": "model-b", "majority": "none"},
            {"item": "tok7", "criterion": "safety", "choice": "source_a"},
            {"scenario_id": "s99", "criterion": "empathy", "choice": "tie"}]
    match = judge_rows_match(rows, items=ITEMS, dimensions=["empathy"], names=NAMES, skip_unmatched=False)
    assert (match.skipped_other_pairs, match.skipped_no_decision) == (1, 1)
    assert match.decided == {}
    assert [e.split(":")[0] for e in match.errors] == ["line 3", "line 4"]
    assert "unknown dimension 'safety'" in match.errors[0] and "not in this study" in match.errors[1]
