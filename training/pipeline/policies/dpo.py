"""Single-objective DPO on one criterion's pairs (TRL ``DPOTrainer``).

The reference is the starting model: the base (with ``base_adapter`` merged in,
e.g. the SFT adapter) and the new LoRA adapter disabled. Reference log-probs
are precomputed once by default, which is also what MODPO needs, so DPO and
MODPO runs are directly comparable.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

from .common import (
    PolicyConfig,
    PolicyResult,
    attach_lora,
    finish,
    load_base_model,
    load_preference_split,
    make_callbacks,
    prepare_output_dir,
    quiet,
    run_training,
    to_conversational_preferences,
    trainer_args_kwargs,
)

logger = logging.getLogger(__name__)


def build_dpo_trainer(
    config: PolicyConfig,
    train_dataset,
    *,
    checkpoint_dir: Path,
    trainer_cls=None,
    beta: float | None = None,
    data_collator=None,
    state_providers=None,
    trainer_kwargs: dict | None = None,
):
    """A DPOTrainer (or subclass) on conversational preference rows, with Attune's LoRA, checkpoints and callbacks.

    Returns (trainer, progress_callback).
    """
    from accelerate.utils import is_peft_model
    from trl import DPOConfig, DPOTrainer

    trainer_cls = trainer_cls or DPOTrainer
    model, tokenizer = load_base_model(config)
    ref_model = None
    if config.full_finetune:
        if not config.precompute_ref_log_probs:
            # TRL would reload the reference from the config's path, which misses a merged base_adapter.
            ref_model = copy.deepcopy(model).eval()
    else:
        model = attach_lora(model, config)

    args = DPOConfig(
        **trainer_args_kwargs(config, checkpoint_dir),
        beta=config.beta if beta is None else beta,
        max_length=config.max_length,
        precompute_ref_log_probs=config.precompute_ref_log_probs,
        loss_type=["sigmoid"],
    )
    progress, marker = make_callbacks(config, state_providers)
    trainer = trainer_cls(
        model=model,
        ref_model=ref_model,
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,
        data_collator=data_collator,
        callbacks=[progress, marker],
        **(trainer_kwargs or {}),
    )
    quiet(trainer)
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


def train_dpo(config: PolicyConfig, dataset_dir: str | Path, criterion: str) -> PolicyResult:
    """DPO on ``criterion``'s pairs from a preference dataset directory."""
    output_dir, checkpoint_dir, resume_from = prepare_output_dir(config)
    pairs = load_preference_split(dataset_dir, criterion)
    train_dataset = to_conversational_preferences(pairs, config.system_prompt)
    trainer, progress = build_dpo_trainer(config, train_dataset, checkpoint_dir=checkpoint_dir)
    completed, last_checkpoint = run_training(trainer, config, checkpoint_dir, progress, resume_from)
    return finish(
        trainer=trainer,
        config=config,
        method="dpo",
        output_dir=output_dir,
        checkpoint_dir=checkpoint_dir,
        resume_from=resume_from,
        completed=completed,
        last_checkpoint=last_checkpoint,
        extra_metrics={"pairs": len(pairs), **pairs_used(trainer, len(pairs))},
        extra_record={"dataset_dir": str(dataset_dir), "criterion": criterion},
    )
