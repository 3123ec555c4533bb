"""Attune's trainer classes: MODPO's trainer and collator (``modpo.py`` has the loss and the route) and the
joint-loss DPO trainer (``joint.py``).

This module imports TRL and transformers at its top, so nothing imports it at package import: the
``build_<method>_trainer`` functions import it when they build a trainer, and ``policies.MODPOTrainer``,
``policies.MarginCollator`` and ``policies.JointDPOTrainer`` load it on first use.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from transformers import Trainer
from trl import DPOTrainer
from trl.trainer.dpo_trainer import DataCollatorForPreference

from .common import sequence_logps
from .joint import joint_dpo_loss
from .modpo import MARGIN_COLUMN

__all__ = ["JointDPOTrainer", "MODPOTrainer", "MarginCollator"]


@dataclass
class MarginCollator(DataCollatorForPreference):
    """TRL's preference collator plus per-pair float columns (``margin`` and any ``reward_delta_*``)."""

    extra_columns: tuple[str, ...] = (MARGIN_COLUMN,)

    def torch_call(self, examples):
        batch = super().torch_call(examples)
        for column in self.extra_columns:
            if column in examples[0]:
                batch[column] = torch.tensor([float(example[column]) for example in examples], dtype=torch.float32)
        return batch


class MODPOTrainer(DPOTrainer):
    """DPOTrainer whose loss is MODPO's; ``args.beta`` must already be beta / w_k."""

    def __init__(self, *args, primary_weight: float, extra_columns=(MARGIN_COLUMN,), safety=None, **kwargs):
        self.primary_weight = float(primary_weight)
        self.extra_columns = tuple(extra_columns)
        self.safety = safety  # modpo._SafetyState or None
        super().__init__(*args, **kwargs)
        if not self.precompute_ref_logps:
            raise ValueError("MODPO here needs precompute_ref_log_probs=True (the margin shifts the stored ref log-probs)")

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        for column in self.extra_columns:
            if column not in self._signature_columns:
                self._signature_columns.append(column)

    def compute_ref_log_probs(self, model, inputs):
        # The precompute pass runs our collator too; the margin columns must not reach the model.
        inputs = {k: v for k, v in inputs.items() if k not in self.extra_columns}
        return super().compute_ref_log_probs(model, inputs)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        inputs = dict(inputs)
        margin = inputs.pop(MARGIN_COLUMN, None)
        extras = {k: inputs.pop(k) for k in self.extra_columns if k in inputs}
        if margin is None:
            raise KeyError("MODPO batch has no 'margin': the column was dropped before the loss")
        if self.safety is not None:
            if self.model.training:
                self.safety.maybe_update(self)
            margin = margin + self.safety.multiplier * extras[self.safety.delta_column]
            self._metrics["train" if self.model.training else "eval"]["safety/lambda"].append(self.safety.multiplier)
        ref_chosen = inputs["ref_chosen_logps"]
        shift = margin.to(ref_chosen.device, ref_chosen.dtype) / (self.primary_weight * self.beta)
        inputs["ref_chosen_logps"] = ref_chosen + shift
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)


class JointDPOTrainer(Trainer):
    """One sigmoid over the weighted sum of per-criterion DPO logits; batches come from ``joint.collate_joint``."""

    def __init__(self, *args, beta: float, criterion_weights: list[float], **kwargs):
        super().__init__(*args, **kwargs)
        self.beta = float(beta)
        self.criterion_weights = torch.tensor(criterion_weights, dtype=torch.float32)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ref_chosen, ref_rejected = inputs["ref_chosen_logps"], inputs["ref_rejected_logps"]
        batch_size, n_criteria = ref_chosen.shape
        logps = sequence_logps(model, inputs)
        chosen, rejected = logps.float().chunk(2)
        chosen = chosen.view(n_criteria, batch_size).T
        rejected = rejected.view(n_criteria, batch_size).T
        weights = self.criterion_weights.to(chosen.device)
        loss, logits = joint_dpo_loss(chosen, rejected, ref_chosen, ref_rejected, weights, self.beta)
        return (loss, {"logits": logits}) if return_outputs else loss
