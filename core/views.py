from django.contrib.auth.decorators import login_required
from django.shortcuts import redirect, render

from . import roles, selectors


def home(request):
    return render(request, "core/home.html")


def support(request):
    """The helplines page behind every participant page's "Need support now?" link."""
    return render(request, "core/support.html", {"regions": selectors.helplines_by_region()})


@login_required
def post_login(request):
    if roles.is_researcher(request.user):
        return redirect("admin:index")
    if roles.is_clinician(request.user):
        return redirect("annotation:queue")
    return render(request, "core/no_role.html", status=403)


def healthz(request):
    from django.db import connection
    from django.http import JsonResponse

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})
