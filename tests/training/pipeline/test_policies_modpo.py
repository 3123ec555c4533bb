from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from training.pipeline.control import RunControl
from training.pipeline.policies.common import PolicyConfig
from training.pipeline.policies.dpo import make_dpo_trainer
from training.pipeline.policies.modpo import (
    MODPOConfig,
    SafetyConstraint,
    build_modpo_trainer,
    lagrange_update,
    train_modpo,
)

from . import policy_configs

MARGINS = [0.8, -1.2, 2.0, 0.0, 1.5, -0.3]
SAFETY_DELTAS = [1.0, 0.5, -0.2, 2.0, 0.7, 1.1]


def write_margin_dataset(preference_dataset_dir, out, *, primary="empathy", weights=None, margins=MARGINS):
    from datasets import load_from_disk

    pairs = load_from_disk(str(preference_dataset_dir))[primary]
    pairs = pairs.add_column("margin", list(margins)).add_column("reward_delta_safety", list(SAFETY_DELTAS))
    pairs.save_to_disk(str(out))
    (out / "margins.json").write_text(json.dumps({"primary": primary, "weights": weights or {},
                                                  "dataset_dir": str(preference_dataset_dir)}))
    return out


def policy_values(tiny_lm_dir, out, **overrides):
    # beta 0.1, the study's value: float32 log-prob sums of ~-150 carry ~1e-5 noise, scaled by beta/w_k.
    return policy_configs.policy_values(tiny_lm_dir, out, **{"max_steps": 2, "batch_size": 3, "save_steps": 100, **overrides})


def modpo_config(tiny_lm_dir, out, margin_dataset_dir, weights, primary="empathy", safety=None, **overrides):
    return MODPOConfig(**policy_values(tiny_lm_dir, out, **overrides), margin_dataset_dir=margin_dataset_dir,
                       weights=weights, primary=primary, safety=safety)


