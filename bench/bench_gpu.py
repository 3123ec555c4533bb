"""DPO and MODPO on a ~1B Llama-shaped model: optimizer-step time, tokens/s and model FLOP utilisation.

The model is built from its config in code (random weights, nothing to download or carry), with the tiny
built-in chat tokenizer; the preference pairs are synthetic and all of one length, so every sequence in a
batch is real work (no padding to speak of). Both trainers are the platform's own (policies.dpo,
policies.modpo) with the reference log-probs precomputed before the first step, LoRA (the platform's
recipe) and full fine-tuning, bf16 autocast on a GPU.

MFU = achieved model FLOP/s / the card's dense bf16 peak. Model FLOPs per trained token follow the PaLM
appendix: full fine-tuning 6·N + 12·L·d·T (forward and backward, weight gradients included); LoRA
4·N + 8·L·d·T (no weight gradients for the frozen base; the adapters' own FLOPs are left out), N the
matmul parameters (embeddings excluded, the output head included), L layers, d the hidden size, T the
sequence length. Goals (issue 13): >= 40% MFU for full fine-tuning at 1B, MODPO / DPO step time <= 1.05.

    python bench/bench_gpu.py                          # ~1.1B (TinyLlama shape), on the GPU
    python bench/bench_gpu.py --tiny --steps 3         # CPU smoke test: a tiny model, seconds
    python bench/bench_gpu.py --peak-tflops 989        # a card the table below does not know
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# Dense bf16 tensor-core peaks (no sparsity), from the vendors' data sheets; matched against the device name.
BF16_PEAK_TFLOPS = [
    ("H200", 989.4), ("H100 PCIe", 756.0), ("H100", 989.4), ("GH200", 989.4), ("A100", 312.0), ("L40S", 362.1),
    ("L40", 181.0), ("L4", 121.0), ("A10G", 70.0), ("A10", 125.0), ("RTX 6000 Ada", 364.2), ("A6000", 154.8),
]

# ~1.1B parameters, TinyLlama-1.1B's shape (Llama 2 architecture, grouped-query attention).
ONE_B = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
             num_key_value_heads=4, vocab_size=32000)
TINY = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            vocab_size=1024)


def peak_tflops(name: str) -> float | None:
    for key, value in BF16_PEAK_TFLOPS:
        if key.lower() in name.lower():
            return value
    return None


def build_model(out: Path, shape: dict, max_length: int) -> tuple[Path, dict]:
    """A random Llama of ``shape`` with the tiny chat tokenizer, saved in bf16; returns (dir, size facts)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from training.pipeline.models import build_tiny_causal_lm

    build_tiny_causal_lm(out, seed=0)  # the tokenizer and chat template; its tiny weights are replaced below
    tokenizer = AutoTokenizer.from_pretrained(str(out))
    vocab = max(shape["vocab_size"], len(tokenizer))
    config = LlamaConfig(**{**shape, "vocab_size": vocab}, max_position_embeddings=max(2048, max_length),
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    torch.manual_seed(0)
    with torch.device("cpu"):
        model = LlamaForCausalLM(config).to(torch.bfloat16)
    for stale in out.glob("*.safetensors"):
        stale.unlink()
    model.save_pretrained(out, safe_serialization=True)
    total = sum(p.numel() for p in model.parameters())
    embedding = model.get_input_embeddings().weight.numel()
    facts = {"parameters": total, "matmul_parameters": total - embedding, "layers": config.num_hidden_layers,
             "hidden": config.hidden_size, "vocab": vocab}
    del model
    gc.collect()
    return out, facts


def build_data(root: Path, *, pairs: int, prompt_words: int, response_words: int) -> dict:
    """Synthetic preference pairs of one length and MODPO margins from a tiny reward model (computed once)."""
    from datasets import Dataset, DatasetDict

    from training.pipeline.models import build_tiny_sequence_classifier
    from training.pipeline.rewards import MarginsConfig, RewardModelConfig, compute_margins, train_reward_model

    words = "I hear how hard this has been and I am here with you while we talk it through together".split()

    def text(n: int, offset: int) -> str:
        return " ".join(words[(offset + i) % len(words)] for i in range(n))

    rows = {c: [] for c in ("empathy", "safety")}
    for i in range(pairs):
        for c in rows:
            rows[c].append({"prompt": text(prompt_words, i), "chosen": text(response_words, i + 1),
                            "rejected": text(response_words, i + 2), "scenario_id": f"s{i}", "criterion": c,
                            "source": "bench", "chosen_score": 10.0, "rejected_score": -10.0})
    prefs = root / "prefs"
    DatasetDict({c: Dataset.from_list(r) for c, r in rows.items()}).save_to_disk(str(prefs))
    rm = train_reward_model(RewardModelConfig(dataset_dir=prefs, criterion="safety", output_dir=root / "rm_safety",
                                              backbone=str(build_tiny_sequence_classifier(root / "tiny_rm", seed=0)),
                                              max_steps=1, batch_size=4, validation_fraction=0.0))
    weights = {"empathy": 0.6, "safety": 0.4}
    margins = compute_margins(MarginsConfig(dataset_dir=prefs, primary="empathy", weights=weights,
                                            reward_model_dirs={"safety": rm.output_dir}, output_dir=root / "margins"))
    return {"prefs": str(prefs), "margins": str(margins), "weights": weights}


def run_one(method: str, mode: str, model_dir: Path, data: dict, out: Path, args) -> dict:
    """Train ``args.steps`` steps; per-step times (CUDA-synchronised) and tokens per step."""
    import torch
    from timed_training import timed_trainer

    cuda = torch.cuda.is_available()
    recipe = dict(output_dir=out, base_model=str(model_dir), max_steps=args.steps, batch_size=args.batch_size,
                  save_steps=10**6, max_length=args.max_length, learning_rate=1e-5, beta=0.1, resume=False,
                  full_finetune=(mode == "full"), lora_rank=16, lora_alpha=32, bf16=True if cuda else None,
                  gradient_checkpointing=args.gradient_checkpointing, precompute_ref_log_probs=True,
                  logging_steps=max(1, args.steps))

    trainer, step_times = timed_trainer(method, recipe, data)
    dataset = trainer.train_dataset
    # Each pair is two sequences, prompt + chosen and prompt + rejected (each cut at max_length).
    sequences = [(min(len(p) + len(c), args.max_length), min(len(p) + len(r), args.max_length))
                 for p, c, r in zip(dataset["prompt_ids"], dataset["chosen_ids"], dataset["rejected_ids"])]
    lengths = [a + b for a, b in sequences]
    seq_len = max(max(pair) for pair in sequences)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    result = {"method": method, "mode": mode, "step_times": step_times,
              "tokens_per_step": statistics.mean(lengths) * args.batch_size * max(1, trainer.args.gradient_accumulation_steps),
              "seq_len": seq_len,
              "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None}
    del trainer
    gc.collect()
    if cuda:
        torch.cuda.empty_cache()
    return result


def model_flops_per_token(facts: dict, mode: str, seq_len: int) -> float:
    n, layers, hidden = facts["matmul_parameters"], facts["layers"], facts["hidden"]
    if mode == "full":
        return 6 * n + 12 * layers * hidden * seq_len
    return 4 * n + 8 * layers * hidden * seq_len


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="a tiny model (CPU smoke test) instead of ~1B")
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the timing")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--pairs", type=int, default=None, help="default: enough for every step")
    parser.add_argument("--prompt-words", type=int, default=96)
    parser.add_argument("--response-words", type=int, default=192)
    parser.add_argument("--max-length", type=int, default=1024)
    parser.add_argument("--modes", default="full,lora")
    parser.add_argument("--methods", default="dpo,modpo")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the card's dense bf16 peak (default: from the table)")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if args.warmup >= args.steps:
        parser.error("--warmup must be below --steps")

    import torch

    if not torch.cuda.is_available() and not args.tiny:
        print("no CUDA GPU here: running the tiny smoke configuration (--tiny); its numbers are not a GPU figure")
        args.tiny = True
    if args.tiny:
        args.prompt_words, args.response_words = min(args.prompt_words, 12), min(args.response_words, 24)
        args.batch_size = min(args.batch_size, 4)
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name(0) if cuda else "CPU"
    peak = args.peak_tflops or (peak_tflops(device) if cuda else None)
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
    pairs = args.pairs or args.batch_size * args.steps
    results = []
    with tempfile.TemporaryDirectory(prefix="attune-bench-gpu-") as tmp:
        root = Path(tmp)
        model_dir, facts = build_model(root / "model", TINY if args.tiny else ONE_B, args.max_length)
        data = build_data(root, pairs=pairs, prompt_words=args.prompt_words, response_words=args.response_words)
        for mode in args.modes.split(","):
            for method in args.methods.split(","):
                run = run_one(method, mode, model_dir, data, root / f"{method}-{mode}", args)
                timed = run["step_times"][args.warmup:]
                step = statistics.median(timed)
                tokens_s = run["tokens_per_step"] / step
                flops = model_flops_per_token(facts, mode, run["seq_len"]) * tokens_s
                run.update(median_step_s=step, step_spread_s=(min(timed), max(timed)), tokens_per_s=tokens_s,
                           model_tflops=flops / 1e12, mfu=(flops / 1e12 / peak) if peak else None)
                results.append(run)
    print(f"device: {device}; bf16 peak {peak or 'unknown'} TFLOPS; model {'tiny' if args.tiny else '~1B Llama'} "
          f"({facts['parameters'] / 1e6:,.1f} M parameters, {facts['layers']} layers, d={facts['hidden']}); "
          f"batch {args.batch_size} pairs, steps {args.steps} (warm-up {args.warmup}), ref log-probs precomputed, "
          f"{'bf16 autocast' if cuda else 'fp32 (CPU)'}{', gradient checkpointing' if args.gradient_checkpointing else ''}")
    for r in results:
        mfu = f"{100 * r['mfu']:5.1f}%" if r["mfu"] is not None else "  n/a"
        memory = f"{r['peak_memory_gib']:6.1f} GiB" if r["peak_memory_gib"] is not None else "     n/a"
        print(f"{r['method']:5} {r['mode']:4}  step {r['median_step_s'] * 1000:9.1f} ms "
              f"(min {r['step_spread_s'][0] * 1000:.1f}, max {r['step_spread_s'][1] * 1000:.1f})  "
              f"{r['tokens_per_s']:10.0f} tokens/s  {r['model_tflops']:8.2f} TFLOP/s  MFU {mfu}  peak {memory}  "
              f"seq {r['seq_len']}")
    for mode in args.modes.split(","):
        by = {r["method"]: r for r in results if r["mode"] == mode}
        if "dpo" in by and "modpo" in by:
            print(f"MODPO / DPO step time ({mode}): {by['modpo']['median_step_s'] / by['dpo']['median_step_s']:.3f} (goal <= 1.05)")
    full_dpo = next((r for r in results if r["mode"] == "full" and r["method"] == "dpo"), None)
    if full_dpo and full_dpo["mfu"] is not None:
        print(f"MFU, full fine-tuning DPO: {100 * full_dpo['mfu']:.1f}% (goal >= 40%)")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": device, "peak_tflops": peak, "model": facts,
                                               "args": vars(args), "results": results}, indent=2))


if __name__ == "__main__":
    main()
