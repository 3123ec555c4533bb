"""HTTP judge throughput against a loopback server with a fixed latency, as a fraction of the ideal.

With concurrency C and server latency L, the ideal is C / L requests per second. The judge's achieved rate
(requests / wall time, cache off, no failures) divided by that is what the client's overhead leaves.

    python bench/bench_http_judge.py                       # 256 requests, latency 0.1 s, concurrency 16
    python bench/bench_http_judge.py --latency 0.05 --concurrency 32 --requests 512
"""
from __future__ import annotations

import argparse
import logging
import multiprocessing
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def _serve(conn, latency: float) -> None:
    from training.pipeline.judges.loopback import LoopbackChatServer

    with LoopbackChatServer(latency_s=latency) as server:
        conn.send(server.url)
        conn.recv()
        conn.send(server.max_in_flight)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=256)
    parser.add_argument("--latency", type=float, default=0.1, help="seconds the server waits before answering")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--responses", type=int, default=5, help="responses per request (K)")
    args = parser.parse_args()
    logging.getLogger("httpx").setLevel(logging.WARNING)

    from training.pipeline.criteria import THERAPEUTIC
    from training.pipeline.io import Persona, Scenario
    from training.pipeline.judges import JudgeRequest
    from training.pipeline.judges.http import HTTPJudge, HTTPJudgeConfig
    requests = [
        JudgeRequest(Persona(f"p{i}", f"Persona {i}, who values being listened to."),
                     Scenario(f"s{i}", "I have been feeling low and alone since my move.", risk_level="low"),
                     tuple(f"Response {j} to scenario {i}: that sounds hard, I'm here." for j in range(args.responses)),
                     tuple(THERAPEUTIC))
        for i in range(args.requests)
    ]
    # The server runs in its own process: its threads must not share a GIL with the judge being measured.
    context = multiprocessing.get_context("spawn")
    control, child_end = context.Pipe()
    server = context.Process(target=_serve, args=(child_end, args.latency), daemon=True)
    server.start()
    url = control.recv()
    try:
        judge = HTTPJudge(HTTPJudgeConfig(base_url=url, model="bench", api_key_env=None, cache_path=None,
                                          max_concurrency=args.concurrency, timeout_s=30))
        judge.rank_many(requests[: args.concurrency])  # warm-up: connections, imports
        started, cpu_started = time.perf_counter(), time.process_time()
        results = judge.rank_many(requests)
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    finally:
        control.send("stop")
        max_in_flight = control.recv()
        server.join(timeout=10)
    ok = sum(r.ok for r in results)
    achieved = len(requests) / elapsed
    ideal = args.concurrency / args.latency
    print(f"{len(requests)} requests, K={args.responses}, {len(THERAPEUTIC)} criteria, server latency {args.latency * 1000:.0f} ms, "
          f"concurrency {args.concurrency} (server saw at most {max_in_flight} in flight); {ok} valid replies")
    print(f"achieved {achieved:.1f} req/s, ideal {ideal:.1f} req/s, wall {elapsed:.2f} s (ideal {len(requests) / ideal:.2f} s)")
    print(f"judge CPU per request: {cpu / len(requests) * 1000:.2f} ms (prompt, HTTP client, validation)")
    print(f"achieved / ideal throughput: {achieved / ideal:.3f} (goal >= 0.9)")


if __name__ == "__main__":
    main()
