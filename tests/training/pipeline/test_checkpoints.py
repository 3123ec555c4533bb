"""Checkpoint markers carry a manifest; a damaged checkpoint is set aside and training
resumes from the newest one that verifies, or from scratch (tiny SFT runs)."""
from __future__ import annotations

import json

import pytest

from training.pipeline.policies.common import (
    COMPLETE_MARKER,
    DAMAGE_NOTE,
    DAMAGED_CHECKPOINTS_DIR,
    checkpoint_damage,
    checkpointed_training_arguments,
    damaged_checkpoints,
    find_resumable_checkpoint,
    list_checkpoints,
)
from training.pipeline.policies.sft import SFTConfig, train_sft

from .damage import damage_cases, private_copy, truncate
from .policy_configs import config_for


def test_every_trainer_saves_resumable_checkpoints_and_overrides_cannot_undo_that(tmp_path):
    """Policies and reward models build their TrainingArguments through one function."""
    from types import SimpleNamespace

    config = SimpleNamespace(max_steps=0, batch_size=3, learning_rate=1e-3, gradient_accumulation_steps=2, warmup_steps=1,
                             save_steps=4, seed=7, bf16=None, trainer_overrides={"logging_steps": 5})
    args = checkpointed_training_arguments(config, checkpoint_dir=tmp_path / "ck", epochs=2.0, logging_steps=1)
    assert (args["output_dir"], args["max_steps"], args["num_train_epochs"]) == (str(tmp_path / "ck"), -1, 2.0)
    assert (args["per_device_train_batch_size"], args["seed"], args["learning_rate"], args["logging_steps"]) == (3, 7, 1e-3, 5)
    assert (args["save_strategy"], args["save_steps"], args["save_only_model"], args["report_to"]) == ("steps", 4, False, "none")
    config.trainer_overrides = {"save_only_model": True}
    with pytest.raises(ValueError, match="cannot be resumed"):
        checkpointed_training_arguments(config, checkpoint_dir=tmp_path, epochs=1.0)


def sft_config(policy, dataset_dir, criterion):
    return SFTConfig(**vars(policy), dataset_dir=dataset_dir, criterion=criterion)


def losses(result):
    return [entry["loss"] for entry in json.loads(result.log_history_path.read_text()) if "loss" in entry]


@pytest.fixture(scope="module")
def finished_run(tiny_lm_dir, preference_dataset_dir, tmp_path_factory):
    """A completed 4-step SFT run that kept checkpoint-2 and checkpoint-4, both marked complete."""
    result = train_sft(sft_config(config_for(tiny_lm_dir, tmp_path_factory.mktemp("sft") / "run"), preference_dataset_dir, "empathy"))
    assert [(step, complete) for step, _, complete in list_checkpoints(result.checkpoint_dir)] == [(2, True), (4, True)]
    return result


@pytest.fixture
def run_copy(finished_run, tmp_path):
    """A private copy of the finished run's folder, to damage."""
    return private_copy(finished_run.output_dir, tmp_path)


def test_marker_is_a_manifest_of_every_file(finished_run):
    checkpoint = finished_run.checkpoint_dir / "checkpoint-4"
    marker = json.loads((checkpoint / COMPLETE_MARKER).read_text())
    assert marker["step"] == 4
    on_disk = {p.relative_to(checkpoint).as_posix() for p in checkpoint.rglob("*") if p.is_file()} - {COMPLETE_MARKER}
    assert set(marker["files"]) == on_disk
    assert {"adapter_model.safetensors", "optimizer.pt", "trainer_state.json", "scheduler.pt"} <= on_disk
    for name, entry in marker["files"].items():
        assert entry["size"] == (checkpoint / name).stat().st_size and len(entry["sha256"]) == 64
    assert checkpoint_damage(checkpoint) == []


DAMAGE = damage_cases("adapter_model.safetensors", "adapter")


@pytest.mark.parametrize("case", list(DAMAGE))
def test_each_damaged_file_is_named_and_the_checkpoint_set_aside(run_copy, case, caplog):
    name, damage = DAMAGE[case]
    checkpoints = run_copy / "checkpoints"
    damage(checkpoints / "checkpoint-4" / name)
    problems = checkpoint_damage(checkpoints / "checkpoint-4")
    assert len(problems) == 1 and problems[0].startswith(f"{name}:")

    with caplog.at_level("ERROR"):
        assert find_resumable_checkpoint(checkpoints, verify=True) == checkpoints / "checkpoint-2"
    assert not (checkpoints / "checkpoint-4").exists()
    (aside,) = (run_copy / DAMAGED_CHECKPOINTS_DIR).iterdir()
    assert aside.name.startswith("checkpoint-4.damaged-")
    assert (aside / "optimizer.pt").exists() or name == "optimizer.pt"  # kept, not deleted
    assert name in (aside / DAMAGE_NOTE).read_text()
    assert list(damaged_checkpoints(checkpoints)) == [aside.name]
    message = caplog.text
    assert "checkpoint-4" in message and name in message


def test_without_verification_the_damage_goes_unnoticed(run_copy):
    # The check above is what finds the damage: the marker alone still points at the damaged one.
    checkpoints = run_copy / "checkpoints"
    truncate(checkpoints / "checkpoint-4" / "optimizer.pt")
    assert find_resumable_checkpoint(checkpoints) == checkpoints / "checkpoint-4"


def test_a_marker_from_before_manifests_is_trusted(run_copy):
    checkpoint = run_copy / "checkpoints" / "checkpoint-4"
    (checkpoint / COMPLETE_MARKER).write_text("4")
    assert checkpoint_damage(checkpoint) == []
    assert find_resumable_checkpoint(run_copy / "checkpoints", verify=True) == checkpoint


def test_an_unreadable_marker_counts_as_damage(run_copy):
    checkpoint = run_copy / "checkpoints" / "checkpoint-4"
    (checkpoint / COMPLETE_MARKER).write_text('{"step": 4, "fi')
    assert checkpoint_damage(checkpoint)[0].startswith(f"{COMPLETE_MARKER}:")


def test_training_resumes_from_the_newest_checkpoint_that_verifies(finished_run, run_copy, tiny_lm_dir,
                                                                   preference_dataset_dir):
    truncate(run_copy / "checkpoints" / "checkpoint-4" / "adapter_model.safetensors")
    resumed = train_sft(sft_config(config_for(tiny_lm_dir, run_copy), preference_dataset_dir, "empathy"))
    assert resumed.resumed_from == run_copy / "checkpoints" / "checkpoint-2"
    assert resumed.completed and resumed.metrics["global_step"] == 4
    assert losses(resumed) == pytest.approx(losses(finished_run), abs=1e-5)
    assert checkpoint_damage(run_copy / "checkpoints" / "checkpoint-4") == []  # saved afresh
    assert len(damaged_checkpoints(run_copy / "checkpoints")) == 1


def test_training_starts_over_when_no_checkpoint_verifies(finished_run, run_copy, tiny_lm_dir, preference_dataset_dir):
    truncate(run_copy / "checkpoints" / "checkpoint-4" / "trainer_state.json")
    (run_copy / "checkpoints" / "checkpoint-2" / "optimizer.pt").unlink()
    result = train_sft(sft_config(config_for(tiny_lm_dir, run_copy), preference_dataset_dir, "empathy"))
    assert result.resumed_from is None
    assert result.completed and result.metrics["global_step"] == 4
    assert losses(result) == pytest.approx(losses(finished_run), abs=1e-5)
    assert sorted(name.split(".")[0] for name in damaged_checkpoints(run_copy / "checkpoints")) == [
        "checkpoint-2", "checkpoint-4"]
