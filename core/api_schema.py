"""What the OpenAPI schema says about errors: every API error has one body (``core.errors.error_body``:
``detail`` and ``errors``), and each operation lists the statuses it can answer with.

Unauthenticated requests get 403, not 401: the API uses session authentication, which has no
``WWW-Authenticate`` scheme to offer, so DRF answers 403 and the schema says so."""
from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

# What the input guard (core/input.py, CONTROL_CHARACTERS) refuses anywhere in a request: Unicode Cc
# except tab, newline and carriage return. As a JSON Schema pattern (ECMA-262 escapes).
NO_CONTROL_CHARACTERS = "^[^\\u0000-\\u0008\\u000B\\u000C\\u000E-\\u001F\\u007F-\\u009F]*$"
GUARDED_JSON = "GuardedJSON"


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


def _guard(node, components: dict, seen: set) -> None:
    """Add the input guard's rule to one schema and everything under it, in place."""
    if not isinstance(node, dict):
        return
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        if name not in seen and name in components:
            seen.add(name)
            _guard(components[name], components, seen)
        return
    types = node.get("type")
    types = types if isinstance(types, list) else [types]
    if "string" in types and "enum" not in node and "pattern" not in node:
        node["pattern"] = NO_CONTROL_CHARACTERS
    if "object" in types:
        node.setdefault("propertyNames", {"pattern": NO_CONTROL_CHARACTERS})
        # A field the serializer does not declare is ignored, but the guard still reads it: say so, or the
        # schema would allow an extra field whose value holds a control character (a nested key, say).
        node.setdefault("additionalProperties", {"$ref": f"#/components/schemas/{GUARDED_JSON}"})
    for child in (node.get("properties") or {}).values():
        _guard(child, components, seen)
    for key in ("items", "additionalProperties"):
        child = node.get(key)
        if child == {} or child is True:  # any JSON value: any, with no control character in a string or key
            node[key] = {"$ref": f"#/components/schemas/{GUARDED_JSON}"}
        else:
            _guard(child, components, seen)
    for key in ("allOf", "anyOf", "oneOf"):
        for child in node.get(key) or []:
            _guard(child, components, seen)


def guard_request_schemas(result, generator, request, public):
    """drf-spectacular postprocessing hook: request schemas say what the input guard enforces, so a
    request the schema allows is one the server takes (no control character in any string, object key
    or path parameter; core/input.py)."""
    components = result.setdefault("components", {}).setdefault("schemas", {})
    components[GUARDED_JSON] = {
        "description": "Any JSON value whose strings and object keys hold no control character.",
        "anyOf": [
            {"type": "string", "pattern": NO_CONTROL_CHARACTERS},
            {"type": "number"},
            {"type": "boolean"},
            {"type": "null"},
            {"type": "array", "items": {"$ref": f"#/components/schemas/{GUARDED_JSON}"}},
            {"type": "object", "propertyNames": {"pattern": NO_CONTROL_CHARACTERS},
             "additionalProperties": {"$ref": f"#/components/schemas/{GUARDED_JSON}"}},
        ],
    }
    seen = {GUARDED_JSON}
    for operations in result.get("paths", {}).values():
        for operation in operations.values():
            for parameter in operation.get("parameters", []):
                _guard(parameter.get("schema"), components, seen)
            for content in (operation.get("requestBody") or {}).get("content", {}).values():
                _guard(content.get("schema"), components, seen)
    return result
