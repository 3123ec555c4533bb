"""The assignment plan (annotation.layout): exact overlap, balanced load."""
import random
from collections import Counter

import pytest

from annotation import services

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "n_items,n_clinicians,overlap",
    [(7, 3, 2), (5, 5, 3), (9, 7, 4), (11, 3, 3), (1, 3, 1), (13, 5, 1), (3, 7, 5), (101, 6, 2)],
)
def test_assignment_plan_meets_overlap_exactly_with_balanced_load(n_items, n_clinicians, overlap):
    queues = services.assignment_plan(n_items=n_items, n_clinicians=n_clinicians, overlap=overlap, rng=random.Random(5))
    per_item = Counter(item for queue in queues for item in queue)
    assert set(per_item) == set(range(n_items))
    assert all(count == overlap for count in per_item.values())
    for queue in queues:
        assert len(queue) == len(set(queue))  # nobody sees an item twice
    loads = [len(q) for q in queues]
    assert max(loads) - min(loads) <= 1
    assert sum(loads) == n_items * overlap
