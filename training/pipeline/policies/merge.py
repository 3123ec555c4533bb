"""Merging per-criterion adapters into one personalised adapter (PEFT ``add_weighted_adapter``).

Methods:

- ``cat``: exact. The merged adapter stacks the weighted A matrices and the B
  matrices, so its update is exactly ``sum_i w_i * dW_i`` (its rank is the sum
  of the ranks).
- ``svd``: the same weighted sum, re-factorised by SVD to ``svd_rank``; exact
  when ``svd_rank`` reaches the sum of ranks, a truncation otherwise.
- ``paper_linear``: what the study's "DPO soup" did: average the A matrices and
  the B matrices separately. ``B_avg @ A_avg`` is not ``sum_i w_i * dW_i``; it is
  labelled "paper-style" and "approximation" in ``merge.json``. It needs equal
  ranks, and is only meaningful for adapters trained from the same init seed.

Any weight vector works (weights need not sum to 1; negative weights are allowed).
"""
from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..control import RunControl, run_control
from ..models import load_causal_lm, load_tokenizer, resolve_model
from .common import POLICY_CARD

MERGE_METHODS = {"cat": "cat", "svd": "svd", "paper_linear": "linear"}
MERGED_ADAPTER_NAME = "merged"

_LABELS = {
    "cat": "exact: merged update equals the weighted sum of the adapters' updates",
    "svd": "weighted sum of updates, re-factorised by SVD (exact only when svd_rank >= sum of ranks)",
    "paper_linear": "paper-style linear averaging of LoRA A and B separately (approximation, as in the study's DPO soup)",
}


def safe_adapter_name(name: str) -> str:
    """PEFT addresses adapters by attribute path, so '.' (and other punctuation) cannot appear in a name."""
    cleaned = re.sub(r"[^0-9A-Za-z_]", "_", name)
    return cleaned if cleaned and not cleaned[0].isdigit() else f"a_{cleaned}"


def _policy_card(adapter_dir: Path) -> dict[str, Any]:
    card_path = adapter_dir / POLICY_CARD
    return json.loads(card_path.read_text()) if card_path.is_file() else {}


@dataclass(kw_only=True)
class MergeConfig:
    """Per-criterion adapters (name -> folder) and their weights, merged on ``base_model`` into ``output_dir``."""

    base_model: str | Path
    adapters: dict[str, Path]
    weights: dict[str, float]
    output_dir: str | Path
    method: str = "cat"
    svd_rank: int | None = None  # method "svd" only
    # The merged base the adapters were trained on (e.g. the SFT adapter); None: the one their cards name.
    base_adapter: str | Path | None = None
    model_cache_dir: str | Path | None = None


