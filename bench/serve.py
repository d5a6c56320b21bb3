"""``serve`` under concurrency: 8 requests sent at once against the same 8 sent one after another.

A random checkpoint in bench/model_cpu.py's scaled config (hidden 512, 4 layers, vision depth 4)
behind our ``serve`` (uvicorn on a local port), called through the ``openai`` backend. Each request
holds one 448x448 screenshot and a short question and decodes greedily up to --new-tokens tokens.
Each phase sends screenshots of its own (the server would answer a request it has seen from its
session's cache). The two phases take turns ``--repeats`` times, each time with new
screenshots, so that load from other processes hits both alike; the best time of each counts.
Prints both wall times, the tokens generated and the ratio concurrent / sequential (the target is
at most 0.5: requests arriving together should run as one batch).

Run: .venv/bin/python bench/serve.py [--requests 8] [--new-tokens 32] [--repeats 3] [--device cpu]
         [--dtype fp32|bf16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_cpu import scaled_checkpoint  # noqa: E402

from agent.backends.base import Completion  # noqa: E402
from agent.backends.local import LocalBackend  # noqa: E402
from agent.backends.openai import OpenAIBackend  # noqa: E402
from runtime.server.app import ServerSettings, create_app, running_server  # noqa: E402


def requests(count: int, seed: int) -> list[tuple[list[dict], list[Image.Image]]]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        image = Image.fromarray(rng.integers(0, 256, (448, 448, 3), dtype=np.uint8))
        messages = [{"role": "user", "content": [
            {"type": "image"}, {"type": "text", "text": f"Step {i}: what should I tap next?"}]}]
        out.append((messages, [image]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = scaled_checkpoint(tmp)
        engine = LocalBackend(path, device=args.device, dtype=args.dtype, sessions=8)  # serve's default
    settings = ServerSettings(model_id="bench", max_batch=args.requests)
    times: dict[str, list[float]] = {"in a row": [], "concurrent": []}
    differ = 0
    with running_server(create_app(engine, settings)) as url:
        client = OpenAIBackend(url, "bench", retries=0)

        def call(item: tuple[list[dict], list[Image.Image]]) -> Completion:
            return client.generate(*item, max_new_tokens=args.new_tokens, max_pixels=448 * 448)

        call(requests(1, seed=0)[0])  # warm-up
        for repeat in range(args.repeats):
            # Screenshots of their own each time: the server keeps a session per conversation,
            # and requests it has seen would be answered from their caches.
            in_a_row = requests(args.requests, seed=1 + 2 * repeat)
            at_once = requests(args.requests, seed=2 + 2 * repeat)
            start = time.perf_counter()
            sequential = [call(item) for item in in_a_row]
            times["in a row"].append(time.perf_counter() - start)
            start = time.perf_counter()
            with ThreadPoolExecutor(len(at_once)) as pool:
                concurrent = list(pool.map(call, at_once))
            times["concurrent"].append(time.perf_counter() - start)
            # The same requests one by one (from their caches now, untimed): the same answers.
            alone = [call(item) for item in at_once]
            differ += sum(c.text != a.text for c, a in zip(concurrent, alone))
            # In bf16 a token's logits round differently in a 1-row step than in a prefill's
            # product of hundreds of rows, and random weights leave near ties: fp32 must agree.
            assert differ == 0 or args.dtype != "fp32", "answers differ"
        client.close()

    tokens = sum(c.completion_tokens for c in sequential)
    prompt = sequential[0].prompt_tokens
    print(f"{args.requests} requests, {prompt} prompt tokens each, {tokens} new tokens in all, "
          f"on {engine.model.device} ({str(engine.model.dtype).removeprefix('torch.')}), "
          f"best of {args.repeats}")
    for name, phase in times.items():
        print(f"{name + ':':<12}{min(phase):7.2f} s  (each: "
              f"{', '.join(f'{t:.2f}' for t in phase)})")
    print(f"answers that differ from the same request again (from its cache): {differ} of "
          f"{args.requests * args.repeats}")
    ratio = min(times["concurrent"]) / min(times["in a row"])
    print(f"concurrent / in a row = {ratio:.2f} (target <= 0.5)")


if __name__ == "__main__":
    main()
