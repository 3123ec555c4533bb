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


def bad_request(request, exception=None):
    """400 that Django raises itself (e.g. a multipart body without a boundary): the API's error body under an
    API path, Django's page elsewhere."""
    from django.views.defaults import bad_request as default_bad_request

    from .errors import ApplicationError, error_body
    from .input import wants_json

    if wants_json(request):
        from django.http import JsonResponse

        return JsonResponse(error_body(ApplicationError("The request could not be read (a malformed body?); "
                                                        "nothing was saved.")), status=400)
    return default_bad_request(request, exception)


def not_found(request, exception=None):
    """404 for a URL that matches nothing: the API's error body under an API path (the schema
    documents application/json there), Django's page elsewhere."""
    from django.views.defaults import page_not_found

    from .errors import NotFound, error_body
    from .input import wants_json

    if wants_json(request):
        from django.http import JsonResponse

        return JsonResponse(error_body(NotFound("There is nothing at this address.")), status=404)
    return page_not_found(request, exception)
