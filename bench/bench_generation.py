"""Batched vs one-by-one candidate generation, and an inference server vs the local backend.

Both local runs use generate_candidates with the same seeds; thanks to per-row seeding they produce the same
texts, so they do the same work (same generated tokens) and the ratio is pure batching gain.

With --server the same scenarios and settings (n, temperature, top-p, max new tokens, seeds, system prompt)
also go through the server backend (server_generation) to llama.cpp's server (llama_cpp.server, started
here on loopback with the same thread count) serving the packaged SmolLM2 GGUF, and the bench prints
server / local (batched) throughput. The server runs the GGUF as shipped (Q4_1 weights), the local backend
its fp32 conversion: the same model, not the same arithmetic, so texts differ and tokens/s is the measure.

    python bench/bench_generation.py                              # tiny model built in code
    python bench/bench_generation.py --model smollm2-135m-instruct --scenarios 16 --max-new-tokens 48
    python bench/bench_generation.py --server --scenarios 16 --n 2 --max-new-tokens 48   # needs make install-server
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
    parser.add_argument("--server", action="store_true",
                        help="also generate through llama.cpp's server (the packaged SmolLM2 GGUF) and print server / local")
    parser.add_argument("--server-concurrency", type=int, default=4)
    parser.add_argument("--no-single", action="store_true", help="skip the one-by-one local run (slow on a real model)")
    args = parser.parse_args()
    if args.server and args.model not in (None, "smollm2-135m-instruct"):
        parser.error("--server serves the packaged SmolLM2 GGUF; use --model smollm2-135m-instruct (the default with --server)")
    if args.server:
        args.model = "smollm2-135m-instruct"

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
    rows = args.scenarios * args.n
    print(f"model: {args.model or 'tiny (built in code)'}; {args.scenarios} scenarios x {args.n} responses, "
          f"max {args.max_new_tokens} new tokens, {args.threads} threads")
    if not args.no_single:
        single_s, single = run(1, "single")
        same = [json.loads(l)["responses"] for l in open(batched.output_path)]
        by_id_b = {json.loads(l)["scenario_id"]: json.loads(l)["responses"] for l in open(batched.output_path)}
        by_id_s = {json.loads(l)["scenario_id"]: json.loads(l)["responses"] for l in open(single.output_path)}
        identical = sum(by_id_b[k] == by_id_s[k] for k in by_id_b)
        print(f"one-by-one : {single_s:7.2f} s  {single.new_tokens / single_s:8.1f} tokens/s  {rows / single_s:6.2f} responses/s")
    print(f"batched {args.batch_size:<3}: {batched_s:7.2f} s  {batched.new_tokens / batched_s:8.1f} tokens/s  {rows / batched_s:6.2f} responses/s")
    if not args.no_single:
        print(f"identical texts in both runs: {identical}/{len(same)} scenarios")
        print(f"batched / one-by-one throughput ratio: {single_s / batched_s:.2f} (goal >= 5)")
    if args.server:
        server_s, served = run_server(args, scenarios, work)
        print(f"server c={args.server_concurrency:<3}: {server_s:7.2f} s  {served.new_tokens / server_s:8.1f} tokens/s  "
              f"{rows / server_s:6.2f} responses/s  (llama.cpp, {served.served_models})")
        print(f"server / local (batched {args.batch_size}) throughput, tokens/s: "
              f"{(served.new_tokens / server_s) / (batched.new_tokens / batched_s):.2f}; "
              f"responses/s: {batched_s / server_s:.2f}")


def run_server(args, scenarios: Path, work: Path):
    from training.pipeline.generation import CandidateGenerationConfig
    from training.pipeline.llama_server import LlamaCppServer, ServedModel
    from training.pipeline.models import packaged_model_file
    from training.pipeline.server_generation import generate_candidates_with_server

    gguf = packaged_model_file("smollm2-135m-instruct")
    with LlamaCppServer([ServedModel("smollm2", gguf, n_ctx=2048)], n_threads=args.threads,
                        log_path=work / "llama-server.log") as server:
        spec = {"base_url": server.url, "model": "smollm2", "api_key_env": None,
                "max_concurrency": args.server_concurrency, "timeout_s": 600.0}

        def once(name: str, limit: int | None = None):
            config = CandidateGenerationConfig(model=args.model, scenarios_path=str(scenarios),
                                               output_path=str(work / f"{name}.jsonl"), n=args.n,
                                               max_new_tokens=args.max_new_tokens, progress_bar=False, limit=limit)
            started = time.perf_counter()
            result = generate_candidates_with_server(config, spec)
            return time.perf_counter() - started, result

        once("server-warmup", limit=1)
        return once("server")


if __name__ == "__main__":
    main()
