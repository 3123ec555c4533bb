"""Labeling: personas x scenarios through a judge; shown order recorded and undone; resumable; invalid counted."""
from __future__ import annotations

import json
import re

import pytest

from training.pipeline.control import RunControl
from training.pipeline.io import PipelineConfigError, read_json, read_jsonl
from training.pipeline.judges.loopback import LoopbackChatServer, ordered_ranking_reply, prompt_labels_and_keys
from training.pipeline.labeling import LabelingConfig, run_labeling, sidecar_paths


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


@pytest.fixture
def inputs(tmp_path):
    scenarios = _write(tmp_path / "s.jsonl", [
        {"scenario_id": f"s{i}", "prompt": f"scenario {i}: I feel alone.", "split": "train" if i < 3 else "test",
         "risk_level": "high" if i == 0 else "none"} for i in range(4)
    ])
    candidates = _write(tmp_path / "c.jsonl", [
        {"scenario_id": f"s{i}", "prompt": f"scenario {i}: I feel alone.", "model": "m", "generation": {},
         "responses": [f"reply number {j}" for j in range(5)]} for i in range(4)
    ])
    personas = _write(tmp_path / "p.jsonl", [
        {"persona_id": f"p{i}", "text": f"persona {i}", "split": "train" if i < 4 else "test"} for i in range(5)
    ])
    return dict(candidates_path=candidates, scenarios_path=scenarios, personas_path=personas)


def _by_reply_number(payload):
    """Ranks shown replies by the number in their text, so the true order in original indices is 0..4."""
    text = payload["messages"][1]["content"]
    labels, keys = prompt_labels_and_keys(payload)
    numbers = {m.group(1): int(m.group(2)) for m in re.finditer(r"Response ([A-Z]):\n<<<\nreply number (\d+)", text)}
    order = sorted(labels, key=lambda label: numbers[label])
    return json.dumps({key: order for key in keys})


def test_http_labels_map_shown_order_back(inputs, tmp_path):
    with LoopbackChatServer(_by_reply_number) as server:
        judge = {"backend": "http", "base_url": server.url, "model": "m", "api_key_env": None,
                 "cache_path": str(tmp_path / "cache.sqlite")}
        result = run_labeling(LabelingConfig(output_path=str(tmp_path / "labels.jsonl"), judge=judge,
                                             criteria=["empathy", "safety"], progress_bar=False, **inputs))
    labels = read_jsonl(result.output_path)
    assert result.total == 12 and result.labeled == 12 and len(labels) == 12  # 3 train scenarios x 4 train personas
    assert {r["persona_id"] for r in labels} == {"p0", "p1", "p2", "p3"}
    assert {r["scenario_id"] for r in labels} == {"s0", "s1", "s2"}
    assert len({tuple(r["shown_order"]) for r in labels}) > 1  # shuffled per persona
    for record in labels:
        assert record["criteria"] == {"empathy": [0, 1, 2, 3, 4], "safety": [0, 1, 2, 3, 4]}
        assert record["judge"]["model"] == "m" and record["judge"]["synthetic"] is False and "seed" in record


def test_invalid_replies_counted_in_sidecar_never_guessed(inputs, tmp_path):
    def invalid_for_one_pair(payload):
        if "persona 1" in payload["messages"][0]["content"] and "scenario 2:" in payload["messages"][1]["content"]:
            return "I think A is best"
        return ordered_ranking_reply(payload)

    with LoopbackChatServer(invalid_for_one_pair) as server:
        judge = {"backend": "http", "base_url": server.url, "model": "m", "api_key_env": None, "invalid_reply_retries": 1,
                 "cache_path": str(tmp_path / "cache.sqlite")}
        config = LabelingConfig(output_path=str(tmp_path / "labels.jsonl"), judge=judge, criteria=["empathy"],
                                progress_bar=False, **inputs)
        result = run_labeling(config)
        assert result.rejected == 1 and result.labeled == 11
        rejected_path, summary_path = sidecar_paths(result.output_path)
        summary = read_json(summary_path)
        assert summary["rejected"] == 1 and summary["labels"] == 11 and summary["complete"] is True
        assert "invalid reply after 2 attempts" in read_jsonl(rejected_path)[0]["error"]
        requests = server.requests
        again = run_labeling(config)  # nothing left to do; the rejected pair is not retried
        assert again.labeled == 0 and again.skipped == 12 and server.requests == requests


def test_rubric_labels_resume_after_interrupt(inputs, tmp_path):
    output = tmp_path / "labels.jsonl"
    config = LabelingConfig(output_path=str(output), judge={"backend": "rubric"}, chunk_size=5, progress_bar=False, **inputs)
    checks = {"n": 0}

    def stop_after_one_chunk():
        checks["n"] += 1
        return checks["n"] > 1

    first = run_labeling(config, RunControl(stop_check=stop_after_one_chunk))
    assert first.stopped and first.labeled == 5
    progress = []
    second = run_labeling(config, RunControl(on_progress=lambda d, t, loss: progress.append((d, t))))
    assert second.skipped == 5 and second.labeled == 7 and not second.stopped
    labels = read_jsonl(output)
    assert len({(r["persona_id"], r["scenario_id"]) for r in labels}) == 12
    assert progress[-1] == (12, 12)
    assert labels[0]["judge"]["synthetic"] is True
    assert read_json(sidecar_paths(output)[1])["synthetic"] is True
    # Same labels as an uninterrupted run.
    whole = run_labeling(LabelingConfig(output_path=str(tmp_path / "whole.jsonl"), judge={"backend": "rubric"},
                                        progress_bar=False, **inputs))
    key = lambda r: (r["persona_id"], r["scenario_id"])  # noqa: E731
    assert sorted(labels, key=key) == sorted(read_jsonl(whole.output_path), key=key)


def test_personas_per_scenario_and_judge_mismatch(inputs, tmp_path):
    output = tmp_path / "labels.jsonl"
    result = run_labeling(LabelingConfig(output_path=str(output), judge={"backend": "rubric"}, personas_per_scenario=2,
                                         progress_bar=False, **inputs))
    labels = read_jsonl(output)
    assert result.total == 6 and all(sum(1 for r in labels if r["scenario_id"] == s) == 2 for s in ("s0", "s1", "s2"))
    with pytest.raises(PipelineConfigError, match="another judge"):
        run_labeling(LabelingConfig(output_path=str(output), judge={"backend": "rubric", "persona_noise": 0.1},
                                    personas_per_scenario=2, progress_bar=False, **inputs))
