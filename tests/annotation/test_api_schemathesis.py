"""Schemathesis over the OpenAPI schema (/api/schema/), against a live server, as each role.

Every check schemathesis has (all are on by default; server errors, statuses and content types the schema does not list,
response bodies that break the schema, invalid data accepted, valid data refused, ...) runs on
generated requests for every operation, with the path parameters pointing at a real open study so
that bodies reach validation and the services. Each role's run is bounded in time
(``ATTUNE_SCHEMATHESIS_SECONDS``, 15 s by default; the `slow` run gives each role 120 s)."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.middleware.csrf import _get_new_csrf_string, _mask_cipher_secret
from django.test import Client

from core import throttling
from tests.factories import ResearcherFactory

from .factories import make_study

pytestmark = [pytest.mark.django_db(transaction=True)]

ROLES = ["anonymous", "clinician", "researcher"]
SECONDS = int(os.environ.get("ATTUNE_SCHEMATHESIS_SECONDS", "15"))


@pytest.fixture
def unthrottled(monkeypatch):
    """The run sends hundreds of requests a minute; the limits are tested in tests/core/test_throttling.py."""
    rates = {"anon": "100000/min", "user": "100000/min"}
    for throttle in (throttling.AnonRateThrottle, throttling.UserRateThrottle):
        monkeypatch.setattr(throttle, "THROTTLE_RATES", rates)


def session_headers(user) -> list[str]:
    """A signed-in session and a CSRF token, as a browser of that user would send them."""
    if user is None:
        return []
    client = Client()
    client.force_login(user)
    secret = _get_new_csrf_string()
    return ["-H", f"Cookie: sessionid={client.cookies['sessionid'].value}; csrftoken={secret}",
            "-H", f"X-CSRFToken: {_mask_cipher_secret(secret)}"]


def config_file(path: Path, study, *, signed_in: bool) -> Path:
    """Path parameters: mostly the real study's (so bodies are validated and saved), sometimes generated.

    Signed in, the session cookie travels in a header, which schemathesis cannot take away; so it
    does not generate the security cookie itself (the anonymous run covers requests without one).
    A draft may name only dimensions of the item's study, a judgment must choose for every one of them, and
    an imported judge row must name one of the study's items and dimensions. The dimensions are rows of
    each study, which a JSON Schema cannot say: a schema-valid body can rightly be refused there (400,
    documented), so that one check (positive_data_acceptance) is off for those three operations."""
    item = study.items.first()
    assignment = item.assignments.first()
    operations = "\n\n".join(operation_block(*operation) for operation in OPERATIONS)
    path.write_text(f"""
[generation]
with-security-parameters = {"false" if signed_in else "true"}

[dictionaries]
assignment = {{ values = ["{assignment.token}"] }}
study = {{ values = ["{study.token}"] }}
study_id = {{ values = [{study.pk}] }}

{operations}
""")
    return path


# (which operations, the path parameter, the dictionary it is mostly drawn from, positive_data_acceptance on);
# schemathesis gives an operation the first of these that matches it.
OPERATIONS = [
    ('include-name = "POST /rate/api/items/{token}/judgment/"', "token", "assignment", False),
    ('include-name = "PUT /rate/api/items/{token}/draft/"', "token", "assignment", False),
    ('include-path-regex = "^/rate/api/items/"', "token", "assignment", True),
    ('include-path-regex = "^/rate/api/studies/"', "token", "study", True),
    ('include-name = "POST /rate/api/research/studies/{id}/judge-decisions/"', "id", "study_id", False),
    ('include-path-regex = "^/rate/api/research/"', "id", "study_id", True),
]


def operation_block(selector, parameter, dictionary, positive_data_acceptance):
    lines = ["[[operations]]", selector]
    if not positive_data_acceptance:
        lines.append("checks.positive_data_acceptance.enabled = false")
    lines.append(f'parameters = {{ "path.{parameter}" = {{ dictionary = "{dictionary}", probability = 0.9 }} }}')
    return "\n".join(lines)


def schemathesis_run(*, base_url, headers, config, seconds, report_dir):
    args = [
        sys.executable, "-m", "schemathesis.cli", "--no-color", "--config-file", str(config),
        "run", f"{base_url}/api/schema/", "--url", base_url, "--max-time", str(seconds),
        "--phases", "examples,coverage,fuzzing", "--workers", "1", "--seed", "20261202", "--request-timeout", "10",
        "--report", "junit", "--report-dir", str(report_dir), *headers,
    ]
    return subprocess.run(args, capture_output=True, text=True, timeout=seconds + 120, cwd=report_dir.parent,
                          env={**os.environ, "SCHEMATHESIS_HOOKS": ""})


@pytest.mark.parametrize("role", ROLES)
def test_schemathesis_finds_no_failure(role, live_server, unthrottled, tmp_path):
    study = make_study(n_items=3, n_clinicians=1, overlap=1)
    user = {"anonymous": None, "clinician": study.memberships.first().clinician, "researcher": ResearcherFactory()}[role]
    result = schemathesis_run(base_url=live_server.url, headers=session_headers(user),
                              config=config_file(tmp_path / "schemathesis.toml", study, signed_in=user is not None), seconds=SECONDS,
                              report_dir=tmp_path / "report")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
    assert "No issues found" in output or "passed" in output, output[-5000:]


@pytest.mark.slow
@pytest.mark.parametrize("role", ROLES)
def test_schemathesis_longer_run_finds_no_failure(role, live_server, unthrottled, tmp_path):
    study = make_study(n_items=3, n_clinicians=1, overlap=1)
    user = {"anonymous": None, "clinician": study.memberships.first().clinician, "researcher": ResearcherFactory()}[role]
    result = schemathesis_run(base_url=live_server.url, headers=session_headers(user),
                              config=config_file(tmp_path / "schemathesis.toml", study, signed_in=user is not None), seconds=120,
                              report_dir=tmp_path / "report")
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-20000:]
