"""What every policy trainer shares: the config, the LoRA recipe, checkpoints, progress and cancellation.

LoRA recipe. Every policy (SFT, DPO, MODPO, joint DPO) builds its adapter with
``build_lora_config`` and initialises it with ``attach_lora`` under the same
``lora_init_seed``, so adapters trained for different criteria have the same
rank, target modules and starting A matrices and can be merged afterwards.

Checkpoints. Hugging Face checkpoints are not written atomically, so
``CheckpointMarkerCallback`` writes ``checkpoint-N/COMPLETE`` after the trainer
has finished saving, and a resumed run starts from the newest checkpoint that
has the marker; unmarked ones are removed. The marker is a manifest (every
file's name, size and sha256), written atomically after the save: a marked
checkpoint damaged afterwards (a full disk, a bad copy) fails verification, is
logged and set aside under ``checkpoints-damaged/`` (never deleted: someone may
want to look at it; outside ``checkpoints/`` so the trainer's rotation cannot
remove it), and the run resumes from the newest checkpoint that verifies, or
from scratch. Checkpoints always keep optimizer, scheduler and RNG state (never
``save_only_model``), so a resumed run continues where it left off and ends at
the same step count.

Configs. ``PolicyConfig`` is the training recipe every policy shares; each
method's config (``SFTConfig``, ``DPOConfig``, ``JointDPOConfig``,
``MODPOConfig``, in the method's module) extends it with the method's own data
fields (dataset paths, criterion, weights), so one object says everything a
run needs and is what the command line reads from TOML.

One skeleton. Every method has ``build_<method>_trainer(config, control)``,
which prepares the output folder and returns a ``PolicyTrainer`` (the trainer,
its progress callback, folders, and what to record), and
``train_<method>(config, control)``, which is ``train_policy`` on it: train
(resuming if a complete checkpoint is there), then ``finish`` (save the final
adapter/model, log history, metrics and policy.json).

Progress and cancellation come from the run control (``control.py``):
``control.progress(step, total, loss)`` after each step (with the latest logged
loss), ``control.metrics(step, logs)`` at each logging step, and
``control.should_stop()`` after each step; a True answer saves a checkpoint and
stops, returning a result with ``completed=False``. A damaged checkpoint set
aside before resuming is named through ``control.log``.
"""
from __future__ import annotations

import json
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from ..control import RunControl, run_control
from ..io import atomic_write_json, sha256_file
from ..models import load_causal_lm, load_tokenizer, resolve_model

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "COMPLETE"
# Sibling of the checkpoint folder that damaged checkpoints are moved into.
DAMAGED_CHECKPOINTS_DIR = "checkpoints-damaged"
DAMAGE_NOTE = "DAMAGED.txt"  # written into a set-aside checkpoint: which files failed and how
# Written into every saved adapter/model folder: what it must be loaded on top of (see load_policy_model).
POLICY_CARD = "attune_policy.json"
CHECKPOINT_STATE_FILE = "attune_state.json"
_CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")

