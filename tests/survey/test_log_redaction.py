"""Participant tokens are redacted from the application log and gunicorn's access log."""
import datetime
import logging
from pathlib import Path

from survey.log_redaction import ParticipantPathFilter, redact

TOKEN = "tok-4Ls9_x2QmZ"


def test_redact_replaces_the_token_in_participant_paths_only():
    assert redact(f"Bad Request: /study/r/{TOKEN}/background/") == "Bad Request: /study/r/<participant>/background/"
    assert redact(f'"GET /study/r/{TOKEN}/?support=1 HTTP/1.1" 200') == '"GET /study/r/<participant>/?support=1 HTTP/1.1" 200'
    assert redact("/study/manage/demo/ and /study/withdraw/") == "/study/manage/demo/ and /study/withdraw/"


def test_django_request_records_are_rewritten_before_any_handler(client, db, caplog):
    assert any(isinstance(f, ParticipantPathFilter) for f in logging.getLogger("django.request").filters)
    caplog.set_level(logging.INFO)
    assert client.get(f"/study/r/{TOKEN}/consent/").status_code == 404
    messages = [record.getMessage() for record in caplog.records if record.name == "django.request"]
    assert messages and all(TOKEN not in m for m in messages)
    assert any("/study/r/<participant>/consent/" in m for m in messages)


def test_gunicorn_access_log_atoms_are_redacted():
    from gunicorn.config import Config

    from survey.gunicorn_logging import RedactingLogger

    class Response:
        status, sent, headers = "200 OK", 10, []

    environ = {"REQUEST_METHOD": "GET", "RAW_URI": f"/study/r/{TOKEN}/", "SERVER_PROTOCOL": "HTTP/1.1",
               "PATH_INFO": f"/study/r/{TOKEN}/", "QUERY_STRING": "", "HTTP_REFERER": f"https://x/study/r/{TOKEN}/consent/",
               "REMOTE_ADDR": "10.0.0.1"}
    atoms = RedactingLogger(Config()).atoms(Response(), [], environ, datetime.timedelta(seconds=0.1))
    assert all(TOKEN not in str(value) for value in atoms.values())
    assert atoms["U"] == "/study/r/<participant>/"
    entrypoint = (Path(__file__).resolve().parents[2] / "platform" / "entrypoint.sh").read_text()
    assert "--logger-class survey.gunicorn_logging.RedactingLogger" in entrypoint
