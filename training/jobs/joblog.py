"""A job's log file (`job.log` in its work directory), written through line by
line: each line is written and flushed to the operating system as it is
logged, so when the worker child is killed (SIGKILL, OOM) every line before
the kill is in the file. While a job runs, its warnings (`warnings`) and log
records (`logging`, warnings and up, plus the pipeline's own INFO messages)
are copied into it."""
from __future__ import annotations

import logging
import re
import threading
import traceback as traceback_module
from datetime import datetime, timezone
from pathlib import Path

LOG_FILE_NAME = "job.log"
# Loggers whose INFO messages belong in a job's log: the ML library's and the trainers'.
INFO_LOGGERS = ("training.pipeline", "training.stages", "transformers.trainer")
# Progress bars (tqdm, through Celery's stdout redirection): the job's own progress says this better.
# Celery logs what a task prints (stdout/stderr) under this name, at WARNING.
REDIRECTED_OUTPUT = "celery.redirected"
PROGRESS_BAR = re.compile(r"\d+%\|")


def job_log_path(work_dir: Path) -> Path:
    return Path(work_dir) / LOG_FILE_NAME


def read_log_tail(path: Path, max_chars: int) -> str | None:
    """The last `max_chars` characters of a log file (starting on a whole line), or None without one."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, 2)
            size = handle.tell()
            handle.seek(max(0, size - max_chars * 4))
            text = handle.read().decode("utf-8", errors="replace")
    except FileNotFoundError:
        return None
    if len(text) > max_chars:
        text = text[-max_chars:]
        text = text.split("\n", 1)[1] if "\n" in text else text
    return text


class JobLogFile:
    def __init__(self, path: Path, clock=lambda: datetime.now(timezone.utc)):
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._handle = None

    def open(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Line-buffered append: every attempt adds to the same file.
        self._handle = open(self.path, "a", encoding="utf-8", buffering=1)
        return self

    def close(self):
        with self._lock:
            if self._handle is not None:
                self._handle.close()
                self._handle = None

    def write(self, message: str, level: str = "") -> str:
        """Write one entry (continuation lines indented) and return it as written."""
        stamp = f"{self._clock():%Y-%m-%d %H:%M:%S}"
        prefix = f"{stamp} {level + ' ' if level else ''}"
        lines = str(message).rstrip("\n").split("\n")
        entry = prefix + lines[0] + "".join("\n    " + line for line in lines[1:])
        with self._lock:
            if self._handle is not None:
                self._handle.write(entry + "\n")
                self._handle.flush()
        return entry

    def write_traceback(self, exc: BaseException) -> str:
        text = "".join(traceback_module.format_exception(type(exc), exc, exc.__traceback__))
        return self.write(text, level="ERROR")


class JobLogHandler(logging.Handler):
    """Copies log records (and, through logging.captureWarnings, warnings) into a job's log."""

    def __init__(self, sink, *, skip_logger: str):
        super().__init__(level=logging.INFO)
        self._sink = sink  # callable(message, level)
        self._skip = skip_logger

    def emit(self, record: logging.LogRecord):
        if record.name == self._skip:
            return  # the runtime's own echo of lines already written
        if record.levelno < logging.WARNING and not record.name.startswith(INFO_LOGGERS):
            return
        try:
            message = record.getMessage().strip()
            if not message or PROGRESS_BAR.search(message):
                return
            if record.exc_info:
                message += "\n" + "".join(traceback_module.format_exception(*record.exc_info))
            if record.name == REDIRECTED_OUTPUT:
                self._sink(message, "")  # a library's print(), not a warning
            else:
                self._sink(f"{record.name}: {message}", record.levelname)
        except Exception:  # noqa: BLE001 - logging must never break the job
            self.handleError(record)


class captured_logs:
    """Context manager: while it is open, warnings and log records go to `sink` too.
    The handler sits on the root logger; the INFO loggers are opened to INFO for the
    job's duration (when they had no level of their own) so their records reach it."""

    def __init__(self, sink, *, skip_logger: str):
        self._handler = JobLogHandler(sink, skip_logger=skip_logger)
        self._opened: list[logging.Logger] = []

    def __enter__(self):
        for name in INFO_LOGGERS:
            logger = logging.getLogger(name)
            if logger.level == logging.NOTSET and logger.getEffectiveLevel() > logging.INFO:
                logger.setLevel(logging.INFO)
                self._opened.append(logger)
        logging.getLogger().addHandler(self._handler)
        logging.captureWarnings(True)
        return self

    def __exit__(self, *exc):
        logging.captureWarnings(False)
        logging.getLogger().removeHandler(self._handler)
        for logger in self._opened:
            logger.setLevel(logging.NOTSET)
        return False
