from django.urls import reverse
from django.utils.functional import SimpleLazyObject


def active_study(request):
    """`active_study_url` for the home page's "Take part" button; evaluated only where a template uses it."""

    def url():
        from .selectors import active_study as newest_active

        study = newest_active()
        return reverse("survey:entry", args=[study.slug]) if study else ""

    return {"active_study_url": SimpleLazyObject(url)}
