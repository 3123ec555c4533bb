from __future__ import annotations

import json
import shutil

import pytest
import torch

from training.pipeline.control import RunControl
from training.pipeline.models import load_causal_lm
from training.pipeline.policies.common import (
    COMPLETE_MARKER,
    PolicyConfig,
    attach_lora,
    find_resumable_checkpoint,
    list_checkpoints,
)
from training.pipeline.policies.dpo import DPOConfig, train_dpo
from training.pipeline.policies.sft import SFTConfig, train_sft

from .policy_configs import config_for


def sft_config(policy, dataset_dir, criterion):
    return SFTConfig(**vars(policy), dataset_dir=dataset_dir, criterion=criterion)


def dpo_config(policy, dataset_dir, criterion):
    return DPOConfig(**vars(policy), dataset_dir=dataset_dir, criterion=criterion)


def prompt_token_lengths(tiny_lm_dir, dataset_dir, criterion):
    """The criterion's prompts' lengths in tokens as the trainers see them (chat template, generation prompt), sorted."""
    from datasets import load_from_disk

    from training.pipeline.models import load_tokenizer
    from training.pipeline.policies.common import prompt_messages

    tokenizer = load_tokenizer(tiny_lm_dir)
    prompts = load_from_disk(str(dataset_dir))[criterion]["prompt"]
    return sorted(
        len(tokenizer(tokenizer.apply_chat_template(prompt_messages(p), tokenize=False, add_generation_prompt=True),
                      add_special_tokens=False).input_ids)
        for p in prompts
    )


def test_sft_trains_an_adapter_on_chosen_responses(tiny_lm_dir, preference_dataset_dir, tmp_path):
    steps = []
    config = sft_config(config_for(tiny_lm_dir, tmp_path / "sft"), preference_dataset_dir, "empathy")
    result = train_sft(config, RunControl(on_progress=lambda s, t, loss: steps.append((s, t, loss))))
    assert result.completed and result.metrics["global_step"] == 4
    assert (result.adapter_dir / "adapter_config.json").is_file()
    assert [s for s, _, _ in steps] == [1, 2, 3, 4] and all(t == 4 for _, t, _ in steps)
    model = load_causal_lm(tiny_lm_dir, adapter=result.adapter_dir)
    assert any("lora_A" in name for name, _ in model.named_parameters())
    record = json.loads((result.output_dir / "policy.json").read_text())
    assert record["method"] == "sft" and record["config"]["lora_rank"] == 4


def test_dpo_on_top_of_sft_uses_the_merged_base(tiny_lm_dir, preference_dataset_dir, tmp_path):
    sft = train_sft(sft_config(config_for(tiny_lm_dir, tmp_path / "sft", max_steps=2), preference_dataset_dir, "empathy"))
    config = config_for(tiny_lm_dir, tmp_path / "dpo", base_adapter=sft.adapter_dir, max_steps=2)
    result = train_dpo(dpo_config(config, preference_dataset_dir, "empathy"))
    assert result.completed and result.metrics["global_step"] == 2
    history = json.loads(result.log_history_path.read_text())
    first = next(entry for entry in history if "loss" in entry)
    # At step 1 the policy is the reference (fresh adapter on the SFT-merged base): DPO loss is log 2.
    assert first["loss"] == pytest.approx(0.6931, abs=1e-3)

    # Loading the DPO adapter puts it back on the SFT-merged base it was trained on.
    from peft import PeftModel

    from training.pipeline.policies.common import load_policy_model

    policy, tokenizer = load_policy_model(result.adapter_dir)
    manual = PeftModel.from_pretrained(load_causal_lm(tiny_lm_dir), str(sft.adapter_dir)).merge_and_unload()
    manual = PeftModel.from_pretrained(manual, str(result.adapter_dir))
    ids = tokenizer("I feel low today.", return_tensors="pt").input_ids
    with torch.no_grad():
        assert torch.allclose(policy(ids).logits, manual(ids).logits, atol=1e-5)
        assert not torch.allclose(policy(ids).logits, load_causal_lm(tiny_lm_dir)(ids).logits, atol=1e-3)


