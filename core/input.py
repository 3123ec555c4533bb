"""The one place where malformed request input is refused, for the whole site.

`InputGuardMiddleware` (early in settings.MIDDLEWARE) answers 400 with a clear
message — an HTML page, or JSON under an ``/api/`` path or for a JSON request —
before any view, form or query sees:

- a control character in the URL path (``%00`` included), a query parameter
  (name or value), a header, a cookie, a form field (name or value), an
  uploaded file's name, or any string (key or value, at any depth) of a JSON
  body. "Control character" means Unicode category Cc except tab, newline and
  carriage return: C0 (U+0000–U+001F), DEL (U+007F) and C1 (U+0080–U+009F)
  (in raw headers, which arrive Latin-1-decoded, C0 and DEL only).
  None of them belongs in anything a person types, PostgreSQL refuses NUL in
  text, and C1/DEL are invisible in most fonts;
- a field that takes one value but arrives several times (``a=1&a=2``): a
  view names the fields that may repeat (checkbox groups, multi-selects) with
  `@accepts_repeated(...)`; every other field must come once. A JSON object
  with a repeated key is refused the same way. On Django's admin add and
  change pages the guard reads the page's form and inline formsets: fields
  with a multi-value widget may repeat, no other. The admin's list, delete and
  history pages are left to Django (action checkboxes, list filters); every
  other admin page, the sign-in included, is checked.
"""
from __future__ import annotations

import json
import re

from django.conf import settings
from django.forms import MultipleHiddenInput
from django.http import HttpResponse, JsonResponse
from django.template.loader import render_to_string

from .errors import ApplicationError, error_body

CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
# Raw header values reach Django decoded as Latin-1, so UTF-8 text in a header
# shows up as U+0080–U+00BF: only C0 (tab allowed) and DEL are refused there.
HEADER_CONTROL_CHARACTERS = re.compile("[\x00-\x08\x0a-\x1f\x7f]")
REPEATABLE_ATTRIBUTE = "repeatable_fields"
# Views that need no declaration: Django's own sign-in forms are checked too.
ADMIN_CHECKED_URL_NAMES = {"login", "logout", "password_change"}


class BadInput(ApplicationError):
    """Input refused before it reaches a view; always a 400."""

    status_code = 400

    def __init__(self, message: str, *, where: str = ""):
        self.where = where
        super().__init__(message)


def accepts_repeated(*names: str):
    """Declare the fields of a view (or DRF view class) that may carry several
    values; every other field must arrive at most once."""

    def decorate(view):
        setattr(view, REPEATABLE_ATTRIBUTE, frozenset(names))
        return view

    return decorate


def has_control_character(text: str) -> bool:
    return bool(CONTROL_CHARACTERS.search(text))


def _where(kind: str, name: str) -> str:
    return f"{kind} {name!r}" if name else kind


def _check_text(text: str, kind: str, name: str = ""):
    if CONTROL_CHARACTERS.search(text):
        raise BadInput(
            f"The {_where(kind, name)} contains a control character (such as a NUL byte), which this site does not accept. "
            "Please remove it and try again; nothing was saved.",
            where=name or kind,
        )


def _check_json(value, path: str = "$"):
    if isinstance(value, str):
        _check_text(value, "JSON value", path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _check_json(item, f"{path}[{index}]")
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key, "JSON key", f"{path}.{key!r}")
            _check_json(item, f"{path}.{key}")


def _refuse_repeated_keys(pairs):
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise BadInput(f"The JSON field {key!r} appears more than once; send it once. Nothing was saved.", where=key)
        seen[key] = value
    return seen


def _is_json(request) -> bool:
    content_type = request.content_type or ""
    return content_type == "application/json" or content_type.endswith("+json")


def _is_form(request) -> bool:
    return request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data")


