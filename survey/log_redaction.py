"""Participant tokens never reach the application log.

A participant's pages are addressed by their token (/study/r/<token>/...), and
Django logs the path of every 4xx/5xx response ("Bad Request: /study/r/...").
The filter rewrites such records so the token is replaced before any handler
sees them; after a withdrawal no log line can name the person's link. (A web
server's own access log is outside the application: see README.)"""
import logging
import re

PARTICIPANT_PATH = re.compile(r"(/study/r/)[^/\s?#\"']+")
REDACTED = r"\1<participant>"
# Loggers that write request paths.
REQUEST_LOGGERS = ("django.request", "django.server", "django.security.csrf", "django.security.DisallowedHost")


def redact(text: str) -> str:
    return PARTICIPANT_PATH.sub(REDACTED, text)


class ParticipantPathFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record is left for logging to report
            return True
        if "/study/r/" in message:
            record.msg, record.args = redact(message), ()
        return True


def install() -> None:
    for name in REQUEST_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ParticipantPathFilter) for f in logger.filters):
            logger.addFilter(ParticipantPathFilter())
