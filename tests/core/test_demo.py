"""`make demo` (scripts/demo.py) brings the platform up, prints URLs that answer,
keeps data across runs and stops cleanly on Ctrl-C."""
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_demo_until_urls(env, timeout=120, args=()):
    process = subprocess.Popen(
        [sys.executable, "scripts/demo.py", *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )
    lines, urls = [], {}
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = process.stdout.readline()
        if not line:
            break
        lines.append(line)
        match = re.match(r"\s+(Participant survey|Clinician sign-in|Researcher admin):\s+(\S+)", line)
        if match:
            urls[match.group(1)] = match.group(2)
        if len(urls) == 3:
            return process, urls, lines
    process.kill()
    pytest.fail("demo did not print its URLs:\n" + "".join(lines[-60:]))


def stop(process):
    os.killpg(process.pid, signal.SIGINT)
    output = process.communicate(timeout=60)[0]
    return output


@pytest.mark.worker
def test_demo_runs_answers_and_restarts_without_loss(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "CELERY_BROKER_URL", "REDIS_URL", "CELERY_RESULT_BACKEND")}
    env.update(ATTUNE_VAR_DIR=str(tmp_path / "var"), ATTUNE_PORT=str(free_port()), DJANGO_SETTINGS_MODULE="config.settings.local")
    env.pop("VERBOSE", None)
    env.pop("LOG_LEVEL", None)
    process, urls, lines = run_demo_until_urls(env)
    try:
        for name, url in urls.items():
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200, name
        text = "".join(lines)
        passwords = re.findall(r"^\s+(researcher|clinician\d)\s+(\S+)$", text, flags=re.M)
        assert [name for name, _ in passwords] == ["researcher", "clinician1", "clinician2", "clinician3"]
        # The passwords can be found again: a file only the user can read, named in the output.
        saved = tmp_path / "var" / "demo-passwords.txt"
        assert f"Demo passwords:      {saved}" in text
        assert saved.stat().st_mode & 0o777 == 0o600
        assert [tuple(line.split()) for line in saved.read_text().splitlines()] == passwords
    finally:
        output = stop(process)
    assert process.returncode == 0, output
    assert "Stopping" in output
    # Quiet by default: no request lines, no INFO lines, no scenario-bank report.
    everything = text + output
    assert '"GET ' not in everything and " INFO " not in everything and "Scenario bank" not in everything
    assert len(everything.splitlines()) < 40, everything

    # Second run, verbose: same database, nothing recreated, passwords not printed again, requests logged.
    process, urls, lines = run_demo_until_urls(env, args=["--verbose"])
    try:
        with urllib.request.urlopen(urls["Participant survey"], timeout=10):
            pass
        time.sleep(1.5)  # the server logs a request after sending it
        text = "".join(lines)
        assert f"their passwords are in {saved}" in text
        assert "imported 0" in text and "Demo accounts (new passwords)" not in text
    finally:
        output = stop(process)
    assert process.returncode == 0
    assert '"GET /study/demo/ HTTP/1.1" 200' in output
