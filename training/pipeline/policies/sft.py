"""Supervised fine-tuning on one criterion's chosen responses (TRL ``SFTTrainer``).

Rows are prompt/completion chat turns, so the tokenizer's chat template applies
and only the response tokens carry loss (TRL's completion-only loss).

TRL keeps the start of a sequence longer than ``max_length``: a long scenario
loses the end of its completion, or all of it (the example then trains on
nothing). ``completion_truncation`` counts both, so it is reported in the
metrics rather than lost quietly.

A chosen reply that does not end a sentence was cut by the generation's
``max_new_tokens`` (most of them at validation scale: 91% of the empathy
chosen replies at 48 tokens). Rendered as a complete chat turn it would end in
the end-of-turn token, and SFT would teach the model to stop mid-sentence. So
the rows are tokenised here: a finished reply is the whole chat turn (end of
turn included), a cut one is the prompt with its generation prompt followed by
the reply's text and nothing after it (the model learns the words, not to stop
there); ``completions_cut`` counts them.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from ..control import RunControl
from ..stats import ends_a_sentence
from .common import (
    PolicyConfig,
    PolicyResult,
    PolicyTrainer,
    build_trainer,
    load_preference_split,
    load_trainable_model,
    prepare_output_dir,
    prompt_messages,
    train_policy,
    trainer_args_kwargs,
)


@dataclass(kw_only=True)
class SFTConfig(PolicyConfig):
    """SFT on one criterion's chosen responses from a preference dataset directory."""

    dataset_dir: str | Path
    criterion: str


logger = logging.getLogger(__name__)


def _render(tokenizer, row) -> tuple[str, str]:
    """(prompt text with the generation prompt, prompt and reply text): the whole chat turn for a finished reply,
    the bare reply after the generation prompt (no end-of-turn) for a cut one."""
    prompt = tokenizer.apply_chat_template(row["prompt"], tokenize=False, add_generation_prompt=True)
    if row.get("finished", True):
        return prompt, tokenizer.apply_chat_template(row["prompt"] + row["completion"], tokenize=False)
    return prompt, prompt + row["completion"][0]["content"]


def completion_truncation(tokenizer, rows, max_length: int | None) -> dict:
    """How many prompt/completion chat rows lose part (or all) of their completion to ``max_length``, and how
    many replies were cut (trained without an end-of-turn)."""
    truncated = dropped = 0
    if max_length is not None:
        for row in rows:
            prompt, full = _render(tokenizer, row)
            prompt_len = len(tokenizer(prompt, add_special_tokens=False)["input_ids"])
            full_len = len(tokenizer(full, add_special_tokens=False)["input_ids"])
            if full_len > max_length:
                truncated += 1
                dropped += prompt_len >= max_length
    if truncated:
        logger.warning("%d of %d SFT examples lose completion tokens to max_length=%s (%d lose all of them)",
                       truncated, len(rows), max_length, dropped)
    cut = sum(1 for row in rows if not row.get("finished", True))
    return {"completions_truncated": truncated, "completions_dropped": dropped, "completions_cut": cut}


def chosen_as_chat(pairs, system_prompt: str | None):
    def convert(row):
        return {
            "prompt": prompt_messages(row["prompt"], system_prompt),
            "completion": [{"role": "assistant", "content": row["chosen"]}],
            "finished": ends_a_sentence(row["chosen"]),
        }

    return pairs.map(convert, remove_columns=pairs.column_names)


def as_training_tokens(tokenizer, rows):
    """Chat rows -> input_ids and completion_mask (1 on the reply's tokens), rendered by ``_render``."""

    def tokenise(row):
        prompt, full = _render(tokenizer, row)
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        ids = tokenizer(full, add_special_tokens=False)["input_ids"]
        start = 0  # where the prompt and the prompt + reply diverge (tokens can merge across the boundary)
        while start < min(len(prompt_ids), len(ids)) and prompt_ids[start] == ids[start]:
            start += 1
        return {"input_ids": ids, "completion_mask": [0] * start + [1] * (len(ids) - start)}

    return rows.map(tokenise, remove_columns=rows.column_names)


def build_sft_trainer(config: SFTConfig, control: RunControl | None = None) -> PolicyTrainer:
    from trl import SFTConfig as TRLSFTConfig
    from trl import SFTTrainer

    output_dir, checkpoint_dir, resume_from = prepare_output_dir(config, control)
    pairs = load_preference_split(config.dataset_dir, config.criterion)
    rows = chosen_as_chat(pairs, config.system_prompt)
    model, tokenizer = load_trainable_model(config)
    args = TRLSFTConfig(
        **trainer_args_kwargs(config, checkpoint_dir),
        max_length=config.max_length,  # TRL 1.x: not max_seq_length
        completion_only_loss=True,
        packing=False,
    )
    trainer, progress = build_trainer(
        SFTTrainer, control, model=model, args=args, train_dataset=as_training_tokens(tokenizer, rows),
        processing_class=tokenizer,  # TRL 1.x: not tokenizer=
    )
    truncation = completion_truncation(tokenizer, rows, config.max_length)
    return PolicyTrainer(
        trainer, progress, output_dir, checkpoint_dir, resume_from,
        metrics={"examples": len(pairs), **truncation},
        record={"dataset_dir": str(config.dataset_dir), "criterion": config.criterion},
    )


def train_sft(config: SFTConfig, control: RunControl | None = None) -> PolicyResult:
    return train_policy(build_sft_trainer(config, control), config, method="sft")
