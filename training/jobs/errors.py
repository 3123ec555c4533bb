"""The exceptions a stage raises to end its job other than by failing."""
from core.errors import ApplicationError


class JobCancelled(Exception):
    """Raised inside a stage when a researcher cancelled the job (or its lease was lost).
    A signal to stop, not an error for anyone to read: hence not an ApplicationError."""


class JobRefused(ApplicationError):
    """A job that must not run (e.g. its dataset was affected by a withdrawal); its message is the job's error."""

    status_code = 409
