"""survey.charts: the dashboard's interval bar charts draw one bar per criterion with a value, label
the axis with the sample size, and say so when there is nothing to draw."""
from survey import charts


def report(**overrides):
    rows = [
        {"name": "Empathy", "mean": 4.2, "mean_low": 3.9, "mean_high": 4.5, "pl": 0.3, "pl_low": 0.25, "pl_high": 0.36},
        {"name": "Safety", "mean": 3.1, "mean_low": 2.7, "mean_high": 3.4, "pl": None, "pl_low": None, "pl_high": None},
    ]
    return {"rows": rows, "n": 12, "n_rankings": 9, **overrides}


def test_interval_bars_name_each_criterion_with_a_value_and_the_sample_size():
    importance = charts.importance_svg(report())
    assert "Empathy" in importance and "Safety" in importance and "n = 12" in importance
    weights = charts.plackett_luce_svg(report())
    assert "Empathy" in weights and "Safety" not in weights and "n = 9" in weights  # Safety has no weight yet


def test_nothing_to_draw_is_said():
    empty = report(rows=[{"name": "Empathy", "mean": None, "mean_low": None, "mean_high": None,
                          "pl": None, "pl_low": None, "pl_high": None}])
    assert "No completed participants yet." in charts.importance_svg(empty)
    assert "No complete criteria rankings yet." in charts.plackett_luce_svg(empty)
