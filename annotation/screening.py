"""The self-identification screen and the display normalisation of responses.

Model replies often name themselves ("As an AI developed by…", "I'm Qwen…") or
carry chat-template debris (``<|im_end|>``, a stray "assistant:" line) that
differs by source and so unblinds a clinician. Before a study opens every
response is screened (``screen_text``) for:

- the names and references of both sources' model versions and their base
  models (``source_terms``),
- a maintained list of model families and vendors, self-description phrases,
  special tokens and role tags (``data/self_identification.json``).

Whatever the researcher decides, both sources' texts are shown to clinicians
through the same ``normalise_for_display``; its name (``NORMALISATION``) is
stored on the study and carried in exports. Pure functions, no database.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

TERMS_FILE = Path(__file__).parent / "data" / "self_identification.json"
NORMALISATION = "display-v1"
NORMALISATION_DESCRIPTION = (
    "display-v1: chat-template special tokens removed (with the role name that follows <|im_start|> or a header token), "
    "line breaks unified, trailing spaces removed, runs of blank lines collapsed to one, leading and trailing whitespace trimmed"
)
CONTEXT_CHARS = 40
# Reference pieces too generic to search for on their own ("exp/base" must not flag every "base").
GENERIC_PIECES = {"base", "model", "models", "fixed", "tiny", "checkpoint", "policy", "instruct", "chat", "demo", "source",
                  "main", "final", "test", "train", "default", "local", "cache", "artifacts", "adapter", "merged"}


class Kind:
    """The values of annotation.models.ScreeningHit.Kind."""

    SOURCE_NAME = "source_name"
    MODEL_FAMILY = "model_family"
    VENDOR = "vendor"
    SELF_DESCRIPTION = "self_description"
    SPECIAL_TOKEN = "special_token"
    ROLE_TAG = "role_tag"



@dataclass(frozen=True)
class Hit:
    kind: str
    term: str
    start: int
    end: int
    matched: str
    before: str
    after: str


@lru_cache(maxsize=1)
def screen_lists() -> dict:
    return json.loads(TERMS_FILE.read_text(encoding="utf-8"))


def _name_pattern(name: str, *, case_sensitive: bool) -> re.Pattern:
    # Whole words only ("Claudette" is not "Claude"); a version suffix belongs to the name ("Llama 3", "Qwen2.5", "GPT-4o").
    body = r"\s+".join(re.escape(part) for part in name.split())
    pattern = rf"(?<![A-Za-z0-9]){body}(?:[- ]?\d+(?:\.\d+)*[A-Za-z]?)?(?![A-Za-z0-9])"
    return re.compile(pattern, 0 if case_sensitive else re.IGNORECASE)


def _reference_pattern(term: str) -> re.Pattern:
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(term)}(?![A-Za-z0-9])", re.IGNORECASE)


@lru_cache(maxsize=1)
def _list_patterns() -> list[tuple[str, str, re.Pattern]]:
    lists = screen_lists()
    exact = set(lists.get("case_sensitive", []))
    patterns = []
    for kind, key in ((Kind.MODEL_FAMILY, "model_families"), (Kind.VENDOR, "vendors")):
        for name in lists[key]:
            patterns.append((kind, name, _name_pattern(name, case_sensitive=name in exact)))
    for phrase in lists["self_description"]:
        patterns.append((Kind.SELF_DESCRIPTION, phrase, re.compile(phrase, re.IGNORECASE)))
    for token in lists["special_tokens"]:
        patterns.append((Kind.SPECIAL_TOKEN, token, re.compile(re.escape(token))))
    patterns.append((Kind.SPECIAL_TOKEN, "<|…|>", re.compile(lists["special_token_pattern"])))
    patterns.append((Kind.ROLE_TAG, "role tag", re.compile(lists["role_tag_pattern"], re.IGNORECASE | re.MULTILINE)))
    return patterns


def source_terms(model_version) -> list[str]:
    """Strings that identify a source: its name, model reference and path,
    their identifier-like pieces, and the same for its base models (parents)."""
    terms: list[str] = []
    seen = set()
    version, hops = model_version, 0
    while version is not None and hops < 10:
        provenance = version.provenance if isinstance(version.provenance, dict) else {}
        values = [version.name, version.model_ref, version.path, provenance.get("base_model"), provenance.get("model_ref")]
        for value in values:
            if not isinstance(value, str) or not value.strip():
                continue
            value = value.strip()
            pieces = [value] + [p for p in re.split(r"[/\\:\s]+", value) if p]
            for piece in pieces:
                piece = piece.strip(" .")
                looks_like_an_identifier = piece == value or re.search(r"[\d_.\-]|[a-z][A-Z]", piece)
                if len(piece) < 4 or piece.lower() in GENERIC_PIECES or not looks_like_an_identifier:
                    continue
                if piece.lower() not in seen:
                    seen.add(piece.lower())
                    terms.append(piece)
        version, hops = version.parent, hops + 1
    return terms


def _self_naming_patterns(names: list[str]) -> list[tuple[str, re.Pattern]]:
    lead = screen_lists()["self_naming"]
    return [(name, re.compile(lead + r"(?:" + _name_pattern(name, case_sensitive=False).pattern + r")", re.IGNORECASE))
            for name in names]


def screen_text(text: str, *, terms: list[str] = ()) -> list[Hit]:
    """Every hit in one response, in order. ``terms``: the sources' own names
    and references (``source_terms``). Overlapping hits of different kinds are
    all kept (each says something different); exact duplicates are not."""
    text = text or ""
    found: dict[tuple, Hit] = {}

    def add(kind, term, match):
        start, end = match.span()
        if end <= start:
            return
        key = (kind, start, end)
        if key not in found:
            found[key] = Hit(kind=kind, term=term, start=start, end=end, matched=text[start:end],
                             before=text[max(0, start - CONTEXT_CHARS):start], after=text[end:end + CONTEXT_CHARS])

    for kind, term, pattern in _list_patterns():
        for match in pattern.finditer(text):
            add(kind, term, match)
    for term in terms:
        for match in _reference_pattern(term).finditer(text):
            add(Kind.SOURCE_NAME, term, match)
    names = list(screen_lists()["model_families"]) + list(terms)
    for name, pattern in _self_naming_patterns(names):
        for match in pattern.finditer(text):
            add(Kind.SELF_DESCRIPTION, f"I'm {name}", match)
    return sorted(found.values(), key=lambda h: (h.start, h.end, h.kind))


# --- Display normalisation ------------------------------------------------------------------

_TEMPLATE_TURN = re.compile(r"<\|im_start\|>[ \t]*(?:system|user|assistant)?[ \t]*\n?")
_HEADER = re.compile(r"<\|start_header_id\|>[^<]{0,40}<\|end_header_id\|>[ \t]*\n?")


@lru_cache(maxsize=1)
def _token_pattern() -> re.Pattern:
    lists = screen_lists()
    literal = "|".join(re.escape(t) for t in sorted(lists["special_tokens"], key=len, reverse=True))
    return re.compile(f"(?:{literal})|{lists['special_token_pattern']}")


def normalise_for_display(text: str) -> str:
    """The text a clinician sees, the same for both sources (``NORMALISATION``)."""
    text = (text or "").replace("\r\n", "\n").replace("\r", "\n")
    text = _TEMPLATE_TURN.sub("", text)
    text = _HEADER.sub("", text)
    text = _token_pattern().sub("", text)
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{3,}", "\n\n", text)
    return text.strip()