DEFAULT_TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(kw_only=True)
class PolicyConfig:
    """The training recipe every policy trainer shares; each method's config adds its data fields.

    Paths in, paths out; nothing here touches Django."""

    output_dir: str | Path
    base_model: str = "smollm2-135m-instruct"
    # An adapter (e.g. the SFT adapter) merged into the base before training; the merged model is the reference.
    base_adapter: str | Path | None = None
    model_cache_dir: str | Path | None = None
    system_prompt: str | None = None

    full_finetune: bool = False
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.0
    lora_target_modules: tuple[str, ...] = DEFAULT_TARGET_MODULES
    lora_init_seed: int = 0
    # "nf4": 4-bit QLoRA (quantization.py): the frozen base in NF4 with double quantisation and bf16 compute,
    # paged AdamW; LoRA only; the adapter is evaluated and merged on the same quantised base. None: full precision.
    quantization: str | None = None

    beta: float = 0.1
    learning_rate: float = 5e-5
    max_steps: int = 100  # <= 0: train for num_train_epochs instead
    num_train_epochs: float = 1.0
    batch_size: int = 4
    gradient_accumulation_steps: int = 1
    max_length: int = 512
    warmup_steps: int = 0
    lr_scheduler_type: str = "linear"
    gradient_checkpointing: bool = False
    bf16: bool | None = None  # None: bf16 on a GPU that supports it, fp32 on CPU
    precompute_ref_log_probs: bool = True

    save_steps: int = 50
    save_total_limit: int | None = 2
    logging_steps: int = 1
    seed: int = 0
    resume: bool = True
    # Extra keyword arguments for the TRL/transformers config (escape hatch; recorded in policy.json).
    trainer_overrides: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(value: Any) -> Any:
    """A config value as TOML/JSON can hold it: paths as strings, tuples as lists, nested configs as tables."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "to_dict"):
        return value.to_dict()
    return value


@dataclass
class PolicyResult:
    output_dir: Path
    adapter_dir: Path | None  # the trained LoRA adapter (None for full fine-tuning or an unfinished run)
    model_dir: Path | None  # the full model (full fine-tuning only)
    metrics: dict[str, Any]
    log_history_path: Path
    checkpoint_dir: Path  # where checkpoint-N folders live
    last_checkpoint: Path | None
    resumed_from: Path | None
    completed: bool
    method: str

    def to_dict(self) -> dict[str, Any]:
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(self).items()}


# ---------------------------------------------------------------------------
# Prompts


def prompt_messages(prompt: str, system_prompt: str | None = None) -> list[dict[str, str]]:
    """The chat messages a policy sees for a scenario; used for training and should be used for generation."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": prompt})
    return messages


# ---------------------------------------------------------------------------
# Models and LoRA


