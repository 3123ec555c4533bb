"""Train/test scenario splits for validation runs: a test set stratified by risk level and topic.

The bank's own split (by length quartile, as the study split its posts) gives
a test set whose risk mix is left to chance; a validation run needs the
safety-relevant scenarios to be a meaningful share of its test set, or most
safety comparisons are ties between two replies to a post with no risk.

``stratified_split`` draws the test set so that
1. scenarios with risk signals (``RISK_SIGNAL_LEVELS``: moderate, high) make
   up at least ``risk_share`` of it (more if they are that common), each risk
   level in proportion to its size in the pool (largest remainder);
2. inside every risk level, topics take turns (each scenario counted under
   its first topic, topics in a seeded order), so no topic crowds out the
   others;
and then draws the training set at random from what is left. Seeded: the
same records, counts and seed give the same split.
"""
from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Sequence

__all__ = ["RISK_SIGNAL_LEVELS", "stratified_split"]

RISK_SIGNAL_LEVELS = ("moderate", "high")


def _largest_remainder(sizes: dict[str, int], total: int) -> dict[str, int]:
    """Integer quotas proportional to sizes, summing to total (never above a stratum's size)."""
    pool = sum(sizes.values())
    if pool == 0 or total <= 0:
        return {k: 0 for k in sizes}
    raw = {k: total * n / pool for k, n in sizes.items()}
    quota = {k: min(sizes[k], math.floor(v)) for k, v in raw.items()}
    for k in sorted(sizes, key=lambda k: (-(raw[k] - math.floor(raw[k])), k)):
        if sum(quota.values()) >= total:
            break
        if quota[k] < sizes[k]:
            quota[k] += 1
    while sum(quota.values()) < min(total, pool):  # strata that ran out hand their share to the others
        for k in sorted(sizes, key=lambda k: -(sizes[k] - quota[k])):
            if quota[k] < sizes[k] and sum(quota.values()) < total:
                quota[k] += 1
    return quota


def _round_robin_by_topic(records: list[dict], count: int, rng: random.Random) -> list[dict]:
    by_topic: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        topics = record.get("topics") or ["(none)"]
        by_topic[topics[0]].append(record)
    order = sorted(by_topic)
    rng.shuffle(order)
    for topic in order:
        rng.shuffle(by_topic[topic])
    picked: list[dict] = []
    while len(picked) < count:
        progressed = False
        for topic in order:
            if by_topic[topic] and len(picked) < count:
                picked.append(by_topic[topic].pop())
                progressed = True
        if not progressed:
            break
    return picked


def stratified_split(records: Sequence[dict], *, train: int, test: int, seed: int,
                     risk_share: float = 0.3) -> tuple[list[dict], list[dict]]:
    """(train records, test records) from scenario records with ``risk_level`` and ``topics``.

    Raises ValueError when the pool is smaller than train + test."""
    records = sorted(records, key=lambda r: str(r.get("scenario_id", r.get("id", ""))))
    if train + test > len(records):
        raise ValueError(f"asked for {train} training and {test} test scenarios but only {len(records)} exist")
    rng = random.Random(seed)
    by_level: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_level[record.get("risk_level") or "none"].append(record)
    signal = {k: len(v) for k, v in by_level.items() if k in RISK_SIGNAL_LEVELS}
    other = {k: len(v) for k, v in by_level.items() if k not in RISK_SIGNAL_LEVELS}
    natural = test * sum(signal.values()) / len(records)
    signal_total = min(sum(signal.values()), max(round(natural), math.ceil(risk_share * test)))
    quota = {**_largest_remainder(signal, signal_total), **_largest_remainder(other, test - signal_total)}
    if sum(quota.values()) < test:  # too few non-risk scenarios: fill from the risk levels
        extra = _largest_remainder({k: len(by_level[k]) - quota[k] for k in signal}, test - sum(quota.values()))
        quota = {k: quota[k] + extra.get(k, 0) for k in quota}
    test_records: list[dict] = []
    for level in sorted(by_level):
        test_records += _round_robin_by_topic(list(by_level[level]), quota.get(level, 0), rng)
    chosen = {id(r) for r in test_records}
    rest = [r for r in records if id(r) not in chosen]
    train_records = rng.sample(rest, train)
    return ([{**r, "split": "train"} for r in train_records], [{**r, "split": "test"} for r in test_records])
