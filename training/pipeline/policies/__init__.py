"""Stage 6: policies (SFT, DPO, MODPO, safety-constrained MODPO, joint-loss DPO) and adapter merging.

Submodules import TRL/PEFT lazily enough that importing this package stays cheap; the trainers are imported
from their modules (``policies.dpo.train_dpo`` ...) or from here.
"""
from .common import (
    PolicyConfig,
    PolicyResult,
    build_lora_config,
    find_resumable_checkpoint,
    load_policy_model,
    prompt_messages,
)
from .dpo import train_dpo
from .joint import train_joint_dpo
from .merge import merge_adapters
from .modpo import SafetyConstraint, train_modpo
from .sft import train_sft

__all__ = [
    "PolicyConfig",
    "PolicyResult",
    "SafetyConstraint",
    "build_lora_config",
    "find_resumable_checkpoint",
    "load_policy_model",
    "merge_adapters",
    "prompt_messages",
    "train_dpo",
    "train_joint_dpo",
    "train_modpo",
    "train_sft",
]