def build_lora_config(config: PolicyConfig):
    """The one LoRA recipe every policy uses (so adapters can be merged). Adapter names must not contain '.'."""
    from peft import LoraConfig

    return LoraConfig(
        r=config.lora_rank,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=list(config.lora_target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def attach_lora(model, config: PolicyConfig, adapter_name: str = "default"):
    """Wrap ``model`` with a fresh LoRA adapter, initialised from ``config.lora_init_seed`` whatever the training seed."""
    import torch
    from peft import get_peft_model

    if "." in adapter_name:
        raise ValueError(f"adapter name {adapter_name!r} contains '.', which PEFT cannot address")
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(config.lora_init_seed)
        return get_peft_model(model, build_lora_config(config), adapter_name=adapter_name)


def load_base_model(config: PolicyConfig):
    """The model a policy starts from (and its reference): the base, with ``base_adapter`` merged in if given."""
    model_dir = resolve_model(config.base_model, config.model_cache_dir)
    if config.quantization is not None:
        from ..quantization import QUANTIZATIONS, load_quantized_base

        if config.quantization not in QUANTIZATIONS:
            raise ValueError(f"unknown quantization {config.quantization!r}; choose one of {', '.join(QUANTIZATIONS)}")
        if config.full_finetune:
            raise ValueError("4-bit QLoRA trains LoRA adapters on a frozen quantised base; it cannot full fine-tune")
        # The SFT adapter is merged into the bf16 base before quantising (quantization.load_quantized_base).
        model = load_quantized_base(model_dir, base_adapter=config.base_adapter, cache_dir=config.model_cache_dir)
    else:
        # fp32 master weights; bf16, where used, comes from autocast in the trainer.
        model = load_causal_lm(model_dir)
        if config.base_adapter is not None:
            from peft import PeftModel

            model = PeftModel.from_pretrained(model, str(config.base_adapter)).merge_and_unload()
    tokenizer = load_tokenizer(model_dir)
    if tokenizer.chat_template is None:
        raise ValueError(f"the tokenizer of {config.base_model!r} has no chat template; policies train on chat turns")
    return model, tokenizer


def _use_bf16(flag: bool | None) -> bool:
    import torch

    if not torch.cuda.is_available():
        return False
    return torch.cuda.is_bf16_supported() if flag is None else bool(flag)


def device_kwargs(bf16: bool | None) -> dict[str, Any]:
    """TRL configs raise on a CPU machine unless told: use_cpu there, and bf16 only where the GPU has it."""
    import torch

    if torch.cuda.is_available():
        return {"use_cpu": False, "bf16": _use_bf16(bf16)}
    return {"use_cpu": True, "bf16": False}


def checkpointed_training_arguments(config, *, checkpoint_dir: Path, epochs: float, **method_settings) -> dict[str, Any]:
    """The TRL/transformers config keywords of every trainer here (policies and reward models):
    checkpoints every ``save_steps`` that a job can resume from, the device, no reporting; the settings
    that a policy's and a reward model's ``config`` both have, under the same names; then the method's
    own (``method_settings``, TrainingArguments names) and the config's ``trainer_overrides``."""
    kwargs = dict(
        output_dir=str(checkpoint_dir),
        max_steps=config.max_steps if config.max_steps > 0 else -1,
        num_train_epochs=epochs,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        warmup_steps=config.warmup_steps,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_only_model=False,  # a resumable job needs optimizer, scheduler and RNG state
        seed=config.seed,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
        **device_kwargs(config.bf16),
        **method_settings,
    )
    kwargs.update(config.trainer_overrides)
    if kwargs.get("save_only_model"):
        raise ValueError("save_only_model=True makes checkpoints that cannot be resumed")
    return kwargs


def trainer_args_kwargs(config: PolicyConfig, checkpoint_dir: Path) -> dict[str, Any]:
    """Keyword arguments shared by every TRL/transformers config a policy builds."""
    quantized = {}
    if config.quantization is not None:
        from ..quantization import QLORA_OPTIMIZER

        quantized["optim"] = QLORA_OPTIMIZER
    return checkpointed_training_arguments(
        config, checkpoint_dir=checkpoint_dir, epochs=config.num_train_epochs,
        lr_scheduler_type=config.lr_scheduler_type,
        activation_checkpointing=config.gradient_checkpointing,  # TRL defaults it on; new name in transformers 5.24
        logging_steps=config.logging_steps,
        save_total_limit=config.save_total_limit,
        **quantized,
    )


# ---------------------------------------------------------------------------
# Checkpoints


def list_checkpoints(checkpoint_dir: str | Path) -> list[tuple[int, Path, bool]]:
    """(step, path, complete) for each checkpoint folder, oldest first."""
    root = Path(checkpoint_dir)
    if not root.is_dir():
        return []
    found = []
    for child in root.iterdir():
        match = _CHECKPOINT_RE.match(child.name)
        if match and child.is_dir():
            found.append((int(match.group(1)), child, (child / COMPLETE_MARKER).is_file()))
    return sorted(found)


def checkpoint_manifest(checkpoint: Path) -> dict[str, dict[str, Any]]:
    """{relative file name: {"size", "sha256"}} for every file in the checkpoint but the marker."""
    manifest = {}
    for file in sorted(p for p in checkpoint.rglob("*") if p.is_file()):
        name = file.relative_to(checkpoint).as_posix()
        if name in (COMPLETE_MARKER, COMPLETE_MARKER + ".tmp"):
            continue
        manifest[name] = {"size": file.stat().st_size, "sha256": sha256_file(file)}
    return manifest


def write_complete_marker(checkpoint: Path, step: int) -> None:
    """Mark a fully saved checkpoint complete; the marker carries its manifest."""
    _write_json_atomic(checkpoint / COMPLETE_MARKER, {"step": int(step), "files": checkpoint_manifest(checkpoint)})


def checkpoint_damage(checkpoint: Path) -> list[str]:
    """What is wrong with a marked checkpoint, file by file; empty when it verifies.

    A marker from before manifests (just the step number) cannot be checked and is trusted."""
    try:
        marker = json.loads((checkpoint / COMPLETE_MARKER).read_text())
    except (OSError, ValueError) as exc:
        return [f"{COMPLETE_MARKER}: unreadable ({exc})"]
    if not isinstance(marker, dict):
        return []
    files = marker.get("files")
    if not isinstance(files, dict) or not files:
        return [f"{COMPLETE_MARKER}: no file manifest"]
    problems = []
    for name, expected in sorted(files.items()):
        path = checkpoint / name
        if not path.is_file():
            problems.append(f"{name}: missing")
            continue
        size = path.stat().st_size
        if size != expected.get("size"):
            problems.append(f"{name}: {size} bytes, expected {expected.get('size')}")
        elif sha256_file(path) != expected.get("sha256"):
            problems.append(f"{name}: contents differ from the manifest (sha256)")
    return problems


def set_aside_damaged_checkpoint(checkpoint: Path) -> Path:
    """Move a damaged checkpoint to ``<checkpoints>/../checkpoints-damaged/checkpoint-N.damaged-<UTC time>``."""
    target_dir = checkpoint.parent.parent / DAMAGED_CHECKPOINTS_DIR
    target_dir.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    target = target_dir / f"{checkpoint.name}.damaged-{stamp}"
    suffix = 1
    while target.exists():
        suffix += 1
        target = target_dir / f"{checkpoint.name}.damaged-{stamp}-{suffix}"
    os.replace(checkpoint, target)
    return target


def damaged_checkpoints(checkpoint_dir: str | Path) -> dict[str, str]:
    """{set-aside folder name: its damage note} for the checkpoints set aside beside ``checkpoint_dir``."""
    root = Path(checkpoint_dir).parent / DAMAGED_CHECKPOINTS_DIR
    if not root.is_dir():
        return {}
    return {child.name: (child / DAMAGE_NOTE).read_text().strip() if (child / DAMAGE_NOTE).is_file() else ""
            for child in sorted(root.iterdir()) if child.is_dir()}


def find_resumable_checkpoint(checkpoint_dir: str | Path, *, remove_incomplete: bool = False,
                              verify: bool = False) -> Path | None:
    """The newest checkpoint with a COMPLETE marker; incomplete ones are ignored (and removed if asked).

    With ``verify``, each marked checkpoint, newest first, is checked against its manifest; a damaged one is
    logged (which checkpoint, which files) and set aside, and the next older one is tried."""
    checkpoints = list_checkpoints(checkpoint_dir)
    if remove_incomplete:
        for _, path, complete in checkpoints:
            if not complete:
                logger.warning("removing incomplete checkpoint %s (no %s marker)", path, COMPLETE_MARKER)
                shutil.rmtree(path, ignore_errors=True)
    for _, path, complete in reversed(checkpoints):
        if not complete:
            continue
        if not verify:
            return path
        problems = checkpoint_damage(path)
        if not problems:
            return path
        moved = set_aside_damaged_checkpoint(path)
        (moved / DAMAGE_NOTE).write_text("\n".join(problems) + "\n")
        logger.error("checkpoint %s is damaged (%s); set aside as %s, trying an older one",
                     path, "; ".join(problems), moved)
    return None


def read_checkpoint_state(checkpoint: Path | None) -> dict[str, Any]:
    if checkpoint is None or not (checkpoint / CHECKPOINT_STATE_FILE).is_file():
        return {}
    return json.loads((checkpoint / CHECKPOINT_STATE_FILE).read_text())


def _write_json_atomic(path: Path, payload: Any) -> None:
    atomic_write_json(path, payload, sort_keys=True, default=str)


def make_callbacks(control: RunControl | None, state_providers: list[Callable[[], dict]] | None = None):
    """The callbacks every trainer gets: progress/stop, then the checkpoint marker (last, on purpose)."""
    from transformers import TrainerCallback

    control = run_control(control)

    class ProgressAndStopCallback(TrainerCallback):
        def __init__(self):
            self.stopped = False
            self.loss = None

        def on_log(self, args, state, trainer_control, logs=None, **kwargs):
            if logs is None:
                return
            if "loss" in logs:
                self.loss = float(logs["loss"])
                control.progress(state.global_step, state.max_steps, self.loss)
            control.metrics(state.global_step, dict(logs))

        def on_step_end(self, args, state, trainer_control, **kwargs):
            # A step that is logged reports from on_log (with its own loss); the others report here.
            if not trainer_control.should_log:
                control.progress(state.global_step, state.max_steps, self.loss)
            if control.should_stop():
                self.stopped = True
                trainer_control.should_save = True  # keep the work done so far
                trainer_control.should_training_stop = True
            return trainer_control

    class CheckpointMarkerCallback(TrainerCallback):
        """Runs after the trainer has written checkpoint-N: extra state first, then the COMPLETE marker."""

        def on_save(self, args, state, trainer_control, **kwargs):
            if not state.is_world_process_zero:
                return
            checkpoint = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if not checkpoint.is_dir():
                return
            extra: dict[str, Any] = {}
            for provider in state_providers or []:
                extra.update(provider())
            _write_json_atomic(checkpoint / CHECKPOINT_STATE_FILE, extra)
            write_complete_marker(checkpoint, state.global_step)

    return ProgressAndStopCallback(), CheckpointMarkerCallback()


def quiet(trainer) -> None:
    """Drop the trainer's stdout printer (disable_tqdm swaps the progress bar for it); progress goes to callbacks."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def resume_point(checkpoint_dir: Path, control: RunControl | None = None) -> Path | None:
    """The newest complete checkpoint that verifies (incomplete ones removed, damaged ones set aside and logged)."""
    before = damaged_checkpoints(checkpoint_dir)
    found = find_resumable_checkpoint(checkpoint_dir, remove_incomplete=True, verify=True)
    for name, note in damaged_checkpoints(checkpoint_dir).items():
        if name not in before:
            run_control(control).log(f"damaged checkpoint set aside as {name}: {note}")
    return found


def prepare_output_dir(config: PolicyConfig, control: RunControl | None = None) -> tuple[Path, Path, Path | None]:
    """(output_dir, checkpoint_dir, checkpoint to resume from or None)."""
    output_dir = Path(config.output_dir)
    checkpoint_dir = output_dir / "checkpoints"
    output_dir.mkdir(parents=True, exist_ok=True)
    resume_from = None
    if config.resume:
        resume_from = resume_point(checkpoint_dir, control)
    elif checkpoint_dir.exists():
        shutil.rmtree(checkpoint_dir)
    return output_dir, checkpoint_dir, resume_from


# ---------------------------------------------------------------------------
# The one trainer skeleton


@dataclass
class PolicyTrainer:
    """A policy trainer ready to run, as every ``build_<method>_trainer`` returns it."""

    trainer: Any
    progress: Any  # the progress/stop callback: did the run stop early?
    output_dir: Path
    checkpoint_dir: Path
    resume_from: Path | None
    metrics: dict[str, Any] = field(default_factory=dict)  # known before training (pairs used, truncation)
    record: dict[str, Any] = field(default_factory=dict)  # extra top-level keys of policy.json
    # Metrics known only after training (MODPO's safety multiplier); may write files of its own.
    after_training: Callable[[], dict[str, Any]] | None = None


def build_trainer(trainer_cls, control: RunControl | None, *, state_providers=None, **kwargs):
    """``trainer_cls(**kwargs)`` with the progress/stop and checkpoint-marker callbacks, printing nothing.

    Returns (trainer, progress callback)."""
    progress, marker = make_callbacks(control, state_providers)
    trainer = trainer_cls(callbacks=[progress, marker], **kwargs)
    quiet(trainer)
    return trainer, progress


def sequence_logps(model, batch):
    """Summed completion log-probs per sequence of a collated preference batch, via the fused LM head TRL adds
    to the model (see trl.trainer.utils.add_fused_lm_head); the joint trainer and MODPO's safety measure share it."""
    completion_mask = batch["completion_mask"]
    labels = batch["input_ids"].masked_fill(completion_mask == 0, -100)
    outputs = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], labels=labels,
        fused_lm_head=True, use_cache=False,
    )
    return outputs.log_probs[:, -(completion_mask.size(1) - 1):].sum(dim=1)


