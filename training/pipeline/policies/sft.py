"""Supervised fine-tuning on one criterion's chosen responses (TRL ``SFTTrainer``).

Rows are prompt/completion chat turns, so the tokenizer's chat template applies
and only the response tokens carry loss (TRL's completion-only loss).

TRL keeps the start of a sequence longer than ``max_length``: a long scenario
loses the end of its completion, or all of it (the example then trains on
nothing). ``completion_truncation`` counts both, so it is reported in the
metrics rather than lost quietly.
"""
from __future__ import annotations

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
    prompt_messages,
    quiet,
    run_training,
    trainer_args_kwargs,
)


logger = logging.getLogger(__name__)


def completion_truncation(tokenizer, rows, max_length: int | None) -> dict:
    """How many prompt/completion chat rows lose part (or all) of their completion to ``max_length``."""
    truncated = dropped = 0
    if max_length is not None:
        for row in rows:
            prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
            full = tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
            prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            full_len = len(tokenizer(full, add_special_tokens=False)["input_ids"])
            if full_len > max_length:
                truncated += 1
                dropped += prompt_len >= max_length
    if truncated:
        logger.warning("%d of %d SFT examples lose completion tokens to max_length=%s (%d lose all of them)",
                       truncated, len(rows), max_length, dropped)
    return {"completions_truncated": truncated, "completions_dropped": dropped}


def chosen_as_chat(pairs, system_prompt: str | None):
    def convert(row):
        return {
            "prompt": prompt_messages(row["prompt"], system_prompt),
            "completion": [{"role": "assistant", "content": row["chosen"]}],
        }

    return pairs.map(convert, remove_columns=pairs.column_names)


def build_sft_trainer(config: PolicyConfig, train_dataset, *, checkpoint_dir: Path):
    from trl import SFTConfig, SFTTrainer

    model, tokenizer = load_base_model(config)
    if not config.full_finetune:
        model = attach_lora(model, config)
    args = SFTConfig(
        **trainer_args_kwargs(config, checkpoint_dir),
        max_length=config.max_length,  # TRL 1.x: not max_seq_length
        completion_only_loss=True,
        packing=False,
    )
    progress, marker = make_callbacks(config)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=train_dataset,
        processing_class=tokenizer,  # TRL 1.x: not tokenizer=
        callbacks=[progress, marker],
    )
    quiet(trainer)
    return trainer, progress


def train_sft(config: PolicyConfig, dataset_dir: str | Path, criterion: str) -> PolicyResult:
    output_dir, checkpoint_dir, resume_from = prepare_output_dir(config)
    pairs = load_preference_split(dataset_dir, criterion)
    rows = chosen_as_chat(pairs, config.system_prompt)
    trainer, progress = build_sft_trainer(config, rows, checkpoint_dir=checkpoint_dir)
    truncation = completion_truncation(trainer.processing_class, rows, config.max_length)
    completed, last_checkpoint = run_training(trainer, config, checkpoint_dir, progress, resume_from)
    return finish(
        trainer=trainer,
        config=config,
        method="sft",
        output_dir=output_dir,
        checkpoint_dir=checkpoint_dir,
        resume_from=resume_from,
        completed=completed,
        last_checkpoint=last_checkpoint,
        extra_metrics={"examples": len(pairs), **truncation},
        extra_record={"dataset_dir": str(dataset_dir), "criterion": criterion},
    )