def merge_adapters(config: MergeConfig, control: RunControl | None = None) -> Path:
    """Write the merged adapter (loadable with ``load_causal_lm(base, adapter=...)``) and ``merge.json``.

    Progress counts the adapters loaded, then the merged adapter written."""
    from peft import PeftModel

    control = run_control(control)
    adapters, weights, method, svd_rank = config.adapters, config.weights, config.method, config.svd_rank
    base_adapter, output_dir = config.base_adapter, config.output_dir

    if method not in MERGE_METHODS:
        raise ValueError(f"unknown merge method {method!r}; choose from {sorted(MERGE_METHODS)}")
    if not adapters:
        raise ValueError("nothing to merge")
    unknown = sorted(set(weights) - set(adapters))
    unweighted = sorted(set(adapters) - set(weights))
    if unknown or unweighted:
        raise ValueError(f"weights and adapters must name the same things: no adapter for {unknown}, "
                         f"no weight for {unweighted}")
    if method == "svd" and svd_rank is None:
        raise ValueError("method 'svd' needs svd_rank")

    names: dict[str, str] = {}
    for name in adapters:
        safe = safe_adapter_name(name)
        if safe in names.values() or safe == MERGED_ADAPTER_NAME:
            safe = f"{safe}_{len(names)}"
        names[name] = safe

    init_seeds = {name: _policy_card(Path(path)).get("lora_init_seed") for name, path in adapters.items()}
    known_seeds = {seed for seed in init_seeds.values() if seed is not None}
    if method == "paper_linear" and len(known_seeds) > 1:
        raise ValueError(f"paper_linear averages A and B, which needs one LoRA init seed; got {init_seeds}")

    base_dir = resolve_model(config.base_model, config.model_cache_dir)
    cards = {name: _policy_card(Path(path)) for name, path in adapters.items()}
    trained_bases = {str(c["base_model_dir"]) for c in cards.values() if c.get("base_model_dir")}
    if trained_bases - {str(base_dir)}:
        raise ValueError(f"adapters were trained on {sorted(trained_bases)}, not on {base_dir}")
    quantizations = {(c.get("quantization") or {}).get("quant_type") for c in cards.values() if c}
    if len(quantizations) > 1:
        raise ValueError("adapters trained on a 4-bit base and on a full-precision base cannot be merged: "
                         f"{ {n: c.get('quantization') for n, c in cards.items()} }")
    quantization = next((c.get("quantization") for c in cards.values() if c.get("quantization")), None)
    trained_base_adapters = {c.get("base_adapter") for c in cards.values() if c}
    if len(trained_base_adapters) > 1:
        raise ValueError(f"adapters were trained on different merged bases: {sorted(map(str, trained_base_adapters))}")
    if base_adapter is None and trained_base_adapters:
        base_adapter = next(iter(trained_base_adapters))  # the SFT adapter they were all trained on, if any
    elif trained_base_adapters and {str(base_adapter)} != {str(a) for a in trained_base_adapters}:
        raise ValueError(f"base_adapter {base_adapter} differs from the one the adapters were trained on")
    model = load_causal_lm(base_dir)
    if base_adapter is not None:
        model = PeftModel.from_pretrained(model, str(base_adapter)).merge_and_unload()

    items = list(adapters.items())
    steps = len(items) + 1
    first_name, first_path = items[0]
    peft_model = PeftModel.from_pretrained(model, str(first_path), adapter_name=names[first_name])
    control.progress(1, steps)
    for done, (name, path) in enumerate(items[1:], start=2):
        peft_model.load_adapter(str(path), adapter_name=names[name])
        control.progress(done, steps)
    ranks = {name: int(peft_model.peft_config[names[name]].r) for name in adapters}

    peft_model.add_weighted_adapter(
        adapters=[names[n] for n in adapters],
        weights=[float(weights[n]) for n in adapters],
        adapter_name=MERGED_ADAPTER_NAME,
        combination_type=MERGE_METHODS[method],
        svd_rank=svd_rank,
    )
    if MERGED_ADAPTER_NAME not in peft_model.peft_config:  # PEFT returns silently when the name already exists
        raise RuntimeError("PEFT did not create the merged adapter")
    peft_model.set_adapter(MERGED_ADAPTER_NAME)

    output_dir = Path(output_dir)
    staging = output_dir.with_name(f".{output_dir.name}.tmp")
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir(parents=True)
    peft_model.save_pretrained(str(staging), selected_adapters=[MERGED_ADAPTER_NAME])
    merged_dir = staging / MERGED_ADAPTER_NAME  # PEFT puts a non-"default" adapter in a subfolder
    if not (merged_dir / "adapter_config.json").is_file():
        merged_dir = staging
    load_tokenizer(base_dir).save_pretrained(str(merged_dir))

    metadata = {
        "method": method,
        "peft_combination_type": MERGE_METHODS[method],
        "label": _LABELS[method],
        "paper_style": method == "paper_linear",
        "exact": method == "cat" or (method == "svd" and svd_rank is not None and svd_rank >= sum(ranks.values())),
        "weights": {n: float(weights[n]) for n in adapters},
        "adapters": {n: str(Path(p).resolve()) for n, p in adapters.items()},
        "adapter_names": names,
        "ranks": ranks,
        "merged_rank": int(peft_model.peft_config[MERGED_ADAPTER_NAME].r),
        "svd_rank": svd_rank,
        "lora_init_seeds": init_seeds,
    }
    (merged_dir / "merge.json").write_text(json.dumps(metadata, indent=2))
    (merged_dir / POLICY_CARD).write_text(json.dumps({
        "method": f"merge_{method}",
        "base_model_dir": str(base_dir),
        "base_adapter": str(base_adapter) if base_adapter is not None else None,
        # The LoRA arithmetic is exact whatever the base; the merged adapter is used on the base it was trained on.
        **({"quantization": quantization} if quantization else {}),
    }, indent=2))

    if output_dir.exists():
        shutil.rmtree(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    os.rename(merged_dir, output_dir)
    shutil.rmtree(staging, ignore_errors=True)
    control.progress(steps, steps)
    return output_dir
