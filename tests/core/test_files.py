"""The shared file helpers (core.files), which the survey, core and the pipeline all use."""
import hashlib

import pytest

from core.files import JsonlLineError, atomic_write_text, jsonl_objects, sha256_file


def test_an_atomic_write_keeps_newlines_as_given_and_leaves_no_temporary_file(tmp_path):
    path = atomic_write_text(tmp_path / "out" / "rows.csv", "a,b\r\n1,2\r\n")
    assert path.read_bytes() == b"a,b\r\n1,2\r\n"
    assert sha256_file(path) == hashlib.sha256(b"a,b\r\n1,2\r\n").hexdigest()
    assert [p.name for p in path.parent.iterdir()] == ["rows.csv"]


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path):
    path = atomic_write_text(tmp_path / "x.txt", "old")
    with pytest.raises(TypeError):
        atomic_write_text(path, None)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_jsonl_objects_numbers_lines_and_names_the_bad_one():
    assert list(jsonl_objects('{"a": 1}\n\n{"b": 2}\n')) == [(1, {"a": 1}), (3, {"b": 2})]
    with pytest.raises(JsonlLineError, match=r"^line 2: expected a JSON object$"):
        list(jsonl_objects('{"a": 1}\n[1]\n'))
    with pytest.raises(JsonlLineError, match=r"^line 1: not valid JSON"):
        list(jsonl_objects("{oops\n"))
