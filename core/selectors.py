"""Reads of the shared vocabulary."""
from itertools import groupby

from .models import CriteriaSet, Criterion, Helpline


def helplines_by_region():
    """[(region, [helpline, ...]), ...] for the active helplines."""
    helplines = Helpline.objects.filter(active=True).order_by("region", "order", "name")
    return [(region, list(items)) for region, items in groupby(helplines, key=lambda h: h.region)]


def therapeutic_criteria():
    return list(Criterion.objects.filter(is_therapeutic=True).order_by("position"))


def criteria_set_get(*, key: str) -> CriteriaSet:
    return CriteriaSet.objects.prefetch_related("members__criterion").get(key=key)
