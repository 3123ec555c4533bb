"""Stage 5: one Bradley-Terry reward model per criterion, and the margins MODPO needs.

One formatting function. ``format_reward_input`` is the only way a (prompt,
response) pair becomes reward-model text: ``train_reward_model`` tokenises its
pairs through ``encode_reward_inputs`` and ``RewardScorer.score`` does the same,
so a model is never scored on a layout it was not trained on (the study's code
trained on one format and scored another).

Nothing is silently dropped. TRL's ``RewardTrainer`` discards pairs longer than
``max_length``; here pairs are tokenised before the trainer sees them,
truncating from the *left* (the start of a long scenario goes, the response
stays), and the number of truncated pairs is reported in ``metrics.json``.

One scale. Raw reward logits have an arbitrary scale, which would silently
re-weight objectives when margins of several criteria are summed. After
training, every training response (chosen and rejected) is scored and the
mean/std are stored in ``reward_scale.json`` next to the model;
``RewardScorer.score(standardised=True)`` returns ``(raw - mean) / std``.

Accuracy with its uncertainty. The held-out pairwise accuracy is reported with
the number of pairs behind it and a 95 % Wilson interval
(``validation_accuracy_interval``), plus ``validation_warning`` when there are
fewer than ``stats.TOO_FEW_PAIRS`` held-out pairs: 2 of 2 correct is not an
accuracy of 1.000, it is an interval of [0.34, 1.00].

Margins. ``compute_margins`` precomputes, once per dataset, for the primary
criterion's pairs ``margin = sum_{j != k} w_j * (r_j(x, y_w) - r_j(x, y_l))`` with
standardised scores, plus each criterion's own standardised difference
(``reward_delta_<criterion>``), so no reward model is loaded while a policy
trains.
"""
from __future__ import annotations

import gc
import json
import logging
import math
import os
import random
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .control import RunControl, run_control
from .io import atomic_write_json
from .models import resolve_model
from .stats import accuracy_with_interval

logger = logging.getLogger(__name__)

REWARD_FORMAT_VERSION = "attune-rm-v1"
SCALE_FILE = "reward_scale.json"
METRICS_FILE = "metrics.json"
REWARD_CARD_FILE = "reward_model.json"
MARGINS_CARD_FILE = "margins.json"


def format_reward_input(prompt: str, response: str) -> str:
    """THE reward-model input layout, for training and for scoring alike."""
    return f"Person: {prompt.strip()}\n\nResponse: {response.strip()}"


