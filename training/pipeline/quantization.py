"""4-bit QLoRA (Dettmers et al. 2023), the setting the study trained its Mistral-7B policies with.

The frozen base is loaded in 4-bit NF4 with double quantisation (the
quantisation constants quantised too) and bf16 compute; the LoRA adapters
train in higher precision on top; the optimizer is paged AdamW (optimizer
state paged to CPU memory under pressure). ``PolicyConfig.quantization =
"nf4"`` turns it on.

- ``qlora_problem()`` says why this process cannot run it (no CUDA GPU, no
  bf16 on the GPU, bitsandbytes missing or too old, or its 4-bit kernels not
  working), or None. Experiment validation asks it at Start and the policy
  stage asks again on the worker before training.
- ``load_quantized_base`` loads the base in 4-bit. A base adapter (the SFT
  adapter a DPO-family policy starts from) cannot be merged into 4-bit weights
  exactly, so it is merged into the bf16 base first, the merged checkpoint is
  cached once on disk, and that is what gets quantised: the reference and the
  starting policy are the same quantised model.
- The policy card and policy.json carry ``quantization_record()``; an adapter
  trained on a 4-bit base is loaded for evaluation (``load_policy_model``) and
  merged (``merge_adapters``) on that same quantised base, never on the
  full-precision one it was not trained against.
"""
from __future__ import annotations

import hashlib
import importlib.metadata
import os
import shutil
from pathlib import Path
from typing import Any

__all__ = [
    "QUANTIZATIONS",
    "QuantizationUnavailable",
    "QLORA_OPTIMIZER",
    "MIN_BITSANDBYTES",
    "qlora_problem",
    "quantization_problem",
    "bitsandbytes_config",
    "quantization_record",
    "load_quantized_base",
]

class QuantizationUnavailable(RuntimeError):
    """4-bit QLoRA asked for where this process cannot run it (the message says why)."""


QUANTIZATIONS = ("nf4",)  # None: no quantisation (full precision)
QLORA_OPTIMIZER = "paged_adamw_32bit"
MIN_BITSANDBYTES = (0, 43, 0)  # NF4 + double quant + paged optimizers with the transformers 5 integration


def _version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)


def qlora_problem(*, device: str = "cuda") -> str | None:
    """Why 4-bit QLoRA cannot run in this process, in words a researcher can act on; None when it can.

    Workers need a CUDA GPU (``device="cuda"``, what Start and the policy stage ask). ``device="cpu"`` asks
    whether bitsandbytes' CPU backend (>= 0.49) can do it here: tests use it for a tiny 4-bit step."""
    try:
        version = importlib.metadata.version("bitsandbytes")
    except importlib.metadata.PackageNotFoundError:
        return ("4-bit QLoRA needs the bitsandbytes package, which is not installed on this worker "
                "(install it on the GPU worker: see README, 'GPU workers')")
    if _version_tuple(version) < MIN_BITSANDBYTES:
        return (f"4-bit QLoRA needs bitsandbytes >= {'.'.join(map(str, MIN_BITSANDBYTES))}; "
                f"this worker has {version}")
    import torch

    if device == "cpu":
        if _version_tuple(version) < (0, 49, 0):
            return f"bitsandbytes {version} has no CPU 4-bit backend (0.49 or later has)"
        try:
            import bitsandbytes.functional as bnb_functional

            probe = torch.randn(64, 64, dtype=torch.bfloat16)
            packed, state = bnb_functional.quantize_4bit(probe, quant_type="nf4", compress_statistics=True)
            bnb_functional.dequantize_4bit(packed, state, quant_type="nf4")
        except Exception as exc:
            return f"bitsandbytes {version} cannot quantise to 4 bits on this CPU ({type(exc).__name__}: {exc})"
        return None
    if not torch.cuda.is_available():
        return ("4-bit QLoRA needs a CUDA GPU and this worker has none (bitsandbytes' NF4 training kernels "
                "and paged optimizers run on CUDA); leave policy_quantization unset to train in full precision")
    if not torch.cuda.is_bf16_supported():
        return (f"4-bit QLoRA here computes in bf16, which {torch.cuda.get_device_name(0)} does not support")
    try:
        import bitsandbytes.functional as bnb_functional

        probe = torch.randn(64, 64, device="cuda", dtype=torch.bfloat16)
        packed, state = bnb_functional.quantize_4bit(probe, quant_type="nf4", compress_statistics=True)
        restored = bnb_functional.dequantize_4bit(packed, state, quant_type="nf4")
        if not torch.isfinite(restored).all() or (restored.float() - probe.float()).abs().mean() > 0.2:
            return "bitsandbytes' 4-bit round trip gave wrong numbers on this GPU"
    except Exception as exc:  # a broken CUDA setup, a kernel missing for this GPU
        return f"bitsandbytes {version} cannot quantise to 4 bits on this GPU ({type(exc).__name__}: {exc})"
    return None


