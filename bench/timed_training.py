"""What the training benches share (bench_gpu.py, bench_modpo.py): a DPO or MODPO trainer from a recipe, with every
optimizer step timed. Imported inside the functions that train, so a bench's parent process never loads TRL."""
from __future__ import annotations

import time


def timed_trainer(method: str, recipe: dict, data: dict):
    """The TRL trainer for ``method`` ("dpo" on ``data["prefs"]``, else MODPO on ``data["margins"]`` with
    ``data["weights"]``, empathy primary) and the list its per-step seconds are appended to as it trains
    (CUDA-synchronised, so a step's time is its GPU work, not its launch)."""
    import torch
    from transformers import TrainerCallback

    from training.pipeline.policies.dpo import DPOConfig, build_dpo_trainer
    from training.pipeline.policies.modpo import MODPOConfig, build_modpo_trainer

    cuda = torch.cuda.is_available()

    class StepTimer(TrainerCallback):
        def __init__(self):
            self.times, self._start = [], None

        def on_step_begin(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self._start = time.perf_counter()

        def on_step_end(self, args, state, control, **kwargs):
            if cuda:
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self._start)

    if method == "dpo":
        trainer = build_dpo_trainer(DPOConfig(**recipe, dataset_dir=data["prefs"], criterion="empathy")).trainer
    else:
        trainer = build_modpo_trainer(MODPOConfig(**recipe, margin_dataset_dir=data["margins"], weights=data["weights"],
                                                  primary="empathy")).trainer
    timer = StepTimer()
    trainer.add_callback(timer)
    return trainer, timer.times
