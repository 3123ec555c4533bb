"""The admin index's list of survey studies, each linking its researcher dashboard."""
from django import template

from core.roles import is_researcher

from ..models import Study

register = template.Library()


@register.simple_tag(takes_context=True)
def survey_dashboards(context):
    request = context.get("request")
    if request is None or not is_researcher(request.user):
        return []
    return list(Study.objects.order_by("title").only("slug", "title", "is_active"))
