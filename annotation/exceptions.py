"""Errors the annotation services raise (core.errors.ApplicationError); each
carries the HTTP status a view answers with, so bad input always gets a clear
4xx and changes nothing. core.error_handlers renders them."""
from core.errors import ApplicationError, NotFound


class AnnotationError(ApplicationError):
    status_code = 400


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


class AssignmentNotFound(AnnotationError, NotFound):
    """No item of this clinician's behind the URL's token."""

    status_code = 404

    def __init__(self, message: str = "There is no such item.", **kwargs):
        super().__init__(message, **kwargs)
