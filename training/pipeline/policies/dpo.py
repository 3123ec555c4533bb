"""Single-objective DPO on one criterion's pairs (TRL ``DPOTrainer``).

The reference is the starting model: the base (with ``base_adapter`` merged in,
e.g. the SFT adapter) and the new LoRA adapter disabled. Reference log-probs
are precomputed once by default, which is also what MODPO needs, so DPO and
MODPO runs are directly comparable.
"""
from __future__ import annotations

import copy
import logging
from dataclasses import dataclass
from pathlib import Path

from ..control import RunControl
from .common import (
    PolicyConfig,
    PolicyResult,
    PolicyTrainer,
    attach_lora,
    build_trainer,
    load_base_model,
    load_preference_split,
    prepare_output_dir,
    to_conversational_preferences,
    train_policy,
    trainer_args_kwargs,
)

logger = logging.getLogger(__name__)


@dataclass(kw_only=True)
class DPOConfig(PolicyConfig):
    """Single-objective DPO on one criterion's pairs from a preference dataset directory."""

    dataset_dir: str | Path
    criterion: str


def make_dpo_trainer(
    config: PolicyConfig,
    train_dataset,
    control: RunControl | None = None,
    *,
    checkpoint_dir: Path,
    trainer_cls=None,
    beta: float | None = None,
    data_collator=None,
    state_providers=None,
    trainer_kwargs: dict | None = None,
):
    """A DPOTrainer (or subclass) on conversational preference rows, with Attune's LoRA, checkpoints and callbacks.

    Returns (trainer, progress_callback). DPO and MODPO both build theirs here.
    """
    from accelerate.utils import is_peft_model
    from trl import DPOConfig as TRLDPOConfig
    from trl import DPOTrainer

    trainer_cls = trainer_cls or DPOTrainer
    model, tokenizer = load_base_model(config)
    ref_model = None
    if config.full_finetune:
        if not config.precompute_ref_log_probs:
            # TRL would reload the reference from the config's path, which misses a merged base_adapter.
            ref_model = copy.deepcopy(model).eval()
    else:
        model = attach_lora(model, config)

    args = TRLDPOConfig(
        **trainer_args_kwargs(config, checkpoint_dir),
        beta=config.beta if beta is None else beta,
        max_length=config.max_length,
        precompute_ref_log_probs=config.precompute_ref_log_probs,
        loss_type=["sigmoid"],
    )
    trainer, progress = build_trainer(
        trainer_cls, control, state_providers=state_providers,
        model=model, ref_model=ref_model, args=args, train_dataset=train_dataset, processing_class=tokenizer,
        data_collator=data_collator, **(trainer_kwargs or {}),
    )
    unwrapped = trainer.accelerator.unwrap_model(trainer.model)
    if is_peft_model(unwrapped) and "ref" in unwrapped.peft_config:
        # Given a PeftModel, TRL copies the fresh adapter into a "ref" adapter. A fresh LoRA adapter is the identity
        # (B = 0), so the copy only costs memory and checkpoint space: drop it and let TRL disable adapters instead.
        unwrapped.delete_adapter("ref")
        unwrapped.set_adapter("default")
    return trainer, progress


def pairs_used(trainer, pairs: int) -> dict:
    """TRL drops pairs whose prompt alone fills max_length; say how many, rather than lose them quietly."""
    used = len(trainer.train_dataset)
    if used < pairs:
        logger.warning("%d of %d pairs dropped by TRL: prompt longer than max_length", pairs - used, pairs)
    return {"pairs_used": used, "pairs_dropped_prompt_too_long": pairs - used}


def build_dpo_trainer(config: DPOConfig, control: RunControl | None = None) -> PolicyTrainer:
    output_dir, checkpoint_dir, resume_from = prepare_output_dir(config, control)
    pairs = load_preference_split(config.dataset_dir, config.criterion)
    train_dataset = to_conversational_preferences(pairs, config.system_prompt)
    trainer, progress = make_dpo_trainer(config, train_dataset, control, checkpoint_dir=checkpoint_dir)
    return PolicyTrainer(
        trainer, progress, output_dir, checkpoint_dir, resume_from,
        metrics={"pairs": len(pairs), **pairs_used(trainer, len(pairs))},
        record={"dataset_dir": str(config.dataset_dir), "criterion": config.criterion},
    )


def train_dpo(config: DPOConfig, control: RunControl | None = None) -> PolicyResult:
    """DPO on ``config.criterion``'s pairs from a preference dataset directory."""
    return train_policy(build_dpo_trainer(config, control), config, method="dpo")
