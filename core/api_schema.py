"""What the OpenAPI schema says about errors: every API error has one body (``core.errors.error_body``:
``detail`` and ``errors``), and each operation lists the statuses it can answer with.

Unauthenticated requests get 403, not 401: the API uses session authentication, which has no
``WWW-Authenticate`` scheme to offer, so DRF answers 403 and the schema says so."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers


class ErrorSerializer(serializers.Serializer):
    detail = serializers.CharField(help_text="What went wrong, for a person.")
    errors = serializers.ListField(child=serializers.CharField(), help_text="One message per problem (may be empty).")


ERROR_DESCRIPTIONS = {
    400: "Malformed input (a field's message in `errors`), or a control character anywhere in the request.",
    403: "Not signed in (session authentication: no WWW-Authenticate scheme, so 403 rather than 401), "
         "missing CSRF token, or not allowed for this role.",
    404: "No such object, or not one of yours.",
    409: "Not possible in the object's current state (e.g. the study is not open, nothing to undo).",
    415: "The body is not application/json.",
    429: "Too many requests; `Retry-After` says when to try again.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    return {code: OpenApiResponse(ErrorSerializer, description=ERROR_DESCRIPTIONS[code]) for code in codes}


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean and nothing else: DRF's own also takes 0, 1, "yes", "off"... which the schema does not say."""

    def to_internal_value(self, data):
        if data is True or data is False:
            return data
        self.fail("invalid", input=data)


class JsonOnlyMixin:
    """Refuse a request body that is not JSON with 415, before anything reads it.

    DRF alone does not always: when a middleware (the input guard) has already read a form body,
    DRF hands the view empty data instead of refusing the type."""

    def initial(self, request, *args, **kwargs):
        from rest_framework.exceptions import UnsupportedMediaType

        super().initial(request, *args, **kwargs)
        has_body = request.method in ("POST", "PUT", "PATCH") and int(request.META.get("CONTENT_LENGTH") or 0) > 0
        media_type = (request.content_type or "").split(";")[0].strip().lower()
        if has_body and media_type != "application/json" and not media_type.endswith("+json"):
            raise UnsupportedMediaType(media_type or "none")
