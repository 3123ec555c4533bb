"""Crisis language in free text.

A match never blocks the participant or judges them: the page shows the
helplines straight away and researchers get a flag to follow up. The
phrasings live in ``survey/data/crisis_phrases.txt`` (one pattern per line,
inflections included), so an ethics board can read and extend them without
reading code. Every free-text field of the survey goes through
``contains_crisis_language``.
"""
import re
from functools import lru_cache
from pathlib import Path

PHRASES_PATH = Path(__file__).resolve().parent / "data" / "crisis_phrases.txt"


def load_patterns(path: Path = PHRASES_PATH) -> tuple[str, ...]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return tuple(line for line in lines if line and not line.startswith("#"))


@lru_cache(maxsize=1)
def _compiled() -> tuple[re.Pattern, ...]:
    return tuple(re.compile(pattern) for pattern in load_patterns())


def normalise(text: str) -> str:
    """Lower case, straight apostrophes, single spaces (what the patterns are written against)."""
    text = text.lower().replace("\u2019", "'").replace("\u2018", "'").replace("`", "'")
    return " ".join(text.split())


def matching_patterns(text: str) -> list[str]:
    cleaned = normalise(text or "")
    return [p.pattern for p in _compiled() if p.search(cleaned)] if cleaned else []


def contains_crisis_language(text: str) -> bool:
    if not text:
        return False
    cleaned = normalise(text)
    return any(p.search(cleaned) for p in _compiled())