def perturb_adapter(model, seed=123):
    """Make the policy differ from the reference (a fresh LoRA adapter is the identity)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.5)


def hand_logps(model, batch):
    """Summed completion log-probs from plain logits: no TRL code involved."""
    input_ids, mask = batch["input_ids"], batch["completion_mask"]
    logits = model(input_ids=input_ids, attention_mask=batch["attention_mask"]).logits[:, :-1].double()
    token_logps = torch.log_softmax(logits, -1).gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
    sums = (token_logps * mask[:, 1:]).sum(1)
    return sums.chunk(2)


def first_batch(trainer, n=3):
    return trainer.data_collator([trainer.train_dataset[i] for i in range(n)])


@pytest.fixture(scope="module")
def margin_dir(preference_dataset_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("margins") / "empathy"
    return write_margin_dataset(preference_dataset_dir, out, weights={"empathy": 0.6, "safety": 0.4})


def test_modpo_loss_equals_hand_written_loss(tiny_lm_dir, margin_dir, tmp_path):
    weights = {"empathy": 0.6, "safety": 0.4}
    config = modpo_config(tiny_lm_dir, tmp_path / "modpo", margin_dir, weights)
    setup = build_modpo_trainer(config)
    trainer = setup.trainer
    assert trainer.beta == pytest.approx(config.beta / 0.6)
    perturb_adapter(trainer.model)
    batch = first_batch(trainer)
    assert torch.allclose(batch["margin"], torch.tensor(MARGINS[:3]))

    loss = trainer.compute_loss(trainer.model, batch)

    with torch.no_grad():
        policy_chosen, policy_rejected = hand_logps(trainer.model, batch)
        with trainer.model.disable_adapter():
            ref_chosen, ref_rejected = hand_logps(trainer.model, batch)
    # The precomputed reference is the base model (adapters off), as computed by hand.
    assert torch.allclose(batch["ref_chosen_logps"].double(), ref_chosen, atol=1e-4)
    beta, w_k = config.beta, weights["empathy"]
    delta = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    margin = torch.tensor(MARGINS[:3], dtype=torch.float64)
    expected = -F.logsigmoid((beta / w_k) * delta - margin / w_k).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert "margin" not in batch or batch["margin"] is not None  # the batch itself is left intact for the caller


def test_nonzero_margin_changes_loss_and_zero_margin_with_unit_weight_is_dpo(
    tiny_lm_dir, preference_dataset_dir, tmp_path
):
    zero_dir = write_margin_dataset(preference_dataset_dir, tmp_path / "zero", weights={"empathy": 1.0},
                                    margins=[0.0] * 6)
    modpo = build_modpo_trainer(modpo_config(tiny_lm_dir, tmp_path / "modpo", zero_dir, {"empathy": 1.0})).trainer
    perturb_adapter(modpo.model)
    batch = first_batch(modpo)
    zero_margin_loss = modpo.compute_loss(modpo.model, batch).item()
    shifted = dict(batch, margin=torch.tensor([1.0, -2.0, 0.5]))
    assert modpo.compute_loss(modpo.model, shifted).item() != pytest.approx(zero_margin_loss, abs=1e-4)

    from training.pipeline.policies.common import to_conversational_preferences
    from datasets import load_from_disk

    pairs = load_from_disk(str(preference_dataset_dir))["empathy"]
    dpo, _ = make_dpo_trainer(
        PolicyConfig(**policy_values(tiny_lm_dir, tmp_path / "dpo")),
        to_conversational_preferences(pairs, None),
        checkpoint_dir=tmp_path / "dpo" / "checkpoints",
    )
    perturb_adapter(dpo.model)
    dpo_batch = first_batch(dpo)
    assert torch.equal(dpo_batch["input_ids"], batch["input_ids"])
    assert dpo.compute_loss(dpo.model, dpo_batch).item() == pytest.approx(zero_margin_loss, abs=1e-6)


def test_margin_column_survives_to_the_training_batches(tiny_lm_dir, margin_dir, tmp_path):
    setup = build_modpo_trainer(modpo_config(tiny_lm_dir, tmp_path / "modpo", margin_dir,
                                             {"empathy": 0.6, "safety": 0.4}, batch_size=6))
    trainer = setup.trainer
    batch = next(iter(trainer.get_train_dataloader()))  # goes through remove_unused_columns
    assert sorted(batch["margin"].tolist()) == pytest.approx(sorted(MARGINS))

    seen = []
    original = type(trainer).compute_loss

    def spy(self, model, inputs, *args, **kwargs):
        seen.append("margin" in inputs)
        return original(self, model, inputs, *args, **kwargs)

    type(trainer).compute_loss = spy
    try:
        trainer.train()
    finally:
        type(trainer).compute_loss = original
    assert seen and all(seen)


def test_weights_must_match_the_margins(tiny_lm_dir, margin_dir, tmp_path):
    with pytest.raises(ValueError, match="weights"):
        build_modpo_trainer(modpo_config(tiny_lm_dir, tmp_path / "m", margin_dir, {"empathy": 0.6, "safety": 0.9}))


def test_lagrange_rule():
    assert lagrange_update(0.0, floor=0.0, measured=0.5, eta=1.0) == 0.0
    assert lagrange_update(0.0, floor=0.0, measured=-0.5, eta=2.0) == pytest.approx(1.0)
    assert lagrange_update(1.0, floor=0.0, measured=0.25, eta=2.0) == pytest.approx(0.5)
    assert lagrange_update(0.1, floor=0.0, measured=5.0, eta=1.0) == 0.0
    assert lagrange_update(0.0, floor=1.0, measured=-9.0, eta=1.0, max_value=3.0) == 3.0


@pytest.mark.parametrize("floor, expect_raised", [(1e3, True), (-1e3, False)])
def test_safety_multiplier_rises_only_when_the_floor_is_violated(
    tiny_lm_dir, margin_dir, preference_dataset_dir, tmp_path, floor, expect_raised
):
    # Without eval_dataset_dir, the safety pairs come from the dataset named in margins.json.
    eval_dir = preference_dataset_dir if expect_raised else None
    constraint = SafetyConstraint(eval_dataset_dir=eval_dir, floor=floor, eta=0.01, every_n_steps=1)
    result = train_modpo(modpo_config(tiny_lm_dir, tmp_path / "safe", margin_dir, {"empathy": 0.6, "safety": 0.4},
                                      max_steps=2, safety=constraint))
    history = result.metrics["safety_history"]
    assert [entry["step"] for entry in history] == [0, 1]
    lambdas = [entry["lambda"] for entry in history]
    if expect_raised:
        assert lambdas[0] > 0 and lambdas[1] > lambdas[0]
    else:
        assert lambdas == [0.0, 0.0]
    logged = [entry["safety/lambda"] for entry in json.loads(result.log_history_path.read_text())
              if "safety/lambda" in entry]
    assert len(logged) == 2 and (logged[-1] > 0) == expect_raised
    assert json.loads((result.output_dir / "safety_lambda.json").read_text()) == history


def test_safety_multiplier_survives_a_resume(tiny_lm_dir, margin_dir, tmp_path):
    constraint = SafetyConstraint(floor=1e3, eta=0.01, every_n_steps=1)
    calls = []

    def stop_at_second_step():
        calls.append(1)
        return len(calls) >= 2

    out = tmp_path / "safe"
    weights = {"empathy": 0.6, "safety": 0.4}
    first = train_modpo(modpo_config(tiny_lm_dir, out, margin_dir, weights, max_steps=3, safety=constraint),
                        RunControl(stop_check=stop_at_second_step))
    assert not first.completed and first.metrics["global_step"] == 2
    saved_lambda = first.metrics["safety_lambda"]
    assert saved_lambda > 0
    resumed = train_modpo(modpo_config(tiny_lm_dir, out, margin_dir, weights, max_steps=3, safety=constraint))
    assert resumed.completed and resumed.metrics["global_step"] == 3
    history = resumed.metrics["safety_history"]
    assert [e["step"] for e in history] == [0, 1, 2]
    assert history[-1]["lambda"] > saved_lambda  # continued from the stored multiplier, not from 0


def test_trainer_classes_are_module_level_and_load_trl_only_when_used():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import training.pipeline.policies as policies\n"
        "assert 'trl' not in sys.modules and 'torch' not in sys.modules, 'package import pulled in TRL/torch'\n"
        "from trl import DPOTrainer\n"
        "from training.pipeline.policies.trainers import MODPOTrainer\n"
        "assert policies.MODPOTrainer is MODPOTrainer and issubclass(MODPOTrainer, DPOTrainer)\n"
        "assert policies.MarginCollator.__module__ == policies.JointDPOTrainer.__module__ == MODPOTrainer.__module__\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
