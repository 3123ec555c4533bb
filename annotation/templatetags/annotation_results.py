"""Formatting for the results fragment: undefined statistics stay visibly undefined."""
from django import template
from django.utils.html import format_html

register = template.Library()


def _undefined(reason):
    return format_html('<span class="undefined" title="{}">undefined</span>', reason or "not defined for these data")


def _statistic(value, *, scale: float, digits: int, unit: str = ""):
    if not isinstance(value, dict):
        return "—"
    if value.get("value") is None:
        return _undefined(value.get("undefined"))
    text = f"{scale * value['value']:.{digits}f}{unit}"
    if value.get("ci"):
        low, high = value["ci"]
        text += f" [{scale * low:.{digits}f}, {scale * high:.{digits}f}]"
    return text


@register.filter
def stat(value, digits=3):
    """A statistic dict {value, ci, undefined} as '0.412 [0.301, 0.520]'."""
    return _statistic(value, scale=1, digits=int(digits))


@register.filter
def stat_pct(value):
    """A proportion statistic (0-1) as a percentage with its CI."""
    return _statistic(value, scale=100, digits=1, unit="%")


@register.simple_tag
def pct(value, ci=None):
    """A percentage (0-100) with an optional [low, high] interval."""
    if value is None:
        return "—"
    text = f"{value:.1f}%"
    if ci:
        text += f" [{ci[0]:.1f}, {ci[1]:.1f}]"
    return text


@register.filter
def pvalue(value):
    if value is None:
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"
