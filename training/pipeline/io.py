"""Small file helpers every stage shares: JSONL in and out, atomic writes, content hashes.

Stages append JSONL as they go so an interrupted run keeps its work; a crash can
leave a half-written last line, so readers of such files skip an unterminated
tail (``repair_jsonl_tail`` cuts it off before appending again;
``read_jsonl_for_resume`` does that and reads what is kept). Files that are
written whole (summaries, cards, reports) go through a temporary file and
``os.replace`` so a reader never sees half of one.

The record readers (``load_scenarios``, ``load_personas``, ``load_candidates``)
check the fixed formats other parts of the platform rely on and fail with the
file and line number, never by guessing.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# One hash and one atomic write for the whole platform: plain Python, no Django (core/files.py).
from core.files import atomic_write_text, sha256_file

__all__ = [
    "JsonlFormatError",
    "Scenario",
    "Persona",
    "CandidateSet",
    "canonical_json",
    "sha256_json",
    "sha256_file",
    "sha256_text",
    "derive_seed",
    "iter_jsonl",
    "read_jsonl",
    "write_jsonl_atomic",
    "append_jsonl",
    "repair_jsonl_tail",
    "read_jsonl_for_resume",
    "atomic_write_text",
    "atomic_write_json",
    "read_json",
    "load_scenarios",
    "load_personas",
    "load_candidates",
    "PipelineConfigError",
    "load_toml",
    "dataclass_from_dict",
]

SCENARIO_SPLITS = ("train", "test")
RISK_LEVELS = ("none", "low", "moderate", "high")


class JsonlFormatError(ValueError):
    """A JSONL file (or one record in it) that does not have the expected shape."""


# ---------------------------------------------------------------------------
# Hashing


def canonical_json(obj: Any) -> str:
    """One text per value: sorted keys, no whitespace, UTF-8 kept; the basis of every content hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def sha256_json(obj: Any) -> str:
    return sha256_text(canonical_json(obj))


def derive_seed(*parts: Any) -> int:
    """A 31-bit seed from any parts (global seed, ids, indices), stable across processes and Python versions.

    ``hash()`` is salted per process, so it can't be used for seeds that must survive a restart.
    """
    digest = hashlib.sha256(canonical_json([str(p) for p in parts]).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


# ---------------------------------------------------------------------------
# JSONL


def iter_jsonl(path: str | Path, *, skip_partial_tail: bool = True) -> Iterator[dict]:
    """Yield one dict per line; blank lines are skipped.

    With ``skip_partial_tail`` a last line without a newline that does not parse is taken as a write cut
    short by a crash and skipped; anywhere else a bad line is an error.
    """
    path = Path(path)
    with open(path, encoding="utf-8") as handle:
        lines = handle.readlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            if skip_partial_tail and number == len(lines) and not line.endswith("\n"):
                return
            raise JsonlFormatError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise JsonlFormatError(f"{path}:{number}: expected a JSON object, got {type(record).__name__}")
        yield record


def read_jsonl(path: str | Path, *, skip_partial_tail: bool = True) -> list[dict]:
    return list(iter_jsonl(path, skip_partial_tail=skip_partial_tail))


def repair_jsonl_tail(path: str | Path) -> bool:
    """Cut off an unterminated last line (an interrupted append) so new lines start cleanly.

    Returns True when something was cut. A missing file is left missing.
    """
    path = Path(path)
    if not path.exists():
        return False
    with open(path, "rb+") as handle:
        data = handle.read()
        if not data or data.endswith(b"\n"):
            return False
        keep = data.rfind(b"\n") + 1  # 0 when the only line is partial
        handle.truncate(keep)
    return True


def read_jsonl_for_resume(path: str | Path) -> list[dict]:
    """What a resumed stage keeps of its output file (nothing when there is none yet), after cutting off an
    interrupted last line so the stage's appends start cleanly."""
    repair_jsonl_tail(path)
    return read_jsonl(path) if Path(path).exists() else []


def append_jsonl(path: str | Path, records: Iterable[dict], *, fsync: bool = True) -> int:
    """Append records as JSON lines in one write; returns how many were written.

    One write per call keeps a group of related lines (e.g. every criterion of one decision) together as
    far as the OS allows; the partial-tail rule covers the rest.
    """
    lines = [json.dumps(record, ensure_ascii=False) + "\n" for record in records]
    if not lines:
        return 0
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as handle:
        handle.write("".join(lines))
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())
    return len(lines)


def atomic_write_json(path: str | Path, obj: Any, *, indent: int | None = 2, sort_keys: bool = False, default=None) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False, sort_keys=sort_keys, default=default) + "\n")


