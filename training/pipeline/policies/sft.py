"""Supervised fine-tuning on one criterion's chosen responses (TRL ``SFTTrainer``).

Rows are prompt/completion chat turns, so the tokenizer's chat template applies
and only the response tokens carry loss (TRL's completion-only loss).
"""
from __future__ import annotations

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
    trainer, progress = build_sft_trainer(config, chosen_as_chat(pairs, config.system_prompt),
                                          checkpoint_dir=checkpoint_dir)
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
        extra_metrics={"examples": len(pairs)},
        extra_record={"dataset_dir": str(dataset_dir), "criterion": criterion},
    )
