"""Where an ``ApplicationError`` (core.errors) becomes a response: pages, the
API and the admin each have one renderer here, so no view catches errors only
to format them.

A page's error uses its app's ``<app>/error.html`` (the clinician pages keep
their queue link, participant pages their "Need support now?" link), found by
the URL's app namespace, with ``core/error.html`` for the rest. A request that
wants JSON gets ``core.errors.error_body``. The input guard (core/input.py)
uses the same JSON body; its HTML page is rendered without the request's
context on purpose (context processors must not read the refused input).
"""
from __future__ import annotations

from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import render
from rest_framework.response import Response
from rest_framework.views import exception_handler

from .errors import ApplicationError, error_body

ERROR_TEMPLATES = {"survey": "survey/error.html", "annotation": "annotation/error.html"}
DEFAULT_ERROR_TEMPLATE = "core/error.html"


def error_page(request, error: ApplicationError):
    from .input import wants_json

    if wants_json(request):
        return JsonResponse(error_body(error), status=error.status_code)
    match = getattr(request, "resolver_match", None)
    template = ERROR_TEMPLATES.get(match.app_name if match else "", DEFAULT_ERROR_TEMPLATE)
    return render(request, template, {"message": error.message, "errors": error.errors}, status=error.status_code)


class ApplicationErrorMiddleware:
    """Renders an ApplicationError a view raised (``error_page``)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        return self.get_response(request)

    def process_exception(self, request, exception):
        if isinstance(exception, ApplicationError):
            return error_page(request, exception)
        return None


def api_exception_handler(exc, context):
    """DRF's handler, with ApplicationError answered as ``error_body`` and its status."""
    if isinstance(exc, ApplicationError):
        return Response(error_body(exc), status=exc.status_code)
    response = exception_handler(exc, context)
    if response is not None and isinstance(response.data, dict) and set(response.data) == {"detail"}:
        # DRF's own errors (403, 404, 405, 415, 429) in the same body as ours.
        response.data = {"detail": str(response.data["detail"]), "errors": []}
    return response


def admin_error(model_admin, request, error: ApplicationError, *, prefix: str = "") -> None:
    """Show an error in the admin as a message, e.g. after an action refused one object."""
    model_admin.message_user(request, f"{prefix}{error.message}", messages.ERROR)