def write_jsonl_atomic(path: str | Path, records: Iterable[dict]) -> Path:
    return atomic_write_text(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


def read_json(path: str | Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


# ---------------------------------------------------------------------------
# Records in the fixed formats


@dataclass(frozen=True)
class Scenario:
    scenario_id: str
    prompt: str
    split: str = "train"
    risk_level: str = "none"
    topics: tuple[str, ...] = ()


@dataclass(frozen=True)
class Persona:
    persona_id: str
    text: str
    split: str = "train"
    weights: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class CandidateSet:
    scenario_id: str
    prompt: str
    responses: tuple[str, ...]
    model: str
    generation: dict


def _require(record: dict, key: str, kind: type | tuple[type, ...], where: str):
    if key not in record:
        raise JsonlFormatError(f"{where}: missing required field {key!r}")
    value = record[key]
    if not isinstance(value, kind):
        raise JsonlFormatError(f"{where}: field {key!r} must be {getattr(kind, '__name__', kind)}, got {value!r}")
    return value


def _check_unique(ids: list[str], path: Path, what: str) -> None:
    seen: set[str] = set()
    for item in ids:
        if item in seen:
            raise JsonlFormatError(f"{path}: duplicate {what} {item!r}")
        seen.add(item)


def _load_split_records(path: str | Path, split: str | None, id_key: str, text_key: str,
                        build: Callable[[dict, str, str, str, str], Any]) -> list:
    """The shared reader of the scenario and persona files: an id and a text per line, a split, unique ids, in
    file order; ``build(record, where, id, text, split)`` checks the rest of a line and makes its object."""
    path = Path(path)
    items = []
    for number, record in enumerate(iter_jsonl(path, skip_partial_tail=False), start=1):
        where = f"{path}:{number}"
        item_id = _require(record, id_key, str, where)
        text = _require(record, text_key, str, where)
        record_split = record.get("split", "train")
        if record_split not in SCENARIO_SPLITS:
            raise JsonlFormatError(f"{where}: split must be one of {SCENARIO_SPLITS}, got {record_split!r}")
        items.append(build(record, where, item_id, text, record_split))
    _check_unique([getattr(item, id_key) for item in items], path, id_key)
    return items if split is None else [item for item in items if item.split == split]


def _scenario(record: dict, where: str, scenario_id: str, prompt: str, split: str) -> Scenario:
    risk = record.get("risk_level", "none")
    if risk not in RISK_LEVELS:
        raise JsonlFormatError(f"{where}: risk_level must be one of {RISK_LEVELS}, got {risk!r}")
    topics = record.get("topics", [])
    if not isinstance(topics, list) or not all(isinstance(t, str) for t in topics):
        raise JsonlFormatError(f"{where}: topics must be a list of strings")
    return Scenario(scenario_id, prompt, split, risk, tuple(topics))


def _persona(record: dict, where: str, persona_id: str, text: str, split: str) -> Persona:
    weights = record.get("weights") or {}
    if not isinstance(weights, dict) or not all(
        isinstance(k, str) and isinstance(v, (int, float)) and not isinstance(v, bool) for k, v in weights.items()
    ):
        raise JsonlFormatError(f"{where}: weights must map criterion keys to numbers")
    return Persona(persona_id, text, split, {k: float(v) for k, v in weights.items()})


def load_scenarios(path: str | Path, *, split: str | None = None) -> list[Scenario]:
    """Scenarios JSONL -> list of ``Scenario`` (optionally one split), in file order."""
    return _load_split_records(path, split, "scenario_id", "prompt", _scenario)


def load_personas(path: str | Path, *, split: str | None = None) -> list[Persona]:
    """Personas JSONL -> list of ``Persona`` (optionally one split), in file order."""
    return _load_split_records(path, split, "persona_id", "text", _persona)


def personas_for_scenario(scenario_id: str, personas: list[Persona], per_scenario: int | None, seed: int, *,
                          purpose: str) -> list[Persona]:
    """The personas who judge one scenario: all of them, or a seeded sample of ``per_scenario`` in file order.
    ``purpose`` keeps the draws of different stages (labeling, evaluation) independent of each other."""
    if per_scenario is None or per_scenario >= len(personas):
        return personas
    picked = set(random.Random(derive_seed(purpose, seed, scenario_id)).sample(range(len(personas)), per_scenario))
    return [p for i, p in enumerate(personas) if i in picked]


def load_candidates(path: str | Path) -> list[CandidateSet]:
    """Candidates JSONL (the generation stage's output) -> list of ``CandidateSet``."""
    path = Path(path)
    candidates = []
    for number, record in enumerate(iter_jsonl(path), start=1):
        where = f"{path}:{number}"
        scenario_id = _require(record, "scenario_id", str, where)
        prompt = _require(record, "prompt", str, where)
        responses = _require(record, "responses", list, where)
        if not responses or not all(isinstance(r, str) for r in responses):
            raise JsonlFormatError(f"{where}: responses must be a non-empty list of strings")
        candidates.append(
            CandidateSet(scenario_id, prompt, tuple(responses), str(record.get("model", "")), dict(record.get("generation", {})))
        )
    _check_unique([c.scenario_id for c in candidates], path, "scenario_id")
    return candidates


# ---------------------------------------------------------------------------
# Config dataclasses from TOML / dicts


class PipelineConfigError(ValueError):
    """A pipeline stage's settings that cannot run: a TOML file or table that does not fit its config dataclass
    (unknown or missing keys, wrong types), or inputs that do not fit the settings. The command line prints it and
    exits with status 2. Not ``training.plans.PipelineConfigError``, which is an experiment plan's (an ApplicationError)."""


def load_toml(path: str | Path) -> dict:
    import tomllib

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        raise PipelineConfigError(f"config file {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise PipelineConfigError(f"{path}: not valid TOML ({exc})") from None


def dataclass_from_dict(cls, data: Any, where: str = "config"):
    """Build dataclass ``cls`` from a mapping, checking keys and types; nested dataclasses and lists work.

    Errors name the offending key path (``where``) and list what is allowed, e.g.
    ``config.judge: unknown key 'temprature'; allowed: base_url, model, ...``.
    """
    import dataclasses

    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if isinstance(data, cls):
        return data
    if not isinstance(data, dict):
        raise PipelineConfigError(f"{where}: expected a table of settings, got {type(data).__name__}")
    hints = _type_hints(cls)
    # Hooks (progress callbacks, stop checks) are set in code, never from a file.
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init and not _is_callable_type(hints.get(f.name))}
    required = [name for name, f in fields.items() if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        allowed = required + [name for name in fields if name not in required]  # the required first (a base class's come first)
        raise PipelineConfigError(
            f"{where}: unknown key{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
            f"allowed: {', '.join(allowed)}"
        )
    missing = [name for name in required if name not in data]
    if missing:
        raise PipelineConfigError(f"{where}: missing required key{'s' if len(missing) > 1 else ''} {', '.join(map(repr, missing))}")
    values = {name: _coerce(hints.get(name, Any), value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise PipelineConfigError(f"{where}: {exc}") from None


def _is_callable_type(kind: Any) -> bool:
    import collections.abc
    import types
    import typing

    if kind is None:
        return False
    origin = typing.get_origin(kind)
    if origin is collections.abc.Callable or kind is collections.abc.Callable:
        return True
    return origin in (typing.Union, types.UnionType) and any(_is_callable_type(arg) for arg in typing.get_args(kind))


def _type_hints(cls) -> dict:
    import typing

    try:
        return typing.get_type_hints(cls)
    except Exception:  # a forward reference that can't be resolved: use whatever is a real type
        import dataclasses

        return {f.name: f.type for f in dataclasses.fields(cls) if not isinstance(f.type, str)}


def _coerce(kind: Any, value: Any, where: str):
    import dataclasses
    import types
    import typing

    if kind is Any or kind is object:
        return value
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(option, value, where)
            except PipelineConfigError as exc:
                errors.append(str(exc))
        raise PipelineConfigError(errors[0] if len(errors) == 1 else f"{where}: {value!r} fits none of {kind}")
    if origin is typing.Literal:
        if value not in args:
            raise PipelineConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, got {value!r}")
        return value
    if dataclasses.is_dataclass(kind):
        return dataclass_from_dict(kind, value, where)
    if origin in (list, tuple, set, frozenset) or kind in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise PipelineConfigError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            item_kinds = [args[0]] * len(value)
        elif origin is tuple and args:
            if len(args) != len(value):
                raise PipelineConfigError(f"{where}: expected {len(args)} items, got {len(value)}")
            item_kinds = list(args)
        else:
            item_kinds = [args[0] if args else Any] * len(value)
        items = [_coerce(k, v, f"{where}[{i}]") for i, (k, v) in enumerate(zip(item_kinds, value))]
        container = origin or kind
        return container(items) if container is not list else items
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise PipelineConfigError(f"{where}: expected a table, got {value!r}")
        value_kind = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(value_kind, v, f"{where}.{k}") for k, v in value.items()}
    if kind is bool:
        if not isinstance(value, bool):
            raise PipelineConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise PipelineConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if kind is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise PipelineConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise PipelineConfigError(f"{where}: expected a string, got {value!r}")
        return value
    if isinstance(kind, type) and issubclass(kind, Path):
        if not isinstance(value, (str, Path)):
            raise PipelineConfigError(f"{where}: expected a path, got {value!r}")
        return Path(value)
    return value
