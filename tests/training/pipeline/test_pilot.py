"""The step pilot on tiny models: held-out scenarios, every checkpoint kept and judged against base, the suggestion."""
from __future__ import annotations

import json

import pytest
import torch

from training.pipeline.io import read_jsonl
from training.pipeline.pilot import StepPilotConfig, format_pilot_table, run_step_pilot, suggest_steps
from training.pipeline.policies.common import COMPLETE_MARKER, list_checkpoints, load_policy_model
from training.pipeline.policies.sft import SFTConfig, train_sft

from .conftest import PREFERENCE_ROWS
from .policy_configs import config_for


def _write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return str(path)


def _policy(tiny_lm_dir, out, **overrides):
    return config_for(tiny_lm_dir, out, **{"max_steps": 1, "save_steps": 1, **overrides})


def test_the_pilot_judges_every_checkpoint_against_base_on_held_out_scenarios(tiny_lm_dir, preference_dataset_dir, tmp_path):
    from datasets import load_from_disk

    from training.pipeline.rewards import split_by_scenario

    sft = train_sft(SFTConfig(**vars(_policy(tiny_lm_dir, tmp_path / "sft")), dataset_dir=preference_dataset_dir,
                              criterion="empathy"))
    scenarios = _write(tmp_path / "scenarios.jsonl", [{"scenario_id": sid, "prompt": prompt, "split": "train"}
                                                      for sid, prompt, _, _ in PREFERENCE_ROWS]
                       + [{"scenario_id": "test0", "prompt": "a test scenario", "split": "test"}])
    personas = _write(tmp_path / "personas.jsonl", [{"persona_id": "tr1", "text": "a", "split": "train"},
                                                    {"persona_id": "tr2", "text": "b", "split": "train"},
                                                    {"persona_id": "te1", "text": "c", "split": "test"}])
    out = tmp_path / "pilot"
    pilot = run_step_pilot(StepPilotConfig(
        dataset_dir=str(preference_dataset_dir), criterion="empathy", scenarios_path=scenarios, personas_path=personas,
        output_dir=str(out), policy=_policy(tiny_lm_dir, tmp_path / "ignored", base_adapter=sft.adapter_dir),
        base_model=str(tiny_lm_dir), judge={"backend": "rubric"}, steps=[3, 2], validation_fraction=0.34, split_seed=0,
        max_new_tokens=6, bootstrap_samples=50,
    ))

    # The reward model's held-out scenarios (same fraction and seed); DPO never trained on them.
    _, held = split_by_scenario(load_from_disk(str(preference_dataset_dir))["empathy"], 0.34, 0)
    held_out = sorted(set(held["scenario_id"]))
    assert pilot["held_out_scenarios"] == held_out and len(held_out) == 2
    trained_on = set(load_from_disk(str(out / "train_pairs"))["empathy"]["scenario_id"])
    assert trained_on and not trained_on & set(held_out) and pilot["train_pairs"] == 6 - 2

    # One run of max(steps), a checkpoint every gcd(steps), all kept.
    checkpoints = list_checkpoints(out / "dpo" / "checkpoints")
    assert [(step, complete) for step, _, complete in checkpoints] == [(1, True), (2, True), (3, True)]
    assert all((path / COMPLETE_MARKER).is_file() for _, path, _ in checkpoints)

    # The last checkpoint's policy is the finished adapter on the SFT-merged base; the earlier one differs.
    ids = torch.tensor([[1, 2, 3, 4]])
    with torch.no_grad():
        last = load_policy_model(out / "policies" / "dpo-3")[0](ids).logits
        final = load_policy_model(out / "dpo" / "adapter")[0](ids).logits
        earlier = load_policy_model(out / "policies" / "dpo-2")[0](ids).logits
    assert torch.allclose(last, final, atol=1e-6)
    assert not torch.allclose(earlier, last, atol=1e-6)

    # Judged on the held-out scenarios only, by training personas only; every row against base, with its counts.
    decisions = read_jsonl(out / "evaluation" / "judge_decisions.jsonl")
    assert {d["scenario_id"] for d in decisions} == set(held_out)
    assert {p for d in decisions for p in d["votes"]} <= {"tr1", "tr2"}
    assert [row["model"] for row in pilot["rows"]] == ["sft", "dpo-2", "dpo-3"]
    assert [row["steps"] for row in pilot["rows"]] == [0, 2, 3]
    assert pilot["criteria"] == ["empathy", "safety", "overall"]
    for row in pilot["rows"]:
        for criterion in pilot["criteria"]:
            entry = row["against_base"][criterion]
            base_side = [d for d in decisions if d["model_a"] == row["model"] and d["model_b"] == "base"
                         and d["criterion"] == criterion]
            assert entry["wins"] == sum(d["majority"] == "a" for d in base_side)
            assert entry["losses"] == sum(d["majority"] == "b" for d in base_side)
            assert entry["wins"] + entry["losses"] + entry["ties"] == entry["decisions"] == 2
            assert entry["win_rate"] == pytest.approx(entry["wins"] / 2)
            assert entry["interval"] is not None and 0 <= entry["interval"][0] <= entry["interval"][1] <= 1
    assert pilot["suggestion"]["steps"] in (2, 3)
    assert json.loads((out / "pilot.json").read_text())["rows"] == pilot["rows"]
    text = format_pilot_table(pilot)
    assert "dpo-2" in text and "Suggested policy_max_steps" in text and "[" in text


def _row(steps, rate, interval):
    return {"model": f"dpo-{steps}", "steps": steps,
            "against_base": {"empathy": {"win_rate": rate, "interval": interval}}}


def test_the_suggestion_is_the_fewest_steps_that_reach_the_best_ones_interval():
    rows = [{"model": "sft", "steps": 0, "against_base": {"empathy": {"win_rate": 0.9, "interval": [0.8, 1.0]}}},
            _row(10, 0.50, [0.30, 0.70]), _row(20, 0.70, [0.50, 0.85]), _row(40, 0.75, [0.60, 0.90]),
            _row(80, 0.72, [0.55, 0.88])]
    suggestion = suggest_steps(rows, "empathy")  # the SFT row is not a candidate, however high
    assert suggestion["steps"] == 20 and suggestion["best_steps"] == 40 and suggestion["threshold"] == 0.60
    assert suggestion["more_may_help"] is False

    rising = [_row(10, 0.3, [0.1, 0.5]), _row(20, 0.5, [0.3, 0.7]), _row(40, 0.6, [0.4, 0.8]), _row(80, 0.9, [0.8, 0.97])]
    suggestion = suggest_steps(rising, "empathy")
    assert suggestion["steps"] == 80 and suggestion["more_may_help"] is True
    assert "more steps may still help" in suggestion["reason"]

    assert suggest_steps([_row(10, None, None)], "empathy")["steps"] is None


@pytest.mark.parametrize("overrides, message", [
    ({"steps": [0, 10]}, "steps must be whole numbers"),
    ({"steps": [10, 10]}, "must not repeat"),
    ({"steps": []}, "steps must be whole numbers"),
    ({"validation_fraction": 0.0}, "held-out scenarios"),
])
def test_bad_pilot_settings_are_refused(overrides, message, tmp_path):
    values = dict(dataset_dir="d", criterion="empathy", scenarios_path="s", personas_path="p", output_dir=str(tmp_path),
                  policy=None, base_model="m", judge={"backend": "rubric"})
    with pytest.raises(ValueError, match=message):
        StepPilotConfig(**{**values, **overrides})
