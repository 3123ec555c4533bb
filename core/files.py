"""File helpers the platform shares: a content hash, an atomic write, a text and a JSONL reader.

Plain Python, standard library only, so the ML library uses the same hash and
write (training/pipeline/io.py re-exports them) without importing Django. The pipeline keeps its own path-based JSONL reader, which
skips a crash-cut last line of an appended file.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path


def sha256_file(path: str | Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write through a temporary file in the same folder and ``os.replace``, so a reader sees
    the old file or the whole new one. Newlines are written as given (CSV keeps its \\r\\n)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return path


class FileTextError(ValueError):
    """A file that cannot be read as UTF-8 text; ``reason`` says why, for the caller to prefix with the file's name."""

    def __init__(self, reason: str):
        self.reason = reason
        super().__init__(reason)


def read_text(path: str | Path) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileTextError("no such file") from None
    except UnicodeDecodeError as exc:
        raise FileTextError(f"not UTF-8 text ({exc.reason} at byte {exc.start})") from None


class JsonlLineError(ValueError):
    """A line of JSONL that is not a JSON object; ``line`` counts from 1."""

    def __init__(self, line: int, reason: str):
        self.line, self.reason = line, reason
        super().__init__(f"line {line}: {reason}")


def jsonl_objects(content: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of JSONL text; JsonlLineError on a bad line."""
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            record = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise JsonlLineError(number, f"not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise JsonlLineError(number, "expected a JSON object")
        yield number, record
