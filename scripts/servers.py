"""Helpers for the scripts and benches that start the platform's own servers (scripts/demo.py, bench/load_survey.py)."""
from __future__ import annotations

import time
import urllib.request


def wait_until_up(url: str, timeout: float = 60, *, poll_s: float = 0.5) -> bool:
    """True once ``url`` answers (any HTTP status urllib does not raise for), False after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return True
        except OSError:
            time.sleep(poll_s)
    return False
