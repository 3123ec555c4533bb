"""Joint-loss DPO: one sigmoid over the weighted sum of per-criterion DPO logits.

For a scenario x with a preference pair (y_w^c, y_l^c) for every weighted criterion c::

    L = -log sigma( sum_c w_c * beta * ([log pi_theta - log pi_ref](y_w^c) - [log pi_theta - log pi_ref](y_l^c)) )

Log-probs are summed over response tokens; the reference is the starting model
(adapters disabled), precomputed once before training. Scenarios that lack a
pair for some weighted criterion cannot enter this loss; they are counted and
reported (``metrics["scenarios_dropped"]``), never silently lost.

TRL has no such trainer, so this is a small ``transformers.Trainer`` subclass
(``trainers.JointDPOTrainer``) with its own collator; the log-probs go through TRL's fused LM head so the
full (sequence x vocabulary) logits are never materialised.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..control import RunControl
from .common import (
    PolicyConfig,
    PolicyResult,
    PolicyTrainer,
    attach_lora,
    build_trainer,
    load_base_model,
    prepare_output_dir,
    prompt_messages,
    sequence_logps,
    train_policy,
    trainer_args_kwargs,
)


def build_joint_rows(dataset_dir: str | Path, weights: dict[str, float]) -> tuple[list[dict], list[str], dict]:
    """Scenarios with a pair in every weighted criterion: [{scenario_id, prompt, chosen: [..], rejected: [..]}]."""
    from datasets import load_from_disk

    criteria = [c for c, w in weights.items() if w != 0]
    if not criteria:
        raise ValueError("joint DPO needs at least one non-zero weight")
    data = load_from_disk(str(dataset_dir), keep_in_memory=True)
    missing = [c for c in criteria if c not in data]
    if missing:
        raise KeyError(f"criteria {missing} not in {dataset_dir}; splits: {sorted(data.keys())}")

    by_criterion: dict[str, dict[str, dict]] = {}
    duplicates = 0
    prompts: dict[str, str] = {}
    for criterion in criteria:
        table: dict[str, dict] = {}
        for row in data[criterion]:
            key = str(row.get("scenario_id") or row["prompt"])
            if key in table:
                duplicates += 1  # one pair per scenario and criterion enters the loss; extras are counted
                continue
            table[key] = row
            prompts.setdefault(key, row["prompt"])
        by_criterion[criterion] = table

    all_keys = sorted(set().union(*(t.keys() for t in by_criterion.values())))
    rows, dropped = [], 0
    for key in all_keys:
        if not all(key in by_criterion[c] for c in criteria):
            dropped += 1
            continue
        rows.append(
            {
                "scenario_id": key,
                "prompt": prompts[key],
                "chosen": [by_criterion[c][key]["chosen"] for c in criteria],
                "rejected": [by_criterion[c][key]["rejected"] for c in criteria],
            }
        )
    if not rows:
        raise ValueError(f"no scenario in {dataset_dir} has a pair for every weighted criterion {criteria}")
    stats = {"scenarios": len(rows), "scenarios_dropped": dropped, "duplicate_pairs_ignored": duplicates}
    return rows, criteria, stats


def _render(tokenizer, messages, **kwargs) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, **kwargs)


def tokenize_joint_rows(rows: list[dict], tokenizer, system_prompt: str | None) -> list[dict]:
    """Prompt ids once per scenario; completion ids per criterion, split where prompt and prompt+response diverge."""
    out = []
    for row in rows:
        messages = prompt_messages(row["prompt"], system_prompt)
        prompt_ids = tokenizer(_render(tokenizer, messages, add_generation_prompt=True), add_special_tokens=False)[
            "input_ids"
        ]

        def completion(response: str) -> list[int]:
            full = tokenizer(
                _render(tokenizer, messages + [{"role": "assistant", "content": response}]), add_special_tokens=False
            )["input_ids"]
            if full[: len(prompt_ids)] != prompt_ids:
                raise ValueError("the chat template renders the prompt differently inside the full conversation")
            return full[len(prompt_ids):]

        out.append(
            {
                "prompt_ids": prompt_ids,
                "chosen_ids": [completion(r) for r in row["chosen"]],
                "rejected_ids": [completion(r) for r in row["rejected"]],
            }
        )
    return out


def collate_joint(examples: list[dict], *, pad_token_id: int, max_length: int | None):
    """Sequences ordered [chosen c0 (B), chosen c1 (B), ..., rejected c0 (B), ...], right-padded."""
    import torch

    n_criteria = len(examples[0]["chosen_ids"])
    sequences, masks = [], []
    for side in ("chosen_ids", "rejected_ids"):
        for c in range(n_criteria):
            for example in examples:
                ids = example["prompt_ids"] + example[side][c]
                mask = [0] * len(example["prompt_ids"]) + [1] * len(example[side][c])
                if max_length is not None:
                    ids, mask = ids[:max_length], mask[:max_length]
                sequences.append(ids)
                masks.append(mask)
    width = max(len(s) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_token_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    completion_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, (ids, mask) in enumerate(zip(sequences, masks)):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        attention_mask[i, : len(ids)] = 1
        completion_mask[i, : len(mask)] = torch.tensor(mask)
    batch = {"input_ids": input_ids, "attention_mask": attention_mask, "completion_mask": completion_mask}
    if "ref_chosen_logps" in examples[0]:
        batch["ref_chosen_logps"] = torch.tensor([e["ref_chosen_logps"] for e in examples], dtype=torch.float32)
        batch["ref_rejected_logps"] = torch.tensor([e["ref_rejected_logps"] for e in examples], dtype=torch.float32)
    return batch


def joint_dpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, weights, beta: float):
    """All tensors (B, C) except weights (C,). Returns (loss, per-scenario logits)."""
    import torch.nn.functional as F

    logratio = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    logits = (weights * beta * logratio).sum(dim=-1)
    return -F.logsigmoid(logits).mean(), logits


def _precompute_reference(model, tokenized: list[dict], *, pad_token_id: int, max_length: int, batch_size: int):
    """Reference log-probs with adapters disabled (or, for full fine-tuning, the model before any step)."""
    import contextlib

    import torch
    from accelerate.utils import is_peft_model

    device = next(model.parameters()).device
    context = model.disable_adapter() if is_peft_model(model) else contextlib.nullcontext()
    was_training = model.training
    model.eval()
    n_criteria = len(tokenized[0]["chosen_ids"])
    try:
        with torch.no_grad(), context:
            for start in range(0, len(tokenized), batch_size):
                chunk = tokenized[start:start + batch_size]
                batch = collate_joint(chunk, pad_token_id=pad_token_id, max_length=max_length)
                batch = {k: v.to(device) for k, v in batch.items()}
                chosen, rejected = sequence_logps(model, batch).float().cpu().chunk(2)
                chosen = chosen.view(n_criteria, len(chunk)).T
                rejected = rejected.view(n_criteria, len(chunk)).T
                for row, c, r in zip(chunk, chosen.tolist(), rejected.tolist()):
                    row["ref_chosen_logps"], row["ref_rejected_logps"] = c, r
    finally:
        model.train(was_training)
    return tokenized


@dataclass(kw_only=True)
class JointDPOConfig(PolicyConfig):
    """Joint-loss DPO over the criteria ``weights`` names, on the pairs of a preference dataset directory."""

    dataset_dir: str | Path
    weights: dict[str, float]


def build_joint_trainer(config: JointDPOConfig, control: RunControl | None = None) -> PolicyTrainer:
    from datasets import Dataset
    from transformers import TrainingArguments
    from trl.trainer.utils import add_fused_lm_head, disable_dropout_in_model

    from .trainers import JointDPOTrainer

    output_dir, checkpoint_dir, resume_from = prepare_output_dir(config, control)
    rows, criteria, stats = build_joint_rows(config.dataset_dir, config.weights)
    model, tokenizer = load_base_model(config)
    add_fused_lm_head(model)  # before PEFT wraps it, as TRL requires
    disable_dropout_in_model(model)
    if not config.full_finetune:
        model = attach_lora(model, config)
    tokenized = tokenize_joint_rows(rows, tokenizer, config.system_prompt)
    tokenized = _precompute_reference(
        model, tokenized, pad_token_id=tokenizer.pad_token_id, max_length=config.max_length,
        batch_size=config.batch_size,
    )
    trainer, progress = build_trainer(
        JointDPOTrainer, control,
        model=model,
        args=TrainingArguments(**trainer_args_kwargs(config, checkpoint_dir), remove_unused_columns=False),
        train_dataset=Dataset.from_list(tokenized),
        data_collator=lambda examples: collate_joint(
            examples, pad_token_id=tokenizer.pad_token_id, max_length=config.max_length
        ),
        processing_class=tokenizer,
        beta=config.beta,
        criterion_weights=[float(config.weights[c]) for c in criteria],
    )
    extra: dict[str, Any] = {"criteria": criteria, "weights": {c: float(config.weights[c]) for c in criteria}, **stats}
    return PolicyTrainer(trainer, progress, output_dir, checkpoint_dir, resume_from, metrics=extra,
                         record={"dataset_dir": str(config.dataset_dir), **extra})


def train_joint_dpo(config: JointDPOConfig, control: RunControl | None = None) -> PolicyResult:
    return train_policy(build_joint_trainer(config, control), config, method="joint_dpo")
