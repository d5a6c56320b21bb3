"""``serve`` with requests that arrive while others decode: continuous batching against not.

A random checkpoint in bench/model_cpu.py's scaled config behind our ``serve`` (uvicorn on a local
port), called over HTTP. --requests text requests (714 prompt tokens each with the tiny
tokenizer, conversations of their own) are sent --interval seconds apart; they alternate between
--long-tokens and --short-tokens new tokens, greedy, with the model's EOS off so each writes
exactly that many.
Two phases on the same model and requests, the sessions emptied before each: the server as it
is (a request that arrives while a batch decodes joins it, and each is answered when its row
ends), and the same server with joining turned off (a request waits for the running batch to
end). Prints each phase's wall time and request latencies (sent to answered), and their ratios.

Run: .venv/bin/python bench/serve_staggered.py [--requests 8] [--interval 0.1]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_cpu import scaled_checkpoint  # noqa: E402

from agent.backends.local import LocalBackend  # noqa: E402
from runtime.server.app import ServerSettings, create_app, running_server  # noqa: E402

WORDS = "Open the settings app, find the display section and turn on dark mode. "


def phase(engine: LocalBackend, joins: bool, bodies: list[dict], interval: float
          ) -> tuple[float, list[float], list[str]]:
    """Wall time, each request's latency, and the answers."""
    for session in engine.sessions:
        session.reset()
    engine.joins = joins  # read by create_app
    with running_server(create_app(engine, ServerSettings(model_id="bench"))) as url:
        with httpx.Client(timeout=600) as http:
            http.post(f"{url}/chat/completions", json={**bodies[0], "max_tokens": 2})  # warm-up
            for session in engine.sessions:
                session.reset()
            start = time.perf_counter()

            def send(i: int) -> tuple[float, str]:
                time.sleep(max(0.0, start + i * interval - time.perf_counter()))
                sent = time.perf_counter()
                answer = http.post(f"{url}/chat/completions", json=bodies[i]).json()
                return time.perf_counter() - sent, answer["choices"][0]["message"]["content"]

            with ThreadPoolExecutor(len(bodies)) as pool:
                done = list(pool.map(send, range(len(bodies))))
            wall = time.perf_counter() - start
    return wall, [latency for latency, _ in done], [text for _, text in done]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--interval", type=float, default=0.1)
    parser.add_argument("--long-tokens", type=int, default=64)
    parser.add_argument("--short-tokens", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        engine = LocalBackend(scaled_checkpoint(tmp), device=args.device, sessions=8)
    engine.model.eos_token_ids = []
    bodies = [{"model": "bench", "temperature": 0,
               "max_tokens": args.long_tokens if i % 2 == 0 else args.short_tokens,
               "messages": [{"role": "user", "content": f"Request {i}. " + WORDS * 20}]}
              for i in range(args.requests)]
    joining = phase(engine, True, bodies, args.interval)
    waiting = phase(engine, False, bodies, args.interval)
    assert joining[2] == waiting[2], "answers differ"
    print(f"{args.requests} requests {args.interval} s apart, {args.long_tokens} and "
          f"{args.short_tokens} new tokens alternately, on {engine.model.device}; "
          "same answers both ways")
    print(f"{'':24} {'wall s':>8} {'mean latency s':>15} {'max latency s':>14}")
    for name, (wall, latencies, _) in (("joining (continuous)", joining),
                                       ("waiting for the batch", waiting)):
        print(f"{name:24} {wall:8.2f} {statistics.mean(latencies):15.2f} "
              f"{max(latencies):14.2f}")
    print(f"joining / waiting: wall {joining[0] / waiting[0]:.2f}, mean latency "
          f"{statistics.mean(joining[1]) / statistics.mean(waiting[1]):.2f}")


if __name__ == "__main__":
    main()
