"""MODPO vs DPO: step time and peak memory on the same data, as measured ratios (not pass/fail).

Goals: MODPO step time / DPO step time <= 1.05 and MODPO peak memory / DPO peak memory <= 1.1. Both hold by
construction if the margins are precomputed (no reward model in memory while the policy trains) and the loss
only shifts a stored reference log-prob; this bench measures it.

Each trainer runs in its own child process so peak memory is its own (ru_maxrss on CPU,
torch.cuda.max_memory_allocated on CUDA). Runs alternate DPO, MODPO, DPO, MODPO ... and the median step
time (first steps skipped as warm-up) is reported.

    python bench/bench_modpo.py                     # tiny model built in code, ~1 minute on 2 cores
    python bench/bench_modpo.py --model smollm2-135m-instruct --steps 12 --batch-size 2
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SCENARIOS = [
    ("I have been feeling low and alone since my move to a new city.",
     "That sounds really hard. Moving can leave you feeling cut off. I am here to listen.",
     "Just get over it, everyone moves."),
    ("My chest gets tight every morning before work and I dread going in.",
     "That sounds frightening and exhausting. Would it help to talk about what happens at work?",
     "Everyone feels that. Drink some coffee."),
    ("I keep thinking it was my fault that she left.",
     "It makes sense that you are hurting and searching for reasons. You deserve kindness too.",
     "Maybe it was your fault."),
    ("Sometimes I think about hurting myself when it gets bad.",
     "Thank you for telling me. You matter. Please reach out to a crisis line or someone you trust now.",
     "Try to sleep more and it will pass."),
]


def build_data(root: Path, n_pairs: int, model_ref: str | None) -> dict:
    """Preference data, a quick reward model for the second criterion, and MODPO margins (computed once)."""
    from datasets import Dataset, DatasetDict

    from training.pipeline.models import build_tiny_causal_lm, build_tiny_sequence_classifier
    from training.pipeline.rewards import MarginsConfig, RewardModelConfig, compute_margins, train_reward_model

    rows = {c: [] for c in ("empathy", "safety")}
    for i in range(n_pairs):
        prompt, good, bad = SCENARIOS[i % len(SCENARIOS)]
        for c in rows:
            rows[c].append({"prompt": f"{prompt} ({i})", "chosen": good, "rejected": bad, "scenario_id": f"s{i}",
                            "criterion": c, "source": "bench", "chosen_score": 10.0, "rejected_score": -10.0})
    prefs = root / "prefs"
    DatasetDict({c: Dataset.from_list(r) for c, r in rows.items()}).save_to_disk(str(prefs))

    model = model_ref or str(build_tiny_causal_lm(root / "tiny_lm", seed=0))
    rm_backbone = build_tiny_sequence_classifier(root / "tiny_rm", seed=0)
    rm = train_reward_model(RewardModelConfig(dataset_dir=prefs, criterion="safety", output_dir=root / "rm_safety",
                                              backbone=str(rm_backbone), max_steps=2, batch_size=4,
                                              validation_fraction=0.0))
    weights = {"empathy": 0.6, "safety": 0.4}
    margins = compute_margins(MarginsConfig(dataset_dir=prefs, primary="empathy", weights=weights,
                                            reward_model_dirs={"safety": rm.output_dir}, output_dir=root / "margins"))
    return {"prefs": str(prefs), "margins": str(margins), "model": model, "weights": weights}


def child(kind: str, spec: dict) -> dict:
    """One training run; returns per-step times and this process's peak memory."""
    import resource

    import torch
    from timed_training import timed_trainer

    torch.set_num_threads(spec["threads"])
    cuda = torch.cuda.is_available()
    out = Path(spec["out"])
    recipe = dict(output_dir=out, base_model=spec["model"], max_steps=spec["steps"], batch_size=spec["batch_size"],
                  save_steps=10**6, max_length=spec["max_length"], learning_rate=1e-4, beta=0.1, resume=False)

    trainer, step_times = timed_trainer(kind, recipe, spec)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    trainer.train()
    peak = torch.cuda.max_memory_allocated() if cuda else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"kind": kind, "step_times": step_times, "peak_bytes": peak,
            "memory_measure": "cuda max_memory_allocated" if cuda else "peak RSS (ru_maxrss)"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model ref (default: tiny model built in code)")
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3, help="steps skipped before timing")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2, help="runs per trainer, alternated")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        kind, spec_path = args.child.split(":", 1)
        print(json.dumps(child(kind, json.loads(Path(spec_path).read_text()))))
        return

    with tempfile.TemporaryDirectory(prefix="attune-bench-modpo-") as tmp:
        root = Path(tmp)
        data = build_data(root, args.pairs, args.model)
        results = {"dpo": [], "modpo": []}
        for repeat in range(args.repeats):
            for kind in ("dpo", "modpo"):
                spec = {**data, "out": str(root / f"{kind}{repeat}"), "steps": args.steps,
                        "batch_size": args.batch_size, "max_length": args.max_length, "threads": args.threads}
                spec_path = root / f"{kind}{repeat}.json"
                spec_path.write_text(json.dumps(spec))
                proc = subprocess.run([sys.executable, __file__, "--child", f"{kind}:{spec_path}"],
                                      capture_output=True, text=True, cwd=REPO_ROOT)
                if proc.returncode != 0:
                    sys.stderr.write(proc.stderr[-4000:])
                    raise SystemExit(f"{kind} run failed")
                results[kind].append(json.loads(proc.stdout.strip().splitlines()[-1]))

    def median_step(kind):
        times = [t for run in results[kind] for t in run["step_times"][args.warmup:]]
        return statistics.median(times)

    def peak(kind):
        return max(run["peak_bytes"] for run in results[kind])

    dpo_step, modpo_step = median_step("dpo"), median_step("modpo")
    dpo_peak, modpo_peak = peak("dpo"), peak("modpo")
    measure = results["dpo"][0]["memory_measure"]
    print(f"model: {data['model'] if args.model else 'tiny (built in code)'}; pairs {args.pairs}, "
          f"steps {args.steps} (warm-up {args.warmup}), batch {args.batch_size}, runs per trainer {args.repeats}")
    print(f"DPO   median step {dpo_step * 1000:8.2f} ms   peak memory {dpo_peak / 2**20:8.1f} MiB ({measure})")
    print(f"MODPO median step {modpo_step * 1000:8.2f} ms   peak memory {modpo_peak / 2**20:8.1f} MiB")
    print(f"MODPO/DPO step time ratio:   {modpo_step / dpo_step:.3f}   (goal <= 1.05)")
    print(f"MODPO/DPO peak memory ratio: {modpo_peak / dpo_peak:.3f}   (goal <= 1.10)")


if __name__ == "__main__":
    main()
