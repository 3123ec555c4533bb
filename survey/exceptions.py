"""Errors the survey's services raise (core.errors.ApplicationError); views
re-render a form with an InvalidAnswer's field messages, and anything else is
rendered by core.error_handlers."""
from core.errors import ApplicationError


class SurveyError(ApplicationError):
    """Something the caller asked for cannot be done; nothing was changed."""

    status_code = 409


class InvalidAnswer(SurveyError):
    """A submitted answer is malformed or out of range (HTTP 400); nothing was saved.

    Takes a message, or ``{field name: message}`` ("" for the whole form) with
    messages a participant can act on (``field_errors``)."""

    status_code = 400

    def __init__(self, errors):
        super().__init__(field_errors={"": errors} if isinstance(errors, str) else errors)


class StepNotAvailable(SurveyError):
    """The participant cannot answer this step (not reached yet, or no longer taking part)."""


class AlreadyStarted(SurveyError):
    """A Prolific id that already took part came back from a different submission."""


class ProlificExcluded(SurveyError):
    """A Prolific id that was screened out of, or withdrew from, this study came back."""
