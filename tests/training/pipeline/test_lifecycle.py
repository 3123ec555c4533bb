"""stop_process ends a child process, killing one that ignores SIGTERM; StartStop is `with`-able."""
from __future__ import annotations

import subprocess
import sys

from training.pipeline.lifecycle import StartStop, stop_process


def _child(code: str) -> subprocess.Popen:
    # The child prints once it is ready, so the signal cannot arrive before its handler is set.
    process = subprocess.Popen([sys.executable, "-c", code + "\nprint('ready', flush=True)\nimport time\ntime.sleep(60)"],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline().strip() == "ready"
    return process


def test_stop_process_terminates_a_child_that_heeds_sigterm():
    process = _child("")
    stop_process(process, timeout_s=10)
    assert process.returncode == -15


def test_stop_process_kills_a_child_that_ignores_sigterm():
    process = _child("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)")
    stop_process(process, timeout_s=0.5)
    assert process.returncode == -9


def test_stop_process_leaves_a_finished_or_missing_process_alone():
    process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    process.wait()
    stop_process(process, timeout_s=1)
    stop_process(None, timeout_s=1)
    assert process.returncode == 3


def test_start_stop_starts_on_entry_and_stops_on_exit_even_after_an_error():
    class Thing(StartStop):
        events: list[str] = []

        def start(self):
            self.events.append("start")
            return "started"

        def stop(self):
            self.events.append("stop")

    thing = Thing()
    try:
        with thing as started:
            assert started == "started"
            raise ValueError
    except ValueError:
        pass
    assert thing.events == ["start", "stop"]
