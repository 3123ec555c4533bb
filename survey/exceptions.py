"""Errors the survey's services raise; views turn them into clear pages."""


class SurveyError(Exception):
    """Something the caller asked for cannot be done; nothing was changed."""


class InvalidAnswer(SurveyError):
    """A submitted answer is malformed or out of range (HTTP 400); nothing was saved.

    ``errors`` maps a field name ("" for the whole form) to a message a
    participant can act on."""

    def __init__(self, errors):
        if isinstance(errors, str):
            errors = {"": errors}
        self.errors = dict(errors)
        super().__init__(" ".join(self.errors.values()))


class StepNotAvailable(SurveyError):
    """The participant cannot answer this step (not reached yet, or no longer taking part)."""


class AlreadyStarted(SurveyError):
    """A Prolific id that already took part came back from a different submission."""


class ProlificExcluded(SurveyError):
    """A Prolific id that was screened out of, or withdrew from, this study came back."""
