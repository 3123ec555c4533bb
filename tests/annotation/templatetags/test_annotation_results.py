"""annotation.templatetags.annotation_results: statistics with their intervals, and undefined ones
shown as undefined with the reason, never as a number."""
from annotation.templatetags.annotation_results import stat, stat_pct


def test_a_statistic_with_its_interval():
    value = {"value": 0.41234, "ci": [0.30111, 0.52049]}
    assert stat(value) == "0.412 [0.301, 0.520]"
    assert stat(value, 1) == "0.4 [0.3, 0.5]"
    assert stat_pct(value) == "41.2% [30.1, 52.0]"
    assert stat({"value": 0.5}) == "0.500" and stat_pct({"value": 0.5}) == "50.0%"


def test_undefined_and_missing_statistics():
    undefined = stat({"value": None, "undefined": "all ties"})
    assert 'class="undefined"' in undefined and 'title="all ties"' in undefined
    assert "not defined for these data" in stat_pct({"value": None})
    assert stat(None) == "—" and stat_pct("x") == "—"
