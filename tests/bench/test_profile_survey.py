"""bench/profile_survey.py runs end to end on a private PostgreSQL cluster: the profiled walk with the
database's statements (pg_stat_statements), and the plain walk's CPU per request and step."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "bench" / "profile_survey.py"


def run(*args) -> str:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--participants", "2", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.skipif(not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) and subprocess.run(
    ["which", "pg_config"], capture_output=True).returncode != 0, reason="no PostgreSQL binaries for a private cluster")
def test_the_profile_and_the_plain_walk_print_their_figures():
    profiled = run("--database", "--top", "3")
    assert re.search(r"2 participants, \d+ requests", profiled)
    assert "POST scenario-1" in profiled and "ORM: building and compiling queries" in profiled
    statements = re.search(r"database: its processes' CPU ([\d.]+) ms/request; (\d+) statements per participant, "
                           r"execution ([\d.]+) ms \+ planning ([\d.]+) ms", profiled)
    assert statements and int(statements.group(2)) > 20  # a survey is dozens of statements
    assert "survey_participant" in profiled  # the statements themselves are listed
    plain = run("--plain")
    figures = re.search(r"this process's CPU \(no profiler, no query capture\): ([\d.]+) ms per request, ([\d.]+) ms per survey", plain)
    assert figures and 0 < float(figures.group(1)) < 1000
    assert re.search(r"GET scenario-1\s+[\d.]+", plain) and "ORM" not in plain  # no profile in the plain walk
