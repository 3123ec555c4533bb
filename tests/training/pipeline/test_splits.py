"""The stratified validation split: counts, risk share, topics in turn, seeded, disjoint."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from training.pipeline.splits import stratified_split

BANK = Path(__file__).resolve().parents[3] / "core" / "data" / "scenario_bank.jsonl"


@pytest.fixture
def bank():
    return [{**json.loads(line), "scenario_id": f"s{i}"} for i, line in enumerate(BANK.read_text().splitlines())]


def test_counts_disjoint_and_seeded(bank):
    train, test = stratified_split(bank, train=120, test=40, seed=0)
    assert len(train) == 120 and len(test) == 40
    assert not {r["scenario_id"] for r in train} & {r["scenario_id"] for r in test}
    assert {r["split"] for r in train} == {"train"} and {r["split"] for r in test} == {"test"}
    again = stratified_split(bank, train=120, test=40, seed=0)
    assert [r["scenario_id"] for r in again[1]] == [r["scenario_id"] for r in test]
    other = stratified_split(bank, train=120, test=40, seed=1)
    assert {r["scenario_id"] for r in other[1]} != {r["scenario_id"] for r in test}


def test_risk_signals_are_a_meaningful_share_and_levels_are_proportional(bank):
    _, test = stratified_split(bank, train=120, test=40, seed=0, risk_share=0.3)
    levels = Counter(r["risk_level"] for r in test)
    assert levels["moderate"] + levels["high"] == 12  # 30% of 40; a random draw would expect ~8
    assert levels["high"] == 7 and levels["moderate"] == 5  # 20 : 15 in the bank
    assert levels["none"] == 18 and levels["low"] == 10  # 86 : 51


def test_topics_take_turns(bank):
    _, test = stratified_split(bank, train=120, test=40, seed=0)
    first_topics = Counter(r["topics"][0] for r in test)
    assert len(first_topics) >= 15 and max(first_topics.values()) <= 4


def test_too_small_a_pool_is_refused(bank):
    with pytest.raises(ValueError, match="only 172 exist"):
        stratified_split(bank, train=150, test=40, seed=0)
