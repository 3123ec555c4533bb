"""MODPO (Zhou et al. 2024) on TRL 1.16, and a safety-constrained variant.

Loss, for primary criterion k and weight vector w (weights need not sum to 1)::

    L = -log sigma( (beta / w_k) * [dlog pi_theta/pi_ref] - (1 / w_k) * m )
    m = sum_{j != k} w_j * (r_j(x, y_w) - r_j(x, y_l))        # precomputed, standardised (rewards.compute_margins)

Route (TRL 1.16 has no MODPO trainer and no ``dpo_loss`` to override): a
``DPOTrainer`` subclass (``trainers.MODPOTrainer``, with ``trainers.MarginCollator``) run with ``beta_eff = beta / w_k`` and precomputed
reference log-probs. ``MarginCollator`` carries each pair's ``margin`` into
the batch, the signature-columns hook keeps the column, and ``compute_loss``
*pops* it (any extra key would be passed to ``model(**inputs)``) and adds
``m / (w_k * beta_eff)`` (= ``m / beta``) to the chosen reference log-prob.
TRL's sigmoid loss is ``-log sigma(beta_eff * (dlogratio))``, so the shift
turns it into exactly the loss above. (TRL's logged ``rewards/*`` include the
shift.)

Safety-constrained MODPO (beyond the study, after Safe RLHF's Lagrangian):
safety's effective weight is ``w_safety + lambda`` with a multiplier
``lambda >= 0``. Every ``every_n_steps`` optimizer steps the policy's safety is
measured on held-out safety pairs as the mean DPO implicit-reward margin
against the reference::

    measured = mean over held-out pairs of beta * ([log pi_theta - log pi_ref](y_safe) - [...](y_unsafe))

which is 0 for the reference itself, positive when the policy prefers the safer
response more than the reference does, negative when safety is being traded
away. Dual ascent then sets::

    lambda <- max(0, lambda + eta * (floor - measured))

so lambda grows while the policy sits below the floor, shrinks back (never
below 0) once it is above, and stays 0 if the floor is never violated. The
per-pair margin used in the loss becomes ``m + lambda * (r_s(x, y_w) - r_s(x, y_l))``
(the ``reward_delta_safety`` column written by ``compute_margins``), i.e. MODPO
with safety weight ``w_safety + lambda``. Each update is logged in the trainer's
log history (``safety/lambda``, ``safety/measured_margin``), in
``safety_lambda.json`` and in the result's metrics, and lambda is stored in
every checkpoint so a resumed run continues from it.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..control import RunControl
from .common import (
    PolicyConfig,
    PolicyResult,
    PolicyTrainer,
    load_preference_split,
    prepare_output_dir,
    read_checkpoint_state,
    sequence_logps,
    to_conversational_preferences,
    train_policy,
)
from .dpo import make_dpo_trainer, pairs_used

MARGIN_COLUMN = "margin"


def modpo_effective_beta(beta: float, primary_weight: float) -> float:
    if primary_weight <= 0:
        raise ValueError(f"the primary criterion's weight must be positive, got {primary_weight}")
    return beta / primary_weight


def lagrange_update(multiplier: float, *, floor: float, measured: float, eta: float, max_value: float | None = None) -> float:
    """One dual-ascent step for a ``measured >= floor`` constraint: ``max(0, lambda + eta * (floor - measured))``."""
    value = max(0.0, multiplier + eta * (floor - measured))
    return min(value, max_value) if max_value is not None else value


@dataclass
class SafetyConstraint:
    """Keep the policy's safety (implicit-reward margin vs the reference on held-out pairs) at or above ``floor``."""

    # A preference dataset directory (DatasetDict) with the safety pairs to measure on. None: the dataset the
    # margins were computed from (margins.json), whose safety pairs the policy never trains on directly.
    eval_dataset_dir: str | Path | None = None
    criterion: str = "safety"
    floor: float = 0.0
    eta: float = 1.0
    every_n_steps: int = 10
    initial_lambda: float = 0.0
    max_lambda: float | None = None
    max_eval_pairs: int = 64

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}