def load_trainable_model(config: PolicyConfig):
    """The model to train (the base with ``base_adapter`` merged, plus a fresh LoRA adapter unless full fine-tuning)
    and its tokenizer."""
    model, tokenizer = load_base_model(config)
    if not config.full_finetune:
        model = attach_lora(model, config)
    return model, tokenizer


def train_policy(setup: PolicyTrainer, config: PolicyConfig, *, method: str) -> PolicyResult:
    """Train (resuming from ``setup.resume_from`` if set), then save and record the result."""
    trainer = setup.trainer
    trainer.train(resume_from_checkpoint=str(setup.resume_from) if setup.resume_from is not None else None)
    completed = not setup.progress.stopped
    last_checkpoint = find_resumable_checkpoint(setup.checkpoint_dir)
    metrics = {**setup.metrics, **(setup.after_training() if setup.after_training is not None else {})}
    return finish(
        trainer=trainer,
        config=config,
        method=method,
        output_dir=setup.output_dir,
        checkpoint_dir=setup.checkpoint_dir,
        resume_from=setup.resume_from,
        completed=completed,
        last_checkpoint=last_checkpoint,
        extra_metrics=metrics,
        extra_record=setup.record,
    )


def finish(
    *,
    trainer,
    config: PolicyConfig,
    method: str,
    output_dir: Path,
    checkpoint_dir: Path,
    resume_from: Path | None,
    completed: bool,
    last_checkpoint: Path | None,
    extra_metrics: dict[str, Any] | None = None,
    extra_record: dict[str, Any] | None = None,
) -> PolicyResult:
    """Save the final adapter/model (only for a completed run), the log history, metrics and policy.json."""
    history = list(trainer.state.log_history)
    log_history_path = output_dir / "log_history.json"
    _write_json_atomic(log_history_path, history)

    losses = [entry["loss"] for entry in history if "loss" in entry]
    metrics: dict[str, Any] = {
        "method": method,
        "global_step": int(trainer.state.global_step),
        "max_steps": int(trainer.state.max_steps),
        "final_loss": float(losses[-1]) if losses else None,
        "completed": completed,
    }
    train_summary = [entry for entry in history if "train_runtime" in entry]
    if train_summary:
        metrics["train_runtime_s"] = train_summary[-1]["train_runtime"]
    metrics.update(extra_metrics or {})

    adapter_dir = model_dir = None
    base_model_dir = resolve_model(config.base_model, config.model_cache_dir)
    card = {
        "method": method,
        "base_model_dir": str(base_model_dir),
        "base_adapter": str(config.base_adapter) if config.base_adapter is not None else None,
        "lora_init_seed": None if config.full_finetune else config.lora_init_seed,
    }
    if config.quantization is not None:
        from ..quantization import quantization_record

        card["quantization"] = quantization_record(config.quantization)
    if completed:
        model = trainer.model
        target = output_dir / ("model" if config.full_finetune else "adapter")

        def write(tmp: Path) -> None:
            if config.full_finetune:
                model.save_pretrained(tmp)
            else:
                model.save_pretrained(tmp, selected_adapters=["default"])
            trainer.processing_class.save_pretrained(tmp)
            _write_json_atomic(tmp / POLICY_CARD, card)

        _save_atomic_dir(target, write)
        if config.full_finetune:
            model_dir = target
        else:
            adapter_dir = target

    _write_json_atomic(output_dir / "metrics.json", metrics)
    record = {
        "method": method,
        "config": config.to_dict(),
        "base_model_dir": str(base_model_dir),
        "adapter_dir": str(adapter_dir) if adapter_dir else None,
        "model_dir": str(model_dir) if model_dir else None,
        "completed": completed,
        "quantization": card.get("quantization"),
        **(extra_record or {}),
    }
    _write_json_atomic(output_dir / "policy.json", record)
    return PolicyResult(
        output_dir=output_dir,
        adapter_dir=adapter_dir,
        model_dir=model_dir,
        metrics=metrics,
        log_history_path=log_history_path,
        checkpoint_dir=checkpoint_dir,
        last_checkpoint=last_checkpoint,
        resumed_from=resume_from,
        completed=completed,
        method=method,
    )


