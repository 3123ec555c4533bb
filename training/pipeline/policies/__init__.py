"""Stage 6: policies (SFT, DPO, MODPO, safety-constrained MODPO, joint-loss DPO) and adapter merging.

One config dataclass per method, beside its trainer: ``SFTConfig`` / ``train_sft``, ``DPOConfig`` /
``train_dpo``, ``MODPOConfig`` / ``train_modpo``, ``JointDPOConfig`` / ``train_joint_dpo``, ``MergeConfig`` /
``merge_adapters``; each ``train_*`` takes ``(config, control)`` (``control.RunControl``).

Importing this package stays cheap: TRL, PEFT and transformers are imported when a trainer is built. The
trainer classes (``MODPOTrainer``, ``MarginCollator``, ``JointDPOTrainer``) are module-level classes in
``trainers.py``, which imports TRL at its top; this package loads it on first use of one of those names.
"""
from .common import (
    PolicyConfig,
    PolicyResult,
    PolicyTrainer,
    build_lora_config,
    find_resumable_checkpoint,
    load_policy_model,
    prompt_messages,
    train_policy,
)
from .dpo import DPOConfig, train_dpo
from .joint import JointDPOConfig, train_joint_dpo
from .merge import MergeConfig, merge_adapters
from .modpo import MODPOConfig, SafetyConstraint, train_modpo
from .sft import SFTConfig, train_sft

_TRAINER_CLASSES = {"JointDPOTrainer", "MODPOTrainer", "MarginCollator"}

__all__ = [
    "DPOConfig",
    "JointDPOConfig",
    "JointDPOTrainer",
    "MODPOConfig",
    "MODPOTrainer",
    "MarginCollator",
    "MergeConfig",
    "PolicyConfig",
    "PolicyResult",
    "PolicyTrainer",
    "SFTConfig",
    "SafetyConstraint",
    "build_lora_config",
    "find_resumable_checkpoint",
    "load_policy_model",
    "merge_adapters",
    "prompt_messages",
    "train_dpo",
    "train_joint_dpo",
    "train_modpo",
    "train_policy",
    "train_sft",
]


def __getattr__(name: str):
    """The trainer classes, imported (with TRL) on first use."""
    if name in _TRAINER_CLASSES:
        from . import trainers

        return getattr(trainers, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