class _SafetyState:
    """The Lagrange multiplier and its measurements; lives on the trainer, saved in checkpoints."""

    def __init__(self, constraint: SafetyConstraint, beta: float, multiplier: float, history: list):
        self.constraint = constraint
        self.beta = beta  # the study's beta (not beta / w_k): the measured margin is on the KL-regularised scale
        self.multiplier = multiplier
        self.history = history
        self.delta_column = f"reward_delta_{constraint.criterion}"
        self.eval_rows: list[dict] = []
        self.ref_logps: tuple[list[float], list[float]] | None = None
        self._last_step = None

    def provider(self) -> dict:
        return {"safety_lambda": self.multiplier, "safety_history": self.history}

    def attach(self, trainer, eval_rows: list[dict]) -> None:
        """Must run before ``train()``: the model is still the reference then (fresh adapter, or weights not loaded)."""
        self.eval_rows = eval_rows
        self.ref_logps = self._sequence_logps(trainer)

    def _sequence_logps(self, trainer) -> tuple[list[float], list[float]]:
        import torch

        model = trainer.model
        size = trainer.args.per_device_eval_batch_size
        chosen, rejected = [], []
        was_training = model.training
        model.eval()
        try:
            with torch.no_grad():
                for start in range(0, len(self.eval_rows), size):
                    rows = self.eval_rows[start:start + size]
                    batch = trainer.data_collator(
                        [{k: r[k] for k in ("prompt_ids", "chosen_ids", "rejected_ids")} for r in rows]
                    )
                    batch = {k: v.to(trainer.accelerator.device) for k, v in batch.items()}
                    c, r = sequence_logps(model, batch).chunk(2, dim=0)  # the collator stacks [chosen; rejected]
                    chosen.extend(c.float().cpu().tolist())
                    rejected.extend(r.float().cpu().tolist())
        finally:
            model.train(was_training)
        return chosen, rejected

    def measure(self, trainer) -> float:
        chosen, rejected = self._sequence_logps(trainer)
        ref_chosen, ref_rejected = self.ref_logps
        margins = [self.beta * ((c - rc) - (r - rr)) for c, r, rc, rr in zip(chosen, rejected, ref_chosen, ref_rejected)]
        return sum(margins) / len(margins)

    def maybe_update(self, trainer) -> None:
        step = int(trainer.state.global_step)
        if step % self.constraint.every_n_steps != 0 or step == self._last_step:
            return
        self._last_step = step  # once per optimizer step, whatever the gradient accumulation
        measured = self.measure(trainer)
        self.multiplier = lagrange_update(
            self.multiplier,
            floor=self.constraint.floor,
            measured=measured,
            eta=self.constraint.eta,
            max_value=self.constraint.max_lambda,
        )
        self.history.append({"step": step, "measured_margin": measured, "lambda": self.multiplier})
        trainer._metrics["train"]["safety/measured_margin"].append(measured)


def load_margin_dataset(margin_dataset_dir: str | Path, weights: dict[str, float], primary: str):
    """The pairs + margins written by ``rewards.compute_margins``, checked against the weights training will use."""
    from datasets import load_from_disk

    margin_dataset_dir = Path(margin_dataset_dir)
    card_path = margin_dataset_dir / "margins.json"
    if card_path.is_file():
        card = json.loads(card_path.read_text())
        if card.get("primary") != primary:
            raise ValueError(f"{margin_dataset_dir} holds margins for primary {card.get('primary')!r}, not {primary!r}")
        stored = {k: float(v) for k, v in card.get("weights", {}).items()}
        wanted = {k: float(v) for k, v in weights.items()}
        others = (set(stored) | set(wanted)) - {primary}
        if any(not math.isclose(stored.get(c, 0.0), wanted.get(c, 0.0)) for c in others):
            raise ValueError(
                f"{margin_dataset_dir} margins were computed with weights {stored}; training asked for {wanted}. "
                "Recompute the margins for these weights."
            )
    dataset = load_from_disk(str(margin_dataset_dir), keep_in_memory=True)
    if MARGIN_COLUMN not in dataset.column_names:
        raise ValueError(f"{margin_dataset_dir} has no {MARGIN_COLUMN!r} column (see rewards.compute_margins)")
    return dataset


@dataclass(kw_only=True)
class MODPOConfig(PolicyConfig):
    """MODPO on ``primary``'s pairs with the margins ``rewards.compute_margins`` wrote for these ``weights``;
    optionally safety-constrained."""

    margin_dataset_dir: str | Path
    primary: str
    weights: dict[str, float]
    safety: SafetyConstraint | None = None


