"""Errors the annotation services raise; each carries the HTTP status a view
answers with, so bad input always gets a clear 4xx and changes nothing."""


class AnnotationError(Exception):
    status_code = 400

    def __init__(self, message: str, *, errors: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.errors = errors or [message]


class InvalidInput(AnnotationError, ValueError):
    """Malformed or incomplete answers, bad study settings, a bad import file."""

    status_code = 400


class NotAssigned(AnnotationError, PermissionError):
    """The item is not in this clinician's queue."""

    status_code = 403


class StudyNotOpen(AnnotationError):
    """The study is a draft or closed: nothing can be answered or undone."""

    status_code = 409


class NothingToUndo(AnnotationError):
    status_code = 409


class InvalidTransition(AnnotationError):
    status_code = 409


class JudgeImportError(InvalidInput):
    """A judge-decision file or row list that cannot be imported; nothing was written."""
