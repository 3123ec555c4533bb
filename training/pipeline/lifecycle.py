"""Starting and stopping the helpers the pipeline runs beside itself (a local server, a child process)."""
from __future__ import annotations

import subprocess

__all__ = ["StartStop", "stop_process"]


def stop_process(process: subprocess.Popen | None, timeout_s: float) -> None:
    """Ask a child process to end (SIGTERM); kill it if it has not ended within ``timeout_s``."""
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class StartStop:
    """``with thing:`` calls ``thing.start()`` (whose return value is bound by ``as``) and ``thing.stop()`` on the way out."""

    def start(self):
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
