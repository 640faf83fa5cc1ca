"""Throughput of the `openai` backend against a local OpenAI-compatible endpoint with fixed latency.

Prints requests/s at concurrency 1, 8, 32 and 64 beside the ideal (concurrency / L) and beside a
sequential client that pauses 1 s between requests, as the MMOral authors' scripts do.
Target: at least 0.85 of ideal at concurrency 32.

    .venv/bin/python perf/llm_throughput.py [--latency 0.5] [--rounds 6]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import time

from mmoral_pipeline.generation.local_server import LocalChatServer, Reply
from mmoral_pipeline.generation.openai_backend import OpenAIBackend
from mmoral_pipeline.generation.types import ChatRequest


def _requests(n: int, tag: str) -> list[ChatRequest]:
    return [
        ChatRequest(messages=[{"role": "user", "content": f"{tag} request {i}"}], params={"max_tokens": 16})
        for i in range(n)
    ]


def run_concurrent(url: str, concurrency: int, n: int) -> tuple[float, int, float]:
    """(wall seconds, successful requests, client CPU seconds)."""
    backend = OpenAIBackend(model="local", base_url=url, max_concurrency=concurrency, timeout_s=60, max_retries=0)
    reqs = _requests(n, f"c{concurrency}")
    c0, t0 = time.process_time(), time.perf_counter()
    out = backend.complete(reqs)
    wall = time.perf_counter() - t0
    return wall, sum(1 for r in out if r.error is None), time.process_time() - c0


def run_sequential_with_pause(url: str, n: int, pause_s: float = 1.0) -> float:
    """The authors' pattern: one request at a time, sleep 1 s after each."""
    import openai

    client = openai.OpenAI(base_url=url, api_key="EMPTY", max_retries=0)
    t0 = time.perf_counter()
    for i in range(n):
        client.chat.completions.create(model="local", messages=[{"role": "user", "content": f"seq {i}"}], max_tokens=16)
        time.sleep(pause_s)
    client.close()
    return time.perf_counter() - t0


def _serve(latency: float, port_queue) -> None:
    """The endpoint runs in its own process, as a real server would (it must not share our GIL)."""
    server = LocalChatServer(lambda body, n: Reply(text="ok", delay=latency))
    with server:
        port_queue.put(server.url)
        while True:
            time.sleep(3600)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency", type=float, default=0.5, help="server latency L per request (s)")
    ap.add_argument("--rounds", type=int, default=10, help="requests per run = rounds x concurrency (at least 12)")
    ap.add_argument("--repeats", type=int, default=3, help="runs per concurrency (median reported)")
    ap.add_argument("--sequential", type=int, default=5, help="requests for the sequential 1-s-pause client")
    args = ap.parse_args()
    L = args.latency
    queue: mp.Queue = mp.Queue()
    proc = mp.Process(target=_serve, args=(L, queue), daemon=True)
    proc.start()
    url = queue.get(timeout=60)
    try:
        _table(url, L, args)
    finally:
        proc.terminate()
        proc.join()


def _table(url: str, L: float, args: argparse.Namespace) -> None:
    run_concurrent(url, 4, 8)  # warm-up (imports, connection set-up)
    print(
        f"local endpoint latency L = {L:.3f} s; median of {args.repeats} runs; cpu ms = the client's own CPU per "
        "request\n"
    )
    print(f"{'client':<34}{'requests':>9}{'wall s':>9}{'req/s':>9}{'ideal':>9}{'of ideal':>10}{'best':>7}{'cpu ms':>8}")
    for c in (1, 8, 32, 64):
        n = max(12, args.rounds * c)
        runs = sorted((run_concurrent(url, c, n) for _ in range(args.repeats)), key=lambda r: r[0])
        wall, ok, cpu = runs[len(runs) // 2]
        best = runs[0][1] / runs[0][0]
        rate, ideal = ok / wall, c / L
        print(
            f"{f'async, concurrency {c}':<34}{n:>9}{wall:>9.2f}{rate:>9.2f}{ideal:>9.2f}"
            f"{rate / ideal:>10.2f}{best / ideal:>7.2f}{1000 * cpu / n:>8.1f}"
        )
    wall = run_sequential_with_pause(url, args.sequential)
    rate = args.sequential / wall
    print(
        f"{'sequential + 1 s pause (authors)':<34}{args.sequential:>9}{wall:>9.2f}{rate:>9.2f}"
        f"{1 / (L + 1):>9.2f}{rate * (L + 1):>10.2f}"
    )
    print("\n'ideal' is concurrency / L; for the sequential client it is 1 / (L + 1 s).")


if __name__ == "__main__":
    main()