def test_adapters_share_their_initialisation_whatever_the_training_seed(tiny_lm_dir, tmp_path):
    a = attach_lora(load_causal_lm(tiny_lm_dir), config_for(tiny_lm_dir, tmp_path, seed=1))
    torch.manual_seed(999)  # the global RNG state must not matter either
    b = attach_lora(load_causal_lm(tiny_lm_dir), config_for(tiny_lm_dir, tmp_path, seed=2))
    a_params = {n: p for n, p in a.named_parameters() if "lora_A" in n}
    b_params = {n: p for n, p in b.named_parameters() if "lora_A" in n}
    assert a_params and all(torch.equal(a_params[n], b_params[n]) for n in a_params)
    c = attach_lora(load_causal_lm(tiny_lm_dir), config_for(tiny_lm_dir, tmp_path, lora_init_seed=5))
    c_params = {n: p for n, p in c.named_parameters() if "lora_A" in n}
    assert not all(torch.equal(a_params[n], c_params[n]) for n in a_params)


def test_dot_in_adapter_name_is_refused(tiny_lm_dir, tmp_path):
    with pytest.raises(ValueError, match="'.'"):
        attach_lora(load_causal_lm(tiny_lm_dir), config_for(tiny_lm_dir, tmp_path), adapter_name="dpo.v1")


def test_interrupted_dpo_resumes_from_newest_complete_checkpoint(tiny_lm_dir, preference_dataset_dir, tmp_path):
    reference = train_dpo(dpo_config(config_for(tiny_lm_dir, tmp_path / "straight"), preference_dataset_dir, "empathy"))

    out = tmp_path / "interrupted"
    calls = []

    def stop_at_second_step():  # asked once per step; the orchestration layer would read a job flag
        calls.append(1)
        return len(calls) >= 2

    first = train_dpo(dpo_config(config_for(tiny_lm_dir, out), preference_dataset_dir, "empathy"),
                      RunControl(stop_check=stop_at_second_step))
    assert not first.completed and first.adapter_dir is None
    assert first.metrics["global_step"] == 2
    assert [(step, complete) for step, _, complete in list_checkpoints(out / "checkpoints")] == [(2, True)]

    # A checkpoint that was being written when the job died: newer, but without the marker.
    broken = out / "checkpoints" / "checkpoint-3"
    shutil.copytree(out / "checkpoints" / "checkpoint-2", broken)
    (broken / COMPLETE_MARKER).unlink()
    (broken / "optimizer.pt").write_bytes(b"truncated")
    assert find_resumable_checkpoint(out / "checkpoints") == out / "checkpoints" / "checkpoint-2"

    resumed = train_dpo(dpo_config(config_for(tiny_lm_dir, out), preference_dataset_dir, "empathy"))
    assert resumed.resumed_from == out / "checkpoints" / "checkpoint-2"
    assert resumed.completed and resumed.metrics["global_step"] == reference.metrics["global_step"] == 4
    assert not broken.exists() or (broken / COMPLETE_MARKER).exists()

    def losses(result):
        return [e["loss"] for e in json.loads(result.log_history_path.read_text()) if "loss" in e]

    # Same data order, optimizer and RNG state after resuming: the same losses as the uninterrupted run.
    assert losses(resumed) == pytest.approx(losses(reference), abs=1e-5)


def test_save_only_model_is_refused(tiny_lm_dir, preference_dataset_dir, tmp_path):
    config = config_for(tiny_lm_dir, tmp_path / "x", trainer_overrides={"save_only_model": True})
    with pytest.raises(ValueError, match="save_only_model"):
        train_dpo(dpo_config(config, preference_dataset_dir, "empathy"))


def test_full_finetune_dpo_saves_a_model(tiny_lm_dir, preference_dataset_dir, tmp_path):
    result = train_dpo(dpo_config(config_for(tiny_lm_dir, tmp_path / "full", full_finetune=True, max_steps=2, learning_rate=1e-3),
                       preference_dataset_dir, "empathy"))
    assert result.completed and result.adapter_dir is None
    assert (result.model_dir / "config.json").is_file()
    assert result.metrics["pairs_used"] == 6 and result.metrics["pairs_dropped_prompt_too_long"] == 0
    trained, base = load_causal_lm(result.model_dir), load_causal_lm(tiny_lm_dir)
    assert not torch.equal(trained.model.layers[0].mlp.up_proj.weight, base.model.layers[0].mlp.up_proj.weight)


