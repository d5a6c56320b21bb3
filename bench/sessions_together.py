"""Several agents on one model: K qwen2vl episodes whose steps arrive together, decoded as one
batch across their sessions (``generate_together``) against the same requests one at a time.

Both sides are ``local`` backends over the scaled-down model of bench/model_cpu.py (random
weights, fp32, cpu) with a session per episode, so both reuse each episode's prefix and prefill
the same tokens; only the decode steps differ (shared by K rows, or run K times). Episode k shows
its own 1080x2400 screenshots (a highlighted row that moves, in its own colour), resized to
--max-pixels; each call decodes --new-tokens tokens (the replies of a random model do not stop
early). The two sides take turns step by step, so load from other processes hits both alike.
Preparing the requests (outside the timed model calls) is timed apart.

Run: .venv/bin/python bench/sessions_together.py [--episodes 4] [--steps 5] [--new-tokens 32]
         [--max-pixels 1003520]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PIL import ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from episode_prompts import episode_prompts  # noqa: E402
from model_cpu import SCREEN_MAX, scaled_checkpoint  # noqa: E402
from prefix_reuse import replies, screenshots  # noqa: E402

from agent.backends.base import Params  # noqa: E402
from agent.history import HistoryPolicy  # noqa: E402
from agent.policies.base import hf_messages, prompt_images  # noqa: E402
from core.geometry import Screen  # noqa: E402


def episode_shots(episode: int, steps: int) -> list:
    """The steps' screenshots of one episode, marked with its own colour."""
    shots = screenshots(steps)
    for shot in shots:
        ImageDraw.Draw(shot).rectangle((0, 2300, 1079, 2399), fill=(30 + 50 * episode, 200, 20))
    return shots


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=4)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--max-pixels", type=int, default=SCREEN_MAX,
                        help="the processor's resize budget per screenshot")
    args = parser.parse_args()

    import torch

    from agent.backends.local import LocalBackend

    with tempfile.TemporaryDirectory() as tmp:
        path = scaled_checkpoint(tmp)
        sides = {name: LocalBackend(path, device="cpu", dtype="fp32", sessions=args.episodes)
                 for name in ("together", "one at a time")}
    screen = Screen(1080, 2400, max_pixels=args.max_pixels)
    history = HistoryPolicy()
    episodes = [list(episode_prompts("qwen2vl", replies("qwen2vl", args.steps, screen), screen,
                                     history)) for _ in range(args.episodes)]
    shots = [episode_shots(k, args.steps) for k in range(args.episodes)]
    seconds = dict.fromkeys(sides, 0.0)
    preparing = dict.fromkeys(sides, 0.0)  # render, tokenize, the screenshots' patches
    texts: dict[str, list[str]] = {name: [] for name in sides}
    prefilled = dict.fromkeys(sides, 0)
    for step in range(args.steps):
        # No stop string: every call decodes --new-tokens, the same work on both sides.
        params = Params(max_new_tokens=args.new_tokens, max_pixels=screen.max_pixels,
                        continue_final_message=episodes[0][step].continue_final_message)
        for name, backend in sides.items():
            start = time.perf_counter()
            items = [backend.prepare(hf_messages(episode[step]),
                                     prompt_images(episode[step], shots[k]), params)
                     for k, episode in enumerate(episodes)]
            preparing[name] += time.perf_counter() - start
            start = time.perf_counter()
            if name == "together":
                done = backend.generate_batch(items)
            else:
                done = [backend.generate_batch([item])[0] for item in items]
            seconds[name] += time.perf_counter() - start
            texts[name] += [c.text for c in done]
            prefilled[name] += sum(c.prompt_tokens - c.cached_tokens for c in done)
        print(f"step {step}: seconds so far "
              + ", ".join(f"{name} {s:.2f}" for name, s in seconds.items()), flush=True)
    print(f"{args.episodes} qwen2vl episodes x {args.steps} steps, history {history}, max_pixels "
          f"{args.max_pixels}, {args.new_tokens} new tokens a call, threads "
          f"{torch.get_num_threads()}; same replies both ways: "
          f"{texts['together'] == texts['one at a time']}")
    for name in sides:
        print(f"{name:<14}{seconds[name]:>8.2f} s{prefilled[name]:>10,} tokens prefilled, "
              f"prepared in {preparing[name]:.2f} s")
    print(f"together / one at a time: {seconds['together'] / seconds['one at a time']:.2f} "
          "of the time")


if __name__ == "__main__":
    main()
