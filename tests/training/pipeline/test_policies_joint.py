from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from training.pipeline.policies.joint import JointDPOConfig, build_joint_rows, build_joint_trainer, train_joint_dpo

from .policy_configs import config_for

JOINT_RUN = dict(max_steps=2, save_steps=100)  # two steps, no checkpoint on the way


def joint_config(policy, dataset_dir, weights):
    return JointDPOConfig(**vars(policy), dataset_dir=dataset_dir, weights=weights)


def completion_logp(model, prompt_ids, completion_ids):
    """log pi(completion | prompt) from plain logits, one sequence at a time."""
    ids = torch.tensor([prompt_ids + completion_ids])
    logits = model(input_ids=ids).logits[0, :-1].double()
    token_logps = torch.log_softmax(logits, -1).gather(-1, ids[0, 1:].unsqueeze(-1)).squeeze(-1)
    return token_logps[len(prompt_ids) - 1:].sum()


def test_joint_loss_equals_hand_computation(tiny_lm_dir, preference_dataset_dir, tmp_path):
    weights = {"empathy": 0.7, "safety": 0.3}
    setup = build_joint_trainer(joint_config(config_for(tiny_lm_dir, tmp_path / "joint", **JOINT_RUN), preference_dataset_dir,
                                             weights))
    trainer, criteria = setup.trainer, setup.metrics["criteria"]
    assert criteria == ["empathy", "safety"] and setup.metrics["scenarios"] == 6
    generator = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, param in trainer.model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)

    examples = [trainer.train_dataset[i] for i in range(3)]
    loss = trainer.compute_loss(trainer.model, trainer.data_collator(examples))

    beta = 0.1
    per_scenario = []
    with torch.no_grad():
        for example in examples:
            total = torch.tensor(0.0, dtype=torch.float64)
            for c, criterion in enumerate(criteria):
                prompt = example["prompt_ids"]
                pol_w = completion_logp(trainer.model, prompt, example["chosen_ids"][c])
                pol_l = completion_logp(trainer.model, prompt, example["rejected_ids"][c])
                with trainer.model.disable_adapter():
                    ref_w = completion_logp(trainer.model, prompt, example["chosen_ids"][c])
                    ref_l = completion_logp(trainer.model, prompt, example["rejected_ids"][c])
                assert example["ref_chosen_logps"][c] == pytest.approx(ref_w.item(), abs=1e-3)
                total = total + weights[criterion] * beta * ((pol_w - ref_w) - (pol_l - ref_l))
            per_scenario.append(-F.logsigmoid(total))
    expected = torch.stack(per_scenario).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)


def test_scenarios_missing_a_criterion_are_counted(preference_dataset_dir, tmp_path):
    from datasets import load_from_disk

    data = load_from_disk(str(preference_dataset_dir))
    data["safety"] = data["safety"].filter(lambda row: row["scenario_id"] != "s2")
    data.save_to_disk(str(tmp_path / "prefs"))
    rows, criteria, stats = build_joint_rows(tmp_path / "prefs", {"empathy": 1.0, "safety": 1.0})
    assert stats["scenarios"] == 5 and stats["scenarios_dropped"] == 1
    assert "s2" not in {row["scenario_id"] for row in rows}
    # A zero weight takes a criterion out of the loss, so nothing is dropped for it.
    _, criteria, stats = build_joint_rows(tmp_path / "prefs", {"empathy": 1.0, "safety": 0.0})
    assert criteria == ["empathy"] and stats["scenarios_dropped"] == 0


def test_joint_dpo_trains_and_saves(tiny_lm_dir, preference_dataset_dir, tmp_path):
    result = train_joint_dpo(joint_config(config_for(tiny_lm_dir, tmp_path / "joint", **JOINT_RUN), preference_dataset_dir,
                             {"empathy": 0.5, "safety": 0.5}))
    assert result.completed and result.metrics["global_step"] == 2
    assert (result.adapter_dir / "adapter_config.json").is_file()
    history = json.loads(result.log_history_path.read_text())
    assert next(e["loss"] for e in history if "loss" in e) == pytest.approx(0.6931, abs=1e-3)