def test_pairs_dropped_by_trl_are_counted(tiny_lm_dir, preference_dataset_dir, tmp_path):
    lengths = prompt_token_lengths(tiny_lm_dir, preference_dataset_dir, "empathy")
    max_length = lengths[len(lengths) // 2]  # TRL drops pairs whose prompt alone reaches max_length
    result = train_dpo(dpo_config(config_for(tiny_lm_dir, tmp_path / "short", max_length=max_length, max_steps=1),
                       preference_dataset_dir, "empathy"))
    assert 0 < result.metrics["pairs_dropped_prompt_too_long"] < 6
    assert result.metrics["pairs_used"] + result.metrics["pairs_dropped_prompt_too_long"] == 6


def test_sft_counts_completions_lost_to_max_length(tiny_lm_dir, preference_dataset_dir, tmp_path):
    lengths = prompt_token_lengths(tiny_lm_dir, preference_dataset_dir, "empathy")
    max_length = lengths[len(lengths) // 2]  # half the prompts fill max_length by themselves
    result = train_sft(sft_config(config_for(tiny_lm_dir, tmp_path / "short", max_length=max_length, max_steps=1),
                       preference_dataset_dir, "empathy"))
    dropped = sum(1 for n in lengths if n >= max_length)
    assert result.metrics["completions_dropped"] == dropped and 0 < dropped < 6
    assert dropped <= result.metrics["completions_truncated"] <= 6
    roomy = train_sft(sft_config(config_for(tiny_lm_dir, tmp_path / "roomy", max_length=4096, max_steps=1),
                      preference_dataset_dir, "empathy"))
    assert roomy.metrics["completions_truncated"] == 0 and roomy.metrics["completions_dropped"] == 0


@pytest.mark.slow
def test_dpo_step_on_the_default_policy_model(preference_dataset_dir, tmp_path):
    config = PolicyConfig(output_dir=tmp_path / "dpo", base_model="smollm2-135m-instruct", lora_rank=4, lora_alpha=8,
                          max_steps=1, batch_size=1, max_length=128, save_steps=100)
    result = train_dpo(dpo_config(config, preference_dataset_dir, "empathy"))
    assert result.completed and (result.adapter_dir / "adapter_config.json").is_file()
    assert json.loads((result.adapter_dir / "attune_policy.json").read_text())["base_model_dir"].endswith(
        "smollm2-135m-instruct")


def test_sft_trains_a_cut_reply_without_an_end_of_turn(tiny_lm_dir, tmp_path):
    """A chosen reply cut by max_new_tokens (it stops mid-sentence) must not teach the model to end its turn there."""
    from datasets import Dataset, DatasetDict

    from training.pipeline.policies.sft import build_sft_trainer, chosen_as_chat, completion_truncation

    pairs = Dataset.from_list([
        {"prompt": "I feel low today.", "chosen": "That sounds hard. I am here with you.", "rejected": "ok"},
        {"prompt": "I feel low today.", "chosen": "That sounds hard, and I wonder whether you", "rejected": "ok"},
    ])
    rows = chosen_as_chat(pairs, "Be kind.")
    assert rows["finished"] == [True, False]
    DatasetDict({"empathy": pairs}).save_to_disk(str(tmp_path / "prefs"))
    config = sft_config(config_for(tiny_lm_dir, tmp_path / "sft", system_prompt="Be kind."), tmp_path / "prefs", "empathy")
    trainer = build_sft_trainer(config).trainer
    tokenizer = trainer.processing_class
    trained = []
    for example in trainer.train_dataset:
        labelled = [t for t, label in zip(example["input_ids"], example["labels"]) if label != -100]
        assert labelled == example["input_ids"][-len(labelled):]  # the loss covers the reply, at the end
        trained.append(tokenizer.decode(labelled))
    assert trained[0].strip() == "That sounds hard. I am here with you.<|im_end|>"
    assert trained[1].strip() == "That sounds hard, and I wonder whether you"  # nothing after it: no end of turn
    assert completion_truncation(tokenizer, rows, 4096)["completions_cut"] == 1