def check_request(request):
    """Raise BadInput if anything in the request carries a control character
    (or a JSON body repeats a key)."""
    _check_text(request.path, "address")
    for name, values in request.GET.lists():
        _check_text(name, "query parameter name")
        for value in values:
            _check_text(value, "query parameter", name)
    for key, value in request.META.items():
        if key.startswith("HTTP_") and isinstance(value, str) and HEADER_CONTROL_CHARACTERS.search(value):
            raise BadInput("A request header contains a control character, which this site does not accept.", where=key)
    for name, value in request.COOKIES.items():
        _check_text(name, "cookie name")
        _check_text(value, "cookie", name)
    if request.method in ("POST", "PUT", "PATCH", "DELETE"):
        if _is_form(request):
            for name, values in request.POST.lists():
                _check_text(name, "form field name")
                for value in values:
                    _check_text(value, "form field", name)
            for name, upload in request.FILES.items():
                _check_text(upload.name or "", "uploaded file name", name)
        elif _is_json(request) and request.body:
            try:
                data = json.loads(request.body, object_pairs_hook=_refuse_repeated_keys)
            except (ValueError, UnicodeDecodeError):
                return  # not JSON: the view's parser answers that with its own 400
            _check_json(data)


def _takes_several_values(field) -> bool:
    return bool(getattr(field.widget, "allow_multiple_selected", False)) or isinstance(field.widget, MultipleHiddenInput)


def admin_form_repeatable(request, model_admin) -> tuple[frozenset, list] | None:
    """The fields of an admin add/change page that may repeat: those whose widget
    takes several values, in the page's form and in its inline formsets (as
    ``<prefix>-<n>-<name>``). None when the forms cannot be built for this request
    (the admin itself then answers, e.g. with its sign-in page)."""
    try:
        names = {name for name, field in model_admin.get_form(request).base_fields.items() if _takes_several_values(field)}
        patterns = []
        for inline in model_admin.get_inline_instances(request):
            formset = inline.get_formset(request)
            inline_names = [name for name, field in formset.form.base_fields.items() if _takes_several_values(field)]
            if inline_names:
                prefix = re.escape(formset.get_default_prefix())
                patterns.append(re.compile(rf"{prefix}-\d+-({'|'.join(map(re.escape, inline_names))})"))
    except Exception:  # noqa: BLE001 - permissions or a missing object: the view itself decides
        return None
    return frozenset(names), patterns


def check_repeated_fields(request, view_func):
    """Raise BadInput if a field the view takes once arrives several times."""
    match = request.resolver_match
    allowed = getattr(view_func, REPEATABLE_ATTRIBUTE, None)
    if allowed is None:
        allowed = getattr(getattr(view_func, "cls", None), REPEATABLE_ATTRIBUTE, None)
    patterns = []
    if allowed is None and match is not None and match.namespace == "admin" and match.url_name not in ADMIN_CHECKED_URL_NAMES:
        model_admin = getattr(view_func, "model_admin", None)
        if model_admin is None or not match.url_name.endswith(("_add", "_change")):
            return  # Django's list, delete and history pages (action checkboxes, list filters)
        declared = admin_form_repeatable(request, model_admin)
        if declared is None:
            return
        allowed, patterns = declared
    allowed = allowed or frozenset()
    sources = [("query parameter", request.GET)]
    if request.method == "POST" and _is_form(request):
        sources.append(("form field", request.POST))
    for kind, data in sources:
        for name, values in data.lists():
            if len(values) > 1 and name not in allowed and not any(p.fullmatch(name) for p in patterns):
                raise BadInput(
                    f"The {kind} {name!r} was sent {len(values)} times but takes one value. "
                    "Please submit the form once, as shown; nothing was saved.",
                    where=name,
                )


def wants_json(request) -> bool:
    return "/api/" in request.path or _is_json(request) or request.headers.get("Accept", "").startswith("application/json")


def bad_input_response(request, error: BadInput) -> HttpResponse:
    """The guard's 400: the JSON body every error has (core.errors.error_body), or a page
    rendered without the request's context, unlike core.error_handlers.error_page: this
    input was refused, and context processors must not see (or query with) it."""
    if wants_json(request):
        return JsonResponse(error_body(error), status=error.status_code)
    # No request context: context processors must not see (or query with) the refused input.
    participant_page = request.path.startswith("/study/") and not request.path.startswith("/study/manage/")
    html = render_to_string("core/bad_request.html", {
        "message": error.message, "study_name": settings.ATTUNE_STUDY_NAME,
        # Participant pages keep their "Need support now?" link, error pages included.
        "base_template": "participant_base.html" if participant_page else "base.html",
    })
    return HttpResponse(html, status=error.status_code)


class InputGuardMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        try:
            check_request(request)
        except BadInput as error:
            return bad_input_response(request, error)
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        try:
            check_repeated_fields(request, view_func)
        except BadInput as error:
            return bad_input_response(request, error)
        return None