def build_modpo_trainer(config: MODPOConfig, control: RunControl | None = None) -> PolicyTrainer:
    """Everything ``train_modpo`` runs, before training starts (tests inspect the trainer from here)."""
    from ..models import load_tokenizer, resolve_model
    from .trainers import MarginCollator, MODPOTrainer

    if not config.precompute_ref_log_probs:
        raise ValueError("train_modpo needs config.precompute_ref_log_probs=True")
    primary, weights, safety = config.primary, config.weights, config.safety
    primary_weight = float(weights.get(primary, 0.0))
    beta_eff = modpo_effective_beta(config.beta, primary_weight)
    output_dir, checkpoint_dir, resume_from = prepare_output_dir(config, control)
    pairs = load_margin_dataset(config.margin_dataset_dir, weights, primary)

    extra_columns = [MARGIN_COLUMN]
    safety_state = None
    if safety is not None:
        if safety.criterion == primary:
            raise ValueError("the safety constraint needs safety to be a non-primary criterion")
        delta_column = f"reward_delta_{safety.criterion}"
        if delta_column not in pairs.column_names:
            raise ValueError(
                f"{config.margin_dataset_dir} lacks {delta_column!r}: compute margins with a {safety.criterion} reward model"
            )
        extra_columns.append(delta_column)
        saved = read_checkpoint_state(resume_from)  # a resumed run continues from its stored multiplier
        safety_state = _SafetyState(
            safety,
            beta=config.beta,
            multiplier=float(saved.get("safety_lambda", safety.initial_lambda)),
            history=list(saved.get("safety_history", [])),
        )

    train_dataset = to_conversational_preferences(pairs, config.system_prompt, keep=tuple(extra_columns))
    # The collator needs the pad id before the trainer exists; the base tokenizer provides it.
    tokenizer = load_tokenizer(resolve_model(config.base_model, config.model_cache_dir))
    collator = MarginCollator(
        pad_token_id=tokenizer.pad_token_id,
        max_length=config.max_length,
        extra_columns=tuple(extra_columns),
    )
    trainer, progress = make_dpo_trainer(
        config,
        train_dataset,
        control,
        checkpoint_dir=checkpoint_dir,
        trainer_cls=MODPOTrainer,
        beta=beta_eff,
        data_collator=collator,
        state_providers=[safety_state.provider] if safety_state else None,
        trainer_kwargs={"primary_weight": primary_weight, "extra_columns": tuple(extra_columns), "safety": safety_state},
    )
    if safety_state is not None:
        safety_state.attach(trainer, _prepare_safety_eval_rows(trainer, safety, config, config.margin_dataset_dir))

    metrics: dict[str, Any] = {
        "pairs": len(pairs),
        **pairs_used(trainer, len(pairs)),
        "beta": config.beta,
        "beta_effective": beta_eff,
        "primary": primary,
        "weights": dict(weights),
    }
    record: dict[str, Any] = {
        "margin_dataset_dir": str(config.margin_dataset_dir),
        "primary": primary,
        "weights": dict(weights),
    }

    def after_training() -> dict[str, Any]:
        if safety_state is None:
            return {}
        (output_dir / "safety_lambda.json").write_text(json.dumps(safety_state.history, indent=2))
        return {"safety_lambda": safety_state.multiplier, "safety_history": safety_state.history}

    if safety is not None:
        record["safety_constraint"] = safety.to_dict()
    return PolicyTrainer(trainer, progress, output_dir, checkpoint_dir, resume_from, metrics=metrics, record=record,
                         after_training=after_training)


def train_modpo(config: MODPOConfig, control: RunControl | None = None) -> PolicyResult:
    """MODPO on the primary criterion's pairs with precomputed margins; optionally safety-constrained."""
    method = "modpo_safety" if config.safety is not None else "modpo"
    return train_policy(build_modpo_trainer(config, control), config, method=method)


def _prepare_safety_eval_rows(trainer, safety: SafetyConstraint, config: PolicyConfig,
                              margin_dataset_dir: str | Path) -> list[dict]:
    """Held-out safety pairs, tokenised exactly as the trainer tokenises its training pairs."""
    source = safety.eval_dataset_dir
    if source is None:
        card_path = Path(margin_dataset_dir) / "margins.json"
        source = json.loads(card_path.read_text()).get("dataset_dir") if card_path.is_file() else None
        if source is None:
            raise ValueError("SafetyConstraint.eval_dataset_dir is unset and margins.json names no dataset_dir")
    pairs = load_preference_split(source, safety.criterion)
    if len(pairs) > safety.max_eval_pairs:
        pairs = pairs.select(range(safety.max_eval_pairs))
    rows = to_conversational_preferences(pairs, config.system_prompt)
    prepared = trainer._prepare_dataset(rows, trainer.processing_class, trainer.args, "safety_eval")
    return [dict(row) for row in prepared]
