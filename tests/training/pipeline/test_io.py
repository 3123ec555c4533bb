"""JSONL helpers, atomic writes, hashes, record loaders and config loading."""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest

from training.pipeline.io import (
    PipelineConfigError,
    JsonlFormatError,
    Persona,
    append_jsonl,
    atomic_write_json,
    dataclass_from_dict,
    derive_seed,
    load_personas,
    load_scenarios,
    personas_for_scenario,
    read_json,
    read_jsonl,
    read_jsonl_for_resume,
    repair_jsonl_tail,
    sha256_file,
    sha256_json,
)


def test_append_and_read_skip_a_cut_off_last_line(tmp_path):
    path = tmp_path / "x.jsonl"
    append_jsonl(path, [{"a": 1}, {"a": 2}])
    with open(path, "a") as handle:
        handle.write('{"a": 3, "b"')  # a crash mid-append
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}]
    assert repair_jsonl_tail(path) is True
    append_jsonl(path, [{"a": 3}])
    assert read_jsonl(path) == [{"a": 1}, {"a": 2}, {"a": 3}]
    assert repair_jsonl_tail(path) is False


def test_a_resumed_stage_reads_what_is_kept_and_appends_cleanly(tmp_path):
    path = tmp_path / "x.jsonl"
    assert read_jsonl_for_resume(path) == [] and not path.exists()
    append_jsonl(path, [{"a": 1}])
    with open(path, "a") as handle:
        handle.write('{"a": 2')  # a crash mid-append
    assert read_jsonl_for_resume(path) == [{"a": 1}]
    append_jsonl(path, [{"a": 2}])
    assert read_jsonl(path, skip_partial_tail=False) == [{"a": 1}, {"a": 2}]


def test_a_bad_line_in_the_middle_is_an_error_with_its_line_number(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\nnot json\n{"a": 2}\n')
    with pytest.raises(JsonlFormatError, match=":2:"):
        read_jsonl(path)


def test_atomic_json_and_hashes(tmp_path):
    path = atomic_write_json(tmp_path / "sub" / "card.json", {"b": 1, "a": [1, 2]})
    assert read_json(path) == {"b": 1, "a": [1, 2]}
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]
    assert sha256_json({"a": 1, "b": 2}) == sha256_json({"b": 2, "a": 1})
    assert len(sha256_file(path)) == 64
    assert derive_seed(0, "s1") == derive_seed(0, "s1") != derive_seed(0, "s2")


def test_scenario_and_persona_loaders_validate(tmp_path):
    scenarios = tmp_path / "s.jsonl"
    scenarios.write_text(
        json.dumps({"scenario_id": "a", "prompt": "p", "split": "train", "risk_level": "high", "topics": ["x"]}) + "\n"
        + json.dumps({"scenario_id": "b", "prompt": "q", "split": "test"}) + "\n"
    )
    assert [s.scenario_id for s in load_scenarios(scenarios, split="test")] == ["b"]
    assert load_scenarios(scenarios)[0].risk_level == "high"
    scenarios.write_text(json.dumps({"scenario_id": "a", "prompt": "p", "risk_level": "extreme"}) + "\n")
    with pytest.raises(JsonlFormatError, match="risk_level"):
        load_scenarios(scenarios)
    personas = tmp_path / "p.jsonl"
    personas.write_text(json.dumps({"persona_id": "p1", "text": "t", "weights": {"empathy": 5}}) + "\n" * 2)
    assert load_personas(personas)[0].weights == {"empathy": 5.0}
    personas.write_text(json.dumps({"persona_id": "p1", "text": "t"}) + "\n" + json.dumps({"persona_id": "p1", "text": "u"}) + "\n")
    with pytest.raises(JsonlFormatError, match="duplicate"):
        load_personas(personas)


@dataclass
class _Inner:
    name: str
    weight: float = 1.0


@dataclass
class _Outer:
    path: str
    items: list[_Inner] = field(default_factory=list)
    limit: int | None = None
    flags: dict[str, bool] = field(default_factory=dict)


def test_dataclass_from_dict_nested_and_strict():
    config = dataclass_from_dict(_Outer, {"path": "x", "items": [{"name": "a", "weight": 2}], "limit": 3})
    assert config.items[0].weight == 2.0 and isinstance(config.items[0].weight, float)
    with pytest.raises(PipelineConfigError, match=r"config: unknown key 'lmit'; allowed: path, items, limit, flags"):
        dataclass_from_dict(_Outer, {"path": "x", "lmit": 3})
    with pytest.raises(PipelineConfigError, match=r"missing required key 'path'"):
        dataclass_from_dict(_Outer, {})
    with pytest.raises(PipelineConfigError, match=r"config.items\[0\]: unknown key 'colour'"):
        dataclass_from_dict(_Outer, {"path": "x", "items": [{"name": "a", "colour": 1}]})
    with pytest.raises(PipelineConfigError, match=r"config.limit: expected an integer"):
        dataclass_from_dict(_Outer, {"path": "x", "limit": "3"})


def test_personas_for_scenario_is_a_seeded_sample_in_file_order_and_independent_per_purpose():
    personas = [Persona(f"p{i}", f"persona {i}", "train", {}) for i in range(20)]
    labeling = personas_for_scenario("s1", personas, 5, 0, purpose="personas")
    assert labeling == personas_for_scenario("s1", personas, 5, 0, purpose="personas")
    assert len(labeling) == 5 and labeling == sorted(labeling, key=personas.index)
    draws = {tuple(p.persona_id for p in personas_for_scenario("s1", personas, 5, 0, purpose=purpose))
             for purpose in ("personas", "eval-personas")}
    assert len(draws) == 2, "labeling and evaluation draw their judges independently"
    assert personas_for_scenario("s1", personas, None, 0, purpose="personas") == personas
    assert personas_for_scenario("s1", personas, 50, 0, purpose="personas") == personas
