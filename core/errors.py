"""The one application error every app's errors subclass.

An ``ApplicationError`` carries what any caller needs to answer it:

- ``message``: one sentence for the person (a page, a JSON ``detail``, an
  admin message);
- ``field_errors``: per-field messages, ``{field name: message}`` with ``""``
  for the whole form (a form re-rendered with its errors reads these);
- ``errors``: every message to list, in order (the field messages, or lines
  such as a rejected import file's; ``[message]`` when there is nothing more);
- ``status_code``: the HTTP status a view answers with (a class attribute,
  400 unless a subclass says otherwise).

Raising one means nothing was changed. They are rendered in one place each:
pages by ``core.error_handlers.ApplicationErrorMiddleware``, the API by
``core.error_handlers.api_exception_handler`` (``REST_FRAMEWORK
["EXCEPTION_HANDLER"]``), the admin by ``core.error_handlers.admin_error``.

Plain Python, no Django import: modules without a database (annotation's
judge-row matching) raise these too.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping


class ApplicationError(Exception):
    status_code = 400

    def __init__(self, message: str = "", *, field_errors: Mapping[str, str] | None = None,
                 errors: Iterable[str] | None = None, status_code: int | None = None):
        self.field_errors = dict(field_errors or {})
        self.message = message or " ".join(self.field_errors.values())
        self.errors = list(errors) if errors else (list(self.field_errors.values()) or [self.message])
        if status_code is not None:
            self.status_code = status_code
        super().__init__(self.message)


class NotFound(ApplicationError):
    """What the request names does not exist (or is not the caller's to see)."""

    status_code = 404


def error_body(error: ApplicationError) -> dict:
    """The JSON body of an error, the same from the API, the input guard and any view."""
    return {"detail": error.message, "errors": error.errors}
