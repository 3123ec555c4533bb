"""The tiny-model PolicyConfig the policy tests start from (SFT, DPO, joint DPO, MODPO, checkpoints, the pilot)."""
from __future__ import annotations

from training.pipeline.policies.common import PolicyConfig


def policy_values(tiny_lm_dir, out, **overrides) -> dict:
    """The settings as a dict, for a method's config that adds its own (MODPOConfig, SFTConfig)."""
    values = dict(
        output_dir=out,
        base_model=str(tiny_lm_dir),
        lora_rank=4,
        lora_alpha=8,
        lora_target_modules=("q_proj", "v_proj"),
        beta=0.1,  # written out: the joint DPO test computes its loss by hand with this value
        learning_rate=1e-2,
        max_steps=4,
        batch_size=2,
        save_steps=2,
        max_length=128,
    )
    values.update(overrides)
    return values


def config_for(tiny_lm_dir, out, **overrides) -> PolicyConfig:
    return PolicyConfig(**policy_values(tiny_lm_dir, out, **overrides))
