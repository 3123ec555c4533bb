"""Hand-made decision sets for the statistics tests: persona votes drawn from known preferences."""
from __future__ import annotations

import random
from itertools import combinations


def decision(scenario, a, b, criterion, votes, words_a=30, words_b=30):
    return {"scenario_id": scenario, "model_a": a, "model_b": b, "criterion": criterion,
            "votes": {f"p{i}": v for i, v in enumerate(votes)},
            "majority": _majority(votes), "response_a": "word " * words_a, "response_b": "word " * words_b}


def _majority(votes):
    a, b = votes.count("a"), votes.count("b")
    return "none" if not votes else "a" if a > b else "b" if b > a else "tie"


def pair_decisions(p_a, *, scenarios=40, personas=7, seed=0, a="x", b="y", criterion="empathy"):
    """One pairing: every persona votes for A with probability p_a, independently."""
    rng = random.Random(seed)
    return [decision(f"s{s}", a, b, criterion, ["a" if rng.random() < p_a else "b" for _ in range(personas)])
            for s in range(scenarios)]


def strength_decisions(strengths, *, scenarios=40, personas=7, seed=0):
    """Every pairing of the models in ``strengths`` (model -> criterion -> strength > 0): a persona votes for A
    with the Bradley-Terry probability s_A / (s_A + s_B)."""
    rng = random.Random(seed)
    models = list(strengths)
    criteria = list(next(iter(strengths.values())))
    out = []
    for a, b in combinations(models, 2):
        for c in criteria:
            p_a = strengths[a][c] / (strengths[a][c] + strengths[b][c])
            for s in range(scenarios):
                out.append(decision(f"s{s}", a, b, c, ["a" if rng.random() < p_a else "b" for _ in range(personas)]))
    return out