def quantization_problem(quantization: str | None) -> str | None:
    """The check for a policy's ``quantization`` setting: unknown value, or this process cannot run it."""
    if quantization is None:
        return None
    if quantization not in QUANTIZATIONS:
        return f"unknown quantization {quantization!r}; choose one of: {', '.join(QUANTIZATIONS)} (or leave it unset)"
    return qlora_problem()


def bitsandbytes_config():
    """NF4, double quantisation, bf16 compute: the QLoRA paper's (and the study's) setting."""
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=torch.bfloat16)


def quantization_record(quantization: str | None) -> dict[str, Any] | None:
    """What the lineage and the policy card say about the quantised base (None without quantisation)."""
    if quantization is None:
        return None
    try:
        version = importlib.metadata.version("bitsandbytes")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"method": "qlora", "quant_type": quantization, "bits": 4, "double_quant": True,
            "compute_dtype": "bfloat16", "optimizer": QLORA_OPTIMIZER, "bitsandbytes": version}


def _merged_base_dir(base_dir: Path, base_adapter: Path, cache_dir: Path | None) -> Path:
    """The base with ``base_adapter`` merged in, in bf16, written once under the cache (atomic rename)."""
    import torch
    from peft import PeftModel

    from .models import default_cache_dir, load_causal_lm, load_tokenizer

    key = hashlib.sha256(f"{Path(base_dir).resolve()}|{Path(base_adapter).resolve()}".encode()).hexdigest()[:16]
    target = Path(cache_dir or default_cache_dir()) / f"merged-base-{key}"
    if (target / "config.json").is_file():
        return target
    model = load_causal_lm(base_dir, dtype=torch.bfloat16)
    model = PeftModel.from_pretrained(model, str(base_adapter)).merge_and_unload()
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    model.save_pretrained(tmp, safe_serialization=True)
    load_tokenizer(base_dir).save_pretrained(tmp)
    try:
        os.rename(tmp, target)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def load_quantized_base(base_dir: str | Path, *, base_adapter: str | Path | None = None,
                        cache_dir: str | Path | None = None, for_training: bool = True, device: str = "cuda"):
    """The base (with ``base_adapter`` merged in first, if given) loaded in 4-bit NF4 on this process's GPU
    (``device="cpu"``: bitsandbytes' CPU backend, for tests). Raises QuantizationUnavailable where it cannot."""
    problem = qlora_problem(device=device)
    if problem:
        raise QuantizationUnavailable(problem)
    import torch
    from transformers import AutoModelForCausalLM

    source = Path(base_dir)
    if base_adapter is not None:
        source = _merged_base_dir(source, Path(base_adapter), Path(cache_dir) if cache_dir else None)
    target = torch.cuda.current_device() if device == "cuda" else device
    model = AutoModelForCausalLM.from_pretrained(str(source), quantization_config=bitsandbytes_config(),
                                                 dtype=torch.bfloat16, device_map={"": target})
    if for_training:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)
    return model
