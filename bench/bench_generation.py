"""Batched vs one-by-one candidate generation: throughput ratio on the same scenarios.

Both runs use generate_candidates with the same seeds; thanks to per-row seeding they produce the same
texts, so they do the same work (same generated tokens) and the ratio is pure batching gain.

    python bench/bench_generation.py                              # tiny model built in code
    python bench/bench_generation.py --model smollm2-135m-instruct --scenarios 16 --max-new-tokens 48
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

PROMPTS = [
    "I have been feeling really low since I moved to a new city and I don't know anyone.",
    "My partner left last month. I can't sleep and I keep thinking it was my fault.",
    "Work makes me so anxious that my chest gets tight every morning.",
    "I failed an exam and I feel like a complete failure.",
    "Nobody at school talks to me anymore.",
    "I keep snapping at my kids and then I hate myself for it.",
    "Sometimes I wonder whether anyone would notice if I was gone.",
    "My mother is ill and I am exhausted from caring for her while working full time.",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model ref; default: a tiny random model built in code")
    parser.add_argument("--scenarios", type=int, default=32)
    parser.add_argument("--n", type=int, default=2, help="responses per scenario")
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import torch

    from training.pipeline.generation import CandidateGenerationConfig, _load, generate_candidates
    from training.pipeline.models import build_tiny_causal_lm

    torch.set_num_threads(args.threads)
    work = Path(tempfile.mkdtemp(prefix="bench_generation_"))
    model_ref = args.model or str(build_tiny_causal_lm(work / "tiny", seed=0))
    scenarios = work / "scenarios.jsonl"
    scenarios.write_text("".join(
        json.dumps({"scenario_id": f"s{i}", "prompt": f"{PROMPTS[i % len(PROMPTS)]} ({i})", "split": "train"}) + "\n"
        for i in range(args.scenarios)))
    model, tokenizer = _load(model_ref, None, "cpu", None)

    def run(batch_size: int, name: str):
        config = CandidateGenerationConfig(model=model_ref, scenarios_path=str(scenarios), output_path=str(work / f"{name}.jsonl"),
                                           n=args.n, max_new_tokens=args.max_new_tokens, batch_size=batch_size, progress_bar=False)
        started = time.perf_counter()
        result = generate_candidates(config, model=model, tokenizer=tokenizer)
        return time.perf_counter() - started, result

    run(args.batch_size, "warmup")  # first-call costs (kernels, allocator) out of the measurement
    batched_s, batched = run(args.batch_size, "batched")
    single_s, single = run(1, "single")
    same = [json.loads(l)["responses"] for l in open(batched.output_path)]
    by_id_b = {json.loads(l)["scenario_id"]: json.loads(l)["responses"] for l in open(batched.output_path)}
    by_id_s = {json.loads(l)["scenario_id"]: json.loads(l)["responses"] for l in open(single.output_path)}
    identical = sum(by_id_b[k] == by_id_s[k] for k in by_id_b)
    rows = args.scenarios * args.n
    print(f"model: {args.model or 'tiny (built in code)'}; {args.scenarios} scenarios x {args.n} responses, "
          f"max {args.max_new_tokens} new tokens, {args.threads} threads")
    print(f"one-by-one : {single_s:7.2f} s  {single.new_tokens / single_s:8.1f} tokens/s  {rows / single_s:6.2f} responses/s")
    print(f"batched {args.batch_size:<3}: {batched_s:7.2f} s  {batched.new_tokens / batched_s:8.1f} tokens/s  {rows / batched_s:6.2f} responses/s")
    print(f"identical texts in both runs: {identical}/{len(same)} scenarios")
    print(f"batched / one-by-one throughput ratio: {single_s / batched_s:.2f} (goal >= 5)")


if __name__ == "__main__":
    main()
