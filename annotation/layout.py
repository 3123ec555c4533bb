"""A rating study's layout from its secret seed alone: which items each clinician rates, in what order,
and on which side source A is shown. Pure functions, no database."""
from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from .exceptions import InvalidInput


def assignment_plan(*, n_items: int, n_clinicians: int, overlap: int, rng: random.Random) -> list[list[int]]:
    """Which items each clinician rates, in the order they will see them.

    Every item goes to exactly ``overlap`` distinct clinicians, and loads differ
    by at most one: items are dealt in a random order, each to the ``overlap``
    clinicians with the fewest items so far (ties broken at random). If all
    loads are L or L+1 before an item, they are still within one of each other
    after it, so the invariant holds to the end. Returns one list of item
    indices per clinician, shuffled into that clinician's own queue order."""
    if n_clinicians < 1:
        raise InvalidInput("a study needs at least one clinician")
    if not 1 <= overlap <= n_clinicians:
        raise InvalidInput(f"overlap must be between 1 and the number of clinicians ({n_clinicians}), got {overlap}")
    loads = [0] * n_clinicians
    queues: list[list[int]] = [[] for _ in range(n_clinicians)]
    items = list(range(n_items))
    rng.shuffle(items)
    for item in items:
        tiebreak = [rng.random() for _ in range(n_clinicians)]
        chosen = sorted(range(n_clinicians), key=lambda c: (loads[c], tiebreak[c]))[:overlap]
        for c in chosen:
            loads[c] += 1
            queues[c].append(item)
    for queue in queues:
        rng.shuffle(queue)
    return queues


def study_rng(seed: int, purpose: str) -> random.Random:
    """An independent, reproducible random stream for one purpose of a study,
    derived from its secret seed (string seeds are hashed with SHA-512)."""
    return random.Random(f"attune-rating-study:{seed}:{purpose}")


def seed_commitment(seed: int) -> str:
    """SHA-256 of the seed: audit rows carry this, so the seed revealed after
    close can be checked against what was fixed at creation."""
    return hashlib.sha256(f"attune-rating-study:{seed}".encode()).hexdigest()


@dataclass(frozen=True)
class PlannedAssignment:
    clinician: int
    item: int
    position: int
    position_seed: int
    left_is_a: bool


def study_layout(*, seed: int, n_items: int, n_clinicians: int, overlap: int) -> list[PlannedAssignment]:
    """Every assignment of a study, from its seed alone: which items each
    clinician (by index) rates, in what order, and which side source A is on.
    The same seed and sizes always give the same layout."""
    plan = assignment_plan(n_items=n_items, n_clinicians=n_clinicians, overlap=overlap, rng=study_rng(seed, "plan"))
    positions = study_rng(seed, "positions")
    layout = []
    for clinician, queue in enumerate(plan):
        for position, item in enumerate(queue, start=1):
            position_seed = positions.getrandbits(62)
            layout.append(PlannedAssignment(clinician, item, position, position_seed,
                                            random.Random(position_seed).random() < 0.5))
    return layout
