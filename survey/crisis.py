"""Crisis language in free text.

A match never blocks the participant or judges them: the page shows the
helplines straight away and researchers get a flag to follow up. The list
errs towards matching (a false alarm costs a researcher a glance; a miss
costs more). Patterns are matched on lower-cased text with collapsed
whitespace and straight apostrophes.
"""
import re

CRISIS_PATTERNS = (
    r"\bkill(ing)? my ?self\b",
    r"\bsuicid",
    r"\bend (it all|my life|things)\b",
    r"\btake my (own )?life\b",
    r"\b(want|wanted|wanna|going) to die\b",
    r"\bdon'?t want to (live|be alive|be here)\b",
    r"\bno (reason|point) (in )?(to )?(living|live|going on)\b",
    r"\bbetter off (dead|without me)\b",
    r"\bcan'?t go on\b",
    r"\bself[- ]?harm",
    r"\b(hurt|hurting|harm|harming|cut|cutting) my ?self\b",
    r"\boverdos",
    r"\bnot (be|being) (here|around) any ?more\b",
    r"\b(he|she|they|partner) (hits|hit|beats|beat) me\b",
)
_COMPILED = tuple(re.compile(p) for p in CRISIS_PATTERNS)


def normalise(text: str) -> str:
    return " ".join(text.lower().replace("\u2019", "'").split())


def contains_crisis_language(text: str) -> bool:
    if not text:
        return False
    cleaned = normalise(text)
    return any(p.search(cleaned) for p in _COMPILED)
