"""The exceptions a stage raises to end its job other than by failing."""


class JobCancelled(Exception):
    """Raised inside a stage when a researcher cancelled the job (or its lease was lost)."""


class JobRefused(Exception):
    """A job that must not run (e.g. its dataset was affected by a withdrawal)."""
