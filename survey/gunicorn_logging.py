"""Gunicorn's access log without participant tokens (entrypoint: --logger-class).

The access log writes every request line, path and referrer; a participant's
pages carry their token in the path (/study/r/<token>/), so each atom is
redacted the same way as the application log (survey.log_redaction)."""
from gunicorn.glogging import Logger

from .log_redaction import redact


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        return {key: redact(value) if isinstance(value, str) else value for key, value in atoms.items()}
