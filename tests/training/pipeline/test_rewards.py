from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.pipeline import rewards
from training.pipeline.control import RunControl
from training.pipeline.rewards import (
    MarginsConfig,
    RewardModelConfig,
    RewardScorer,
    compute_margins,
    format_reward_input,
    train_reward_model,
)

from .damage import damage_cases, private_copy, truncate


@pytest.fixture(scope="module")
def trained_rm(tiny_classifier_dir, preference_dataset_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("rm_empathy")
    config = RewardModelConfig(
        dataset_dir=preference_dataset_dir,
        criterion="empathy",
        output_dir=out,
        backbone=str(tiny_classifier_dir),
        max_length=24,  # short enough that some pairs are truncated, not dropped
        max_steps=6,
        learning_rate=5e-3,
        batch_size=2,
        validation_fraction=0.34,
        save_steps=3,
    )
    return train_reward_model(config, RunControl(
        on_progress=lambda step, total, loss: REPORTED["progress"].append((step, total)),
        on_metrics=lambda step, logs: REPORTED["metrics"].append((step, sorted(logs))),
    ))


REPORTED = {"progress": [], "metrics": []}


def margins_config(dataset_dir, primary, weights, reward_model_dirs, output_dir):
    return MarginsConfig(dataset_dir=dataset_dir, primary=primary, weights=weights,
                         reward_model_dirs=reward_model_dirs, output_dir=output_dir)


def test_reward_model_training_reports_its_steps_and_metrics(trained_rm):
    """Through the same progress and metrics hooks as the policies (so its job shows "3 of 6", not "0 of 0")."""
    assert REPORTED["progress"] == [(step, 6) for step in range(1, 7)]
    assert [step for step, _ in REPORTED["metrics"]][:6] == [1, 2, 3, 4, 5, 6]
    assert "loss" in REPORTED["metrics"][0][1]


def test_reward_model_trains_and_stores_its_scale(trained_rm):
    out = trained_rm.output_dir
    scale = json.loads((out / "reward_scale.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    assert scale["std"] > 0 and scale["n_scores"] == 2 * trained_rm.train_pairs
    assert trained_rm.train_pairs == 4 and trained_rm.validation_pairs == 2  # whole scenarios held out
    assert metrics["validation_accuracy"] is not None and 0.0 <= metrics["validation_accuracy"] <= 1.0
    # Two held-out pairs: the accuracy comes with its count, a wide Wilson interval and a warning.
    assert metrics["validation_correct"] == round(2 * metrics["validation_accuracy"])
    low, high = metrics["validation_accuracy_interval"]
    assert low <= metrics["validation_accuracy"] <= high and high - low > 0.5
    assert "too few" in metrics["validation_warning"] and trained_rm.validation_warning == metrics["validation_warning"]
    assert metrics["truncated_pairs"] > 0  # counted, and the pairs still trained (train_pairs above)
    assert metrics["steps"] == 6
    assert not (out / "checkpoints").exists()


def test_scorer_standardises_with_the_stored_scale(trained_rm, preference_dataset_dir):
    from datasets import load_from_disk

    pairs = load_from_disk(str(preference_dataset_dir))["empathy"]
    scorer = RewardScorer.load(trained_rm.output_dir)
    raw = scorer.score(pairs["prompt"], pairs["chosen"], standardised=False, batch_size=4)
    std = scorer.score(pairs["prompt"], pairs["chosen"], standardised=True, batch_size=4)
    for r, s in zip(raw, std):
        assert s == pytest.approx((r - trained_rm.scale_mean) / trained_rm.scale_std, abs=1e-6)
    # Batching and ordering do not change scores.
    one_by_one = [scorer.score([p], [c], standardised=False)[0] for p, c in zip(pairs["prompt"], pairs["chosen"])]
    assert one_by_one == pytest.approx(raw, abs=1e-5)


def test_training_scale_is_standard_on_training_pairs(trained_rm, preference_dataset_dir):
    from datasets import load_from_disk

    pairs = load_from_disk(str(preference_dataset_dir))["empathy"]
    train_pairs, _ = rewards.split_by_scenario(pairs, 0.34, 0)
    scorer = RewardScorer.load(trained_rm.output_dir)
    scores = scorer.score(train_pairs["prompt"], train_pairs["chosen"]) + scorer.score(
        train_pairs["prompt"], train_pairs["rejected"]
    )
    mean = sum(scores) / len(scores)
    assert mean == pytest.approx(0.0, abs=1e-5)


def test_training_and_scoring_share_the_formatting_function(tiny_classifier_dir, preference_dataset_dir, tmp_path,
                                                            monkeypatch):
    calls: list[tuple[str, str]] = []
    original = rewards.format_reward_input

    def spy(prompt, response):
        calls.append((prompt, response))
        return original(prompt, response)

    monkeypatch.setattr(rewards, "format_reward_input", spy)
    config = RewardModelConfig(
        dataset_dir=preference_dataset_dir,
        criterion="safety",
        output_dir=tmp_path / "rm",
        backbone=str(tiny_classifier_dir),
        max_steps=1,
        batch_size=2,
        validation_fraction=0.0,
    )
    train_reward_model(config)
    training_calls = list(calls)
    assert any(response == "Just get over it." for _, response in training_calls)

    calls.clear()
    RewardScorer.load(tmp_path / "rm").score(["a scenario"], ["a reply"])
    assert calls == [("a scenario", "a reply")]


def test_format_keeps_prompt_and_response():
    text = format_reward_input("  I feel low. ", "I hear you.\n")
    assert "I feel low." in text and text.endswith("I hear you.")


class FakeScorer:
    """Scores a response by a fixed table; records whether it was asked for standardised scores."""

    def __init__(self, table):
        self.table = table

    def score(self, prompts, responses, *, standardised=True, batch_size=32):
        assert standardised, "margins must use standardised scores"
        return [self.table.get(r, 0.0) for r in responses]


def test_compute_margins_with_fake_scorers(preference_dataset_dir, tmp_path):
    from datasets import load_from_disk

    pairs = load_from_disk(str(preference_dataset_dir))["empathy"]
    responses = list(pairs["chosen"]) + list(pairs["rejected"])
    safety_table = {r: float(len(r)) / 10 for r in responses}
    autonomy_table = {r: (1.0 if "?" in r else -0.5) for r in responses}
    tables = {Path("/rm/safety"): safety_table, Path("/rm/autonomy"): autonomy_table}
    loaded: list[Path] = []

    def loader(path):
        loaded.append(path)
        return FakeScorer(tables[path])

    weights = {"empathy": 0.5, "safety": 0.3, "autonomy": 0.2}
    dirs = {"safety": Path("/rm/safety"), "autonomy": Path("/rm/autonomy")}
    out = compute_margins(margins_config(preference_dataset_dir, "empathy", weights, dirs, tmp_path / "m"),
                          scorer_loader=loader)

    result = load_from_disk(str(out))
    assert result.column_names[:3] == ["prompt", "chosen", "rejected"]
    for row in result:
        expected_safety = safety_table[row["chosen"]] - safety_table[row["rejected"]]
        expected_autonomy = autonomy_table[row["chosen"]] - autonomy_table[row["rejected"]]
        assert row["reward_delta_safety"] == pytest.approx(expected_safety)
        assert row["margin"] == pytest.approx(0.3 * expected_safety + 0.2 * expected_autonomy)
    assert sorted(loaded) == sorted(dirs.values())

    # Rerun returns the existing result without loading any reward model.
    loaded.clear()
    assert compute_margins(margins_config(preference_dataset_dir, "empathy", weights, dirs, tmp_path / "m"),
                          scorer_loader=loader) == out
    assert loaded == []
    # Different weights for the same output directory are refused rather than silently reused.
    with pytest.raises(ValueError, match="different inputs"):
        compute_margins(margins_config(preference_dataset_dir, "empathy", {**weights, "safety": 0.9}, dirs,
                                       tmp_path / "m"), scorer_loader=loader)


def test_compute_margins_with_tiny_reward_model(trained_rm, preference_dataset_dir, tmp_path):
    from datasets import load_from_disk

    out = compute_margins(margins_config(
        preference_dataset_dir, "safety", {"safety": 1.0, "empathy": 2.0}, {"empathy": trained_rm.output_dir},
        tmp_path / "m",
    ))
    result = load_from_disk(str(out))
    scorer = RewardScorer.load(trained_rm.output_dir)
    good = scorer.score(result["prompt"], result["chosen"])
    bad = scorer.score(result["prompt"], result["rejected"])
    assert result["margin"] == pytest.approx([2.0 * (g - b) for g, b in zip(good, bad)], abs=1e-5)


def test_weight_without_reward_model_is_refused(preference_dataset_dir, tmp_path):
    with pytest.raises(ValueError, match="no reward model"):
        compute_margins(margins_config(preference_dataset_dir, "empathy", {"empathy": 1.0, "safety": 1.0}, {},
                                       tmp_path / "m"))


@pytest.mark.slow
def test_minilm_reward_model_trains_and_scores(preference_dataset_dir, tmp_path):
    result = train_reward_model(RewardModelConfig(
        dataset_dir=preference_dataset_dir, criterion="empathy", output_dir=tmp_path / "rm", backbone="minilm-l6",
        max_steps=2, batch_size=2, validation_fraction=0.34,
    ))
    assert result.scale_std > 0
    scores = RewardScorer.load(result.output_dir).score(["I feel low."], ["I am here for you."])
    assert len(scores) == 1


# --- Damaged checkpoints (as tests/training/pipeline/test_checkpoints.py does for the policies) ---------------------

class _Killed(Exception):
    """Stands in for the worker dying after step 5 (checkpoints 2 and 4 saved and marked)."""


def rm_config(tiny_classifier_dir, preference_dataset_dir, out, **overrides):
    values = dict(dataset_dir=preference_dataset_dir, criterion="empathy", output_dir=out,
                  backbone=str(tiny_classifier_dir), max_length=24, max_steps=6, learning_rate=5e-3, batch_size=2,
                  validation_fraction=0.34, save_steps=2)
    values.update(overrides)
    return RewardModelConfig(**values)


def _die_after_step_5(step, total, loss):
    if step >= 5:
        raise _Killed


@pytest.fixture(scope="module")
def uninterrupted_rm(tiny_classifier_dir, preference_dataset_dir, tmp_path_factory):
    return train_reward_model(rm_config(tiny_classifier_dir, preference_dataset_dir, tmp_path_factory.mktemp("rm_whole")))


@pytest.fixture(scope="module")
def interrupted_rm(tiny_classifier_dir, preference_dataset_dir, tmp_path_factory):
    """A reward-model run killed after step 5: its checkpoints are left as a worker's death leaves them."""
    from training.pipeline.policies.common import list_checkpoints

    out = tmp_path_factory.mktemp("rm_killed") / "run"
    with pytest.raises(_Killed):
        train_reward_model(rm_config(tiny_classifier_dir, preference_dataset_dir, out),
                           RunControl(on_progress=_die_after_step_5))
    assert [(step, complete) for step, _, complete in list_checkpoints(out / "checkpoints")] == [(2, True), (4, True)]
    return out


@pytest.fixture
def rm_copy(interrupted_rm, tmp_path):
    return private_copy(interrupted_rm, tmp_path)


RM_DAMAGE = damage_cases("model.safetensors", "model")


@pytest.mark.parametrize("case", list(RM_DAMAGE))
def test_a_damaged_reward_checkpoint_falls_back_to_the_newest_that_verifies(case, rm_copy, uninterrupted_rm,
                                                                             tiny_classifier_dir, preference_dataset_dir,
                                                                             caplog):
    from training.pipeline.policies.common import DAMAGE_NOTE, DAMAGED_CHECKPOINTS_DIR, damaged_checkpoints

    name, damage = RM_DAMAGE[case]
    damage(rm_copy / "checkpoints" / "checkpoint-4" / name)
    with caplog.at_level("ERROR"):
        resumed = train_reward_model(rm_config(tiny_classifier_dir, preference_dataset_dir, rm_copy))
    assert resumed.metrics["resumed_from"] == str(rm_copy / "checkpoints" / "checkpoint-2")
    assert resumed.metrics["steps"] == 6
    # Resuming from step 2 gives the model the uninterrupted run gave.
    assert resumed.metrics["final_train_loss"] == pytest.approx(uninterrupted_rm.metrics["final_train_loss"], abs=1e-5)
    assert resumed.train_accuracy == uninterrupted_rm.train_accuracy
    assert (rm_copy / "reward_scale.json").is_file()
    (aside,) = damaged_checkpoints(rm_copy / "checkpoints")
    assert aside.startswith("checkpoint-4.damaged-")
    assert name in (rm_copy / DAMAGED_CHECKPOINTS_DIR / aside / DAMAGE_NOTE).read_text()  # kept, with its note
    assert "checkpoint-4" in caplog.text and name in caplog.text


def test_a_reward_model_starts_over_when_no_checkpoint_verifies(rm_copy, uninterrupted_rm, tiny_classifier_dir,
                                                                 preference_dataset_dir):
    from training.pipeline.policies.common import damaged_checkpoints

    truncate(rm_copy / "checkpoints" / "checkpoint-4" / "trainer_state.json")
    (rm_copy / "checkpoints" / "checkpoint-2" / "optimizer.pt").unlink()
    result = train_reward_model(rm_config(tiny_classifier_dir, preference_dataset_dir, rm_copy))
    assert result.metrics["resumed_from"] is None and result.metrics["steps"] == 6
    assert result.metrics["final_train_loss"] == pytest.approx(uninterrupted_rm.metrics["final_train_loss"], abs=1e-5)
    assert sorted(name.split(".")[0] for name in damaged_checkpoints(rm_copy / "checkpoints")) == [
        "checkpoint-2", "checkpoint-4"]