def load_policy_model(path: str | Path, *, dtype=None):
    """Load a trained policy folder (adapter, merged adapter or full model) on the base it was trained on.

    Returns (model, tokenizer). An adapter trained on an SFT-merged base is put back on that same base.
    """
    from peft import PeftModel

    path = Path(path)
    card_path = path / POLICY_CARD
    card = json.loads(card_path.read_text()) if card_path.is_file() else {}
    if (path / "adapter_config.json").is_file():
        base = card.get("base_model_dir") or json.loads((path / "adapter_config.json").read_text())[
            "base_model_name_or_path"
        ]
        if card.get("quantization"):
            # Trained on a 4-bit base: evaluated on that same quantised base, never on full precision.
            from ..quantization import load_quantized_base

            model = load_quantized_base(resolve_model(base), base_adapter=card.get("base_adapter"), for_training=False)
        else:
            model = load_causal_lm(base, dtype=dtype)
            if card.get("base_adapter"):
                model = PeftModel.from_pretrained(model, card["base_adapter"]).merge_and_unload()
        model = PeftModel.from_pretrained(model, str(path))
    else:
        model = load_causal_lm(path, dtype=dtype)
    tokenizer_dir = path if (path / "tokenizer_config.json").is_file() else resolve_model(card["base_model_dir"])
    return model, load_tokenizer(tokenizer_dir)