def encode_reward_inputs(tokenizer, prompts: Sequence[str], responses: Sequence[str], max_length: int) -> dict:
    """Format with ``format_reward_input`` and tokenise, truncating from the left so the response survives.

    Returns the tokenizer's output (lists of ids) plus ``truncated``: one bool per input.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    texts = [format_reward_input(p, r) for p, r in zip(prompts, responses)]
    previous_side = tokenizer.truncation_side
    tokenizer.truncation_side = "left"
    try:
        full = tokenizer(texts, truncation=False)["input_ids"]
        encoded = tokenizer(texts, truncation=True, max_length=max_length)
    finally:
        tokenizer.truncation_side = previous_side
    encoded["truncated"] = [len(ids) > max_length for ids in full]
    return encoded


@dataclass
class RewardModelConfig:
    dataset_dir: str | Path
    criterion: str
    output_dir: str | Path
    backbone: str = "minilm-l6"
    model_cache_dir: str | Path | None = None
    max_length: int = 256
    epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    learning_rate: float = 5e-5
    batch_size: int = 8
    gradient_accumulation_steps: int = 1
    weight_decay: float = 0.0
    warmup_steps: float = 0  # a float < 1 is a fraction of the total steps (transformers 5 has no warmup_ratio)
    seed: int = 0
    validation_fraction: float = 0.1
    center_rewards_coefficient: float | None = None
    bf16: bool | None = None
    save_steps: int = 200
    resume: bool = True
    scoring_batch_size: int = 32
    trainer_overrides: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: (str(v) if isinstance(v, Path) else v) for f in fields(self) for v in [getattr(self, f.name)]}


@dataclass
class RewardModelResult:
    output_dir: Path
    criterion: str
    train_pairs: int
    validation_pairs: int
    validation_accuracy: float | None  # pairwise: share of held-out pairs scored chosen > rejected
    train_accuracy: float
    truncated_pairs: int
    scale_mean: float
    scale_std: float
    metrics: dict[str, Any]
    validation_correct: int = 0
    validation_accuracy_interval: list[float] | None = None  # 95% Wilson interval
    validation_warning: str | None = None  # set when there are too few held-out pairs to say anything
    completed: bool = True  # False: the run control stopped it; the checkpoint stays, no model was written


# ---------------------------------------------------------------------------
# Training


def split_by_scenario(dataset, fraction: float, seed: int):
    """Hold out whole scenarios (not single rows) so the validation accuracy is on unseen situations."""
    if fraction <= 0 or len(dataset) < 2:
        return dataset, None
    if "scenario_id" in dataset.column_names:
        groups = sorted(set(dataset["scenario_id"]))
        keys = dataset["scenario_id"]
    else:
        groups = list(range(len(dataset)))
        keys = groups
    rng = random.Random(seed)
    rng.shuffle(groups)
    n_val = max(1, int(round(len(groups) * fraction)))
    if n_val >= len(groups):
        return dataset, None
    held_out = set(groups[:n_val])
    val_idx = [i for i, key in enumerate(keys) if key in held_out]
    train_idx = [i for i, key in enumerate(keys) if key not in held_out]
    return dataset.select(train_idx), dataset.select(val_idx)


def _tokenise_pairs(tokenizer, dataset, max_length: int):
    from datasets import Dataset

    chosen = encode_reward_inputs(tokenizer, dataset["prompt"], dataset["chosen"], max_length)
    rejected = encode_reward_inputs(tokenizer, dataset["prompt"], dataset["rejected"], max_length)
    truncated = sum(1 for a, b in zip(chosen["truncated"], rejected["truncated"]) if a or b)
    # Pre-tokenised columns make RewardTrainer skip its own tokenisation (and its EOS/format choices).
    return Dataset.from_dict({"chosen_ids": chosen["input_ids"], "rejected_ids": rejected["input_ids"]}), truncated


def train_reward_model(config: RewardModelConfig, control: RunControl | None = None) -> RewardModelResult:
    """Train ``config.criterion``'s reward model; the run control hears its steps and metrics and can stop it
    (a stopped run keeps its checkpoint and resumes on the next call; its result says ``completed=False``)."""
    import torch
    from datasets import load_from_disk
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from .policies.common import build_trainer, checkpointed_training_arguments, resume_point

    output_dir = Path(config.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    data = load_from_disk(str(config.dataset_dir), keep_in_memory=True)
    if config.criterion not in data:
        raise KeyError(f"criterion {config.criterion!r} not in {config.dataset_dir}; splits: {sorted(data.keys())}")
    pairs = data[config.criterion]
    if len(pairs) == 0:
        raise ValueError(f"no pairs for {config.criterion!r} in {config.dataset_dir}")
    train_pairs, val_pairs = split_by_scenario(pairs, config.validation_fraction, config.seed)

    backbone_dir = resolve_model(config.backbone, config.model_cache_dir)
    tokenizer = AutoTokenizer.from_pretrained(str(backbone_dir))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    train_tok, truncated = _tokenise_pairs(tokenizer, train_pairs, config.max_length)
    if val_pairs is not None:
        _, val_truncated = _tokenise_pairs(tokenizer, val_pairs, config.max_length)
        truncated += val_truncated

    torch.manual_seed(config.seed)
    model = AutoModelForSequenceClassification.from_pretrained(str(backbone_dir), num_labels=1, dtype=torch.float32)
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id

    checkpoint_dir = output_dir / "checkpoints"
    resume_from = resume_point(checkpoint_dir, control) if config.resume else None
    args_kwargs = checkpointed_training_arguments(
        config, checkpoint_dir=checkpoint_dir, epochs=config.epochs,
        weight_decay=config.weight_decay,
        max_length=None,  # already truncated above; TRL would otherwise drop long pairs
        center_rewards_coefficient=config.center_rewards_coefficient,
        activation_checkpointing=False,  # TRL defaults it on; transformers 5.24 renamed gradient_checkpointing
        logging_steps=1,
        save_total_limit=2,  # an older checkpoint to fall back to when the newest is damaged
    )
    trainer, progress = build_trainer(
        RewardTrainer, control, model=model, args=RewardConfig(**args_kwargs), train_dataset=train_tok,
        processing_class=tokenizer,
    )
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)
    train_losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    steps = int(trainer.state.global_step)
    if progress.stopped:  # keep the checkpoint for the next call; write no model
        return RewardModelResult(
            output_dir=output_dir, criterion=config.criterion, train_pairs=len(train_pairs),
            validation_pairs=len(val_pairs) if val_pairs is not None else 0, validation_accuracy=None,
            train_accuracy=float("nan"), truncated_pairs=truncated, scale_mean=float("nan"), scale_std=float("nan"),
            metrics={"criterion": config.criterion, "steps": steps, "completed": False}, completed=False,
        )
    trained = trainer.model
    trained.eval()
    del trainer
    gc.collect()

    # Scale and accuracies through the scoring path itself (same formatting, same truncation).
    scorer = RewardScorer(trained, tokenizer, max_length=config.max_length, scale=None)
    train_chosen = scorer.score(train_pairs["prompt"], train_pairs["chosen"], standardised=False,
                                batch_size=config.scoring_batch_size)
    train_rejected = scorer.score(train_pairs["prompt"], train_pairs["rejected"], standardised=False,
                                  batch_size=config.scoring_batch_size)
    all_scores = train_chosen + train_rejected
    mean = sum(all_scores) / len(all_scores)
    variance = sum((s - mean) ** 2 for s in all_scores) / max(1, len(all_scores) - 1)
    std = math.sqrt(variance)
    degenerate_scale = std < 1e-8
    if degenerate_scale:
        std = 1.0  # every training response scored the same: standardising would divide by zero
    train_accuracy = _pairwise_accuracy(train_chosen, train_rejected)

    val_accuracy = None
    val_correct = 0
    if val_pairs is not None:
        val_chosen = scorer.score(val_pairs["prompt"], val_pairs["chosen"], standardised=False,
                                  batch_size=config.scoring_batch_size)
        val_rejected = scorer.score(val_pairs["prompt"], val_pairs["rejected"], standardised=False,
                                    batch_size=config.scoring_batch_size)
        val_accuracy = _pairwise_accuracy(val_chosen, val_rejected)
        val_correct = sum(1 for c, r in zip(val_chosen, val_rejected) if c > r)
    held_out = accuracy_with_interval(val_correct, len(val_pairs) if val_pairs is not None else 0)

    scale = {"mean": mean, "std": std, "n_scores": len(all_scores), "degenerate": degenerate_scale,
             "computed_on": "training pairs (chosen and rejected responses)"}
    metrics = {
        "criterion": config.criterion,
        "train_pairs": len(train_pairs),
        "validation_pairs": len(val_pairs) if val_pairs is not None else 0,
        "validation_accuracy": val_accuracy,
        "validation_correct": val_correct,
        "validation_accuracy_interval": held_out["interval"],
        "validation_warning": held_out["warning"],
        "train_accuracy": train_accuracy,
        "truncated_pairs": truncated,
        "max_length": config.max_length,
        "resumed_from": str(resume_from) if resume_from else None,
        "steps": steps,
        "final_train_loss": train_losses[-1] if train_losses else None,
    }

    # The final model goes to output_dir itself (RewardScorer.load(output_dir)); checkpoints are scratch.
    trained.save_pretrained(output_dir, safe_serialization=True)
    tokenizer.save_pretrained(output_dir)
    card = {
        "format": REWARD_FORMAT_VERSION,
        "criterion": config.criterion,
        "backbone": config.backbone,
        "backbone_dir": str(backbone_dir),
        "max_length": config.max_length,
        "truncation_side": "left",
        "config": config.to_dict(),
    }
    atomic_write_json(output_dir / REWARD_CARD_FILE, card, sort_keys=True, default=str)
    atomic_write_json(output_dir / METRICS_FILE, metrics, sort_keys=True, default=str)
    # Written last: its presence marks a finished reward model.
    atomic_write_json(output_dir / SCALE_FILE, scale, sort_keys=True, default=str)
    shutil.rmtree(checkpoint_dir, ignore_errors=True)
    return RewardModelResult(
        output_dir=output_dir,
        criterion=config.criterion,
        train_pairs=len(train_pairs),
        validation_pairs=metrics["validation_pairs"],
        validation_accuracy=val_accuracy,
        train_accuracy=train_accuracy,
        truncated_pairs=truncated,
        scale_mean=mean,
        scale_std=std,
        metrics=metrics,
        validation_correct=val_correct,
        validation_accuracy_interval=held_out["interval"],
        validation_warning=held_out["warning"],
    )


def _pairwise_accuracy(chosen: Sequence[float], rejected: Sequence[float]) -> float:
    if not chosen:
        return float("nan")
    return sum(1 for c, r in zip(chosen, rejected) if c > r) / len(chosen)


# ---------------------------------------------------------------------------
# Scoring


class RewardScorer:
    """Scores (prompt, response) pairs with a trained reward model, standardised with its stored scale."""

    def __init__(self, model, tokenizer, *, max_length: int, scale: dict | None, device=None):
        import torch

        self.model = model
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.scale = scale
        self.device = device or (torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu"))
        self.model.to(self.device)
        self.model.eval()

    @classmethod
    def load(cls, model_dir: str | Path, *, device=None) -> "RewardScorer":
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        model_dir = Path(model_dir)
        scale_path = model_dir / SCALE_FILE
        card_path = model_dir / REWARD_CARD_FILE
        if not scale_path.is_file() or not card_path.is_file():
            raise FileNotFoundError(
                f"{model_dir} is not a finished Attune reward model (missing {SCALE_FILE} or {REWARD_CARD_FILE})"
            )
        card = json.loads(card_path.read_text())
        if card.get("format") != REWARD_FORMAT_VERSION:
            raise ValueError(
                f"{model_dir} was trained with input format {card.get('format')!r}; this code scores "
                f"{REWARD_FORMAT_VERSION!r}. Retrain it rather than score it on a different layout."
            )
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), dtype=torch.float32)
        return cls(model, tokenizer, max_length=int(card["max_length"]),
                   scale=json.loads(scale_path.read_text()), device=device)

    def score(
        self,
        prompts: Sequence[str],
        responses: Sequence[str],
        *,
        standardised: bool = True,
        batch_size: int = 32,
    ) -> list[float]:
        import torch

        prompts, responses = list(prompts), list(responses)
        if standardised and self.scale is None:
            raise ValueError("this scorer has no stored scale; pass standardised=False")
        encoded = encode_reward_inputs(self.tokenizer, prompts, responses, self.max_length)
        ids = encoded["input_ids"]
        pad_id = self.tokenizer.pad_token_id
        scores: list[float] = []
        # Sort by length so padding is small; results are put back in the caller's order.
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        by_index: dict[int, float] = {}
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                batch_idx = order[start:start + batch_size]
                width = max(len(ids[i]) for i in batch_idx)
                input_ids = torch.full((len(batch_idx), width), pad_id, dtype=torch.long)
                attention = torch.zeros((len(batch_idx), width), dtype=torch.long)
                for row, i in enumerate(batch_idx):
                    input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                    attention[row, : len(ids[i])] = 1
                logits = self.model(input_ids=input_ids.to(self.device),
                                    attention_mask=attention.to(self.device)).logits[:, 0]
                for i, value in zip(batch_idx, logits.float().cpu().tolist()):
                    by_index[i] = value
        scores = [by_index[i] for i in range(len(ids))]
        if standardised:
            mean, std = float(self.scale["mean"]), float(self.scale["std"])
            scores = [(s - mean) / std for s in scores]
        return scores


# ---------------------------------------------------------------------------
# MODPO margins


@dataclass(kw_only=True)
class MarginsConfig:
    """MODPO margins for ``primary``'s pairs of a preference dataset, from the other criteria's reward models."""

    dataset_dir: str | Path
    primary: str
    weights: dict[str, float]
    reward_model_dirs: dict[str, Path]
    output_dir: str | Path
    batch_size: int = 32  # scoring batch


def compute_margins(
    config: MarginsConfig,
    control: RunControl | None = None,
    *,
    scorer_loader: Callable[[Path], Any] | None = None,
) -> Path:
    """Write the primary criterion's pairs plus ``margin`` (and per-criterion ``reward_delta_<c>``) to ``output_dir``.

    Every criterion with a reward model other than the primary gets a ``reward_delta_<c>`` column (standardised
    r_c(x, y_w) - r_c(x, y_l)); ``margin`` is their sum weighted by ``weights`` (missing weights count as 0).
    Idempotent: an existing result for the same inputs is returned; one for different inputs is an error.
    Progress counts the reward models scored, then the dataset written.
    """
    from datasets import load_from_disk

    control = run_control(control)
    dataset_dir, primary, weights, batch_size = config.dataset_dir, config.primary, config.weights, config.batch_size
    reward_model_dirs = {c: Path(d) for c, d in config.reward_model_dirs.items()}
    output_dir = Path(config.output_dir)
    others = sorted(c for c in reward_model_dirs if c != primary)
    weighted_without_model = sorted(c for c, w in weights.items() if c != primary and w != 0 and c not in reward_model_dirs)
    if weighted_without_model:
        raise ValueError(f"criteria {weighted_without_model} have a weight but no reward model")
    if primary not in weights or weights[primary] <= 0:
        raise ValueError(f"the primary criterion {primary!r} needs a positive weight (MODPO divides by it)")
    card = {
        "dataset_dir": str(Path(dataset_dir).resolve()),
        "primary": primary,
        "weights": {k: float(v) for k, v in sorted(weights.items())},
        "reward_model_dirs": {c: str(Path(reward_model_dirs[c]).resolve()) for c in others},
        "standardised": True,
        "format": REWARD_FORMAT_VERSION,
    }
    card_path = output_dir / MARGINS_CARD_FILE
    if card_path.is_file():
        existing = json.loads(card_path.read_text())
        existing_inputs = {k: existing.get(k) for k in card}
        if existing_inputs != card:
            raise ValueError(f"{output_dir} holds margins for different inputs: {existing_inputs} != {card}")
        control.progress(1, 1)
        return output_dir

    data = load_from_disk(str(dataset_dir), keep_in_memory=True)
    if primary not in data:
        raise KeyError(f"criterion {primary!r} not in {dataset_dir}; splits: {sorted(data.keys())}")
    pairs = data[primary]
    prompts, chosen, rejected = list(pairs["prompt"]), list(pairs["chosen"]), list(pairs["rejected"])
    load = scorer_loader or RewardScorer.load

    margins = [0.0] * len(pairs)
    deltas: dict[str, list[float]] = {}
    steps = len(others) + 1
    for done, criterion in enumerate(others):
        control.progress(done, steps)
        scorer = load(Path(reward_model_dirs[criterion]))
        good = scorer.score(prompts, chosen, standardised=True, batch_size=batch_size)
        bad = scorer.score(prompts, rejected, standardised=True, batch_size=batch_size)
        del scorer  # one reward model in memory at a time
        gc.collect()
        delta = [g - b for g, b in zip(good, bad)]
        deltas[criterion] = delta
        weight = float(weights.get(criterion, 0.0))
        margins = [m + weight * d for m, d in zip(margins, delta)]

    result = pairs.add_column("margin", margins)
    for criterion, delta in deltas.items():
        result = result.add_column(f"reward_delta_{criterion}", delta)

    output_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = output_dir.with_name(f".{output_dir.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    result.save_to_disk(str(tmp))
    card["pairs"] = len(result)
    card["margin_mean"] = sum(margins) / len(margins) if margins else 0.0
    atomic_write_json(tmp / MARGINS_CARD_FILE, card, sort_keys=True, default=str)
    if output_dir.exists():
        shutil.rmtree(output_dir)  # an unfinished earlier attempt (no card)
    os.rename(tmp, output_dir)
    control.progress(steps, steps)
    return output_dir
