"""Every random order a participant sees comes from their own seed and a
label naming the purpose, so a reload (or a second tab, or the resume link)
shows exactly the same order, and each order can be recomputed from the
stored seed."""
from __future__ import annotations

import hashlib
import random


def rng_for(seed: int, *labels) -> random.Random:
    digest = hashlib.sha256(":".join([str(seed), *map(str, labels)]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def shuffled(items, seed: int, *labels) -> list:
    items = list(items)
    rng_for(seed, *labels).shuffle(items)
    return items


def build_scenario_plan(*, seed: int, sequence: int, candidates: dict[int, list[int]], criteria_keys: list[str],
                        scenarios: int, responses: int) -> list[dict]:
    """The participant's ranking screens.

    candidates: scenario id -> response ids (at least ``responses`` each).
    Scenarios and responses are sampled with the participant's seed; the
    criterion of screen i is criteria_keys[(sequence * scenarios + i) % n], so
    consecutive participants cover every criterion evenly."""
    if not criteria_keys:
        return []
    pool = sorted(sid for sid, ids in candidates.items() if len(ids) >= responses)
    rng = rng_for(seed, "scenarios")
    chosen = rng.sample(pool, min(scenarios, len(pool)))
    plan = []
    for index, scenario_id in enumerate(chosen):
        response_ids = sorted(candidates[scenario_id])
        picked = rng_for(seed, "responses", scenario_id).sample(response_ids, responses)
        plan.append({
            "scenario": scenario_id,
            "responses": picked,  # already in a seeded random order: the shown order
            "criterion": criteria_keys[(sequence * scenarios + index) % len(criteria_keys)],
        })
    return plan