def _save_atomic_dir(target: Path, write: Callable[[Path], Any]) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    write(tmp)
    if target.exists():
        shutil.rmtree(target)
    os.rename(tmp, target)


def load_preference_split(dataset_dir: str | Path, criterion: str):
    """One criterion's pairs from a preference DatasetDict directory, in memory (no cache files written there)."""
    from datasets import load_from_disk

    data = load_from_disk(str(dataset_dir), keep_in_memory=True)
    if criterion not in data:
        raise KeyError(f"criterion {criterion!r} not in {dataset_dir}; splits: {sorted(data.keys())}")
    split = data[criterion]
    missing = {"prompt", "chosen", "rejected"} - set(split.column_names)
    if missing:
        raise ValueError(f"{dataset_dir}[{criterion}] lacks columns {sorted(missing)}")
    if len(split) == 0:
        raise ValueError(f"{dataset_dir}[{criterion}] has no pairs")
    return split


def to_conversational_preferences(dataset, system_prompt: str | None, keep: tuple[str, ...] = ()):
    """Raw prompt/chosen/rejected texts -> TRL conversational preference rows (the tokenizer's chat template applies)."""

    def convert(row):
        return {
            "prompt": prompt_messages(row["prompt"], system_prompt),
            "chosen": [{"role": "assistant", "content": row["chosen"]}],
            "rejected": [{"role": "assistant", "content": row["rejected"]}],
        }

    drop = [c for c in dataset.column_names if c not in ("prompt", "chosen", "rejected", *keep)]
    return dataset.map(convert, remove_columns=drop)
