"""Prefix reuse across agent steps: a 10-step qwen2vl episode with reuse against without.

Timing (default): the scaled-down model of bench/model_cpu.py (random weights, fp32, cpu) behind
two ``local`` backends, one with ``reuse_prefix`` and one without. Each step's prompt is the
qwen2vl layout of the steps so far (synthetic tap replies, 1080x2400 screenshots that differ
step by step, resized by the processor to model_cpu's 1280*28*28 budget); each call decodes
--new-tokens tokens. The two backends take turns step by step, so load from other processes
hits both alike. Reported: wall time (and the processor's part of it) and prefilled tokens of
the episode.

``--tokens``: no model; for each dialect and history layout, the tokens a 10-step episode
prefills with reuse and without at the checkpoints' own pixel budget (a 1080x2400 screenshot is
3,354 tokens), by the session's own prefix rule. docs/generation.md shows this table and
tests/test_prefix_reuse_doc.py keeps it in step.

Run: .venv/bin/python bench/prefix_reuse.py [--tokens] [--steps 10] [--new-tokens 24]
         [--images 4 --block 4] [--max-pixels 1003520] [--dtype fp32|bf16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from episode_prompts import episode_prompts  # noqa: E402
from model_cpu import SCREEN_MAX, scaled_checkpoint, screenshot  # noqa: E402

from actions.dialects import ImagePart, Prompt, get_dialect  # noqa: E402
from agent.history import HistoryPolicy  # noqa: E402
from agent.policies.base import hf_messages, prompt_images  # noqa: E402
from core.actions import Tap  # noqa: E402
from core.geometry import Screen  # noqa: E402
from model.session import ImageSpan, common_prefix  # noqa: E402
from runtime.tiny_checkpoint import make_tiny_checkpoint  # noqa: E402

DIALECTS = ("qwen2vl", "qwen25vl", "uitars")
#: The history layouts compared: a window moving by one (the former default), the default blocks,
#: bigger blocks, and every screenshot kept.
LAYOUTS = {
    "images=2, block=1": HistoryPolicy(images=2, block=1),
    "images=3, block=2": HistoryPolicy(images=3, block=2),
    "images=4, block=4 (default)": HistoryPolicy(images=4, block=4),
    "all images": HistoryPolicy(images=10_000),
}
#: What the model writes after its reply: qwen2vl stops at its stop string, the others at EOS.
ENDINGS = {"qwen2vl": "*RESULT*", "qwen25vl": "<|im_end|>", "uitars": "<|im_end|>"}


def replies(dialect_name: str, steps: int, screen: Screen) -> list[str]:
    dialect = get_dialect(dialect_name, "phone")
    return [dialect.render_action(Tap(x=100 + 83 * i, y=300 + 170 * i), screen,
                                  thought=f"The item I need is further down; step {i}.")
            for i in range(steps)]  # fmt: skip


def screenshots(steps: int) -> list[Image.Image]:
    """1080x2400 screens that differ step by step (a highlighted row moves down)."""
    base = screenshot()
    shots = []
    for i in range(steps):
        shot = base.copy()
        ImageDraw.Draw(shot).rectangle((0, 200 * i, 1079, 200 * i + 180), fill=(40 * i, 90, 200))
        shots.append(shot)
    return shots


# --- tokens: the session's prefix rule on token ids alone ------------------------------------
def _sequence(processor, prompt: Prompt, screen: Screen) -> tuple[list[int], list[ImageSpan]]:
    """The prompt's token ids with each image expanded, and where each image sits (keyed by
    its screenshot's index: no pixels needed)."""
    text = processor.apply_chat_template(
        hf_messages(prompt), add_generation_prompt=not prompt.continue_final_message,
        continue_final_message=prompt.continue_final_message,
    )  # fmt: skip
    shown = iter(p.index for m in prompt.messages for p in m.content if isinstance(p, ImagePart))
    ids: list[int] = []
    spans: list[ImageSpan] = []
    for token in processor.encode(text):
        if token != processor.image_token_id:
            ids.append(token)
            continue
        count = processor.image_token_count(screen.width, screen.height, screen.min_pixels,
                                            screen.max_pixels)
        spans.append(ImageSpan(str(next(shown)).encode(), len(ids), len(ids) + count,
                               len(spans), (0, 0, 0)))
        ids.extend([token] * count)
    return ids, spans


def prefilled_tokens(processor, dialect_name: str, history: HistoryPolicy, steps: int,
                     screen: Screen) -> tuple[int, int]:
    """(without reuse, with reuse): tokens an episode runs through the decoder in prefill."""
    texts = replies(dialect_name, steps, screen)
    cached: tuple[list[int], list[ImageSpan]] = ([], [])
    without = with_reuse = 0
    for step, prompt in enumerate(episode_prompts(dialect_name, texts, screen, history)):
        ids, spans = _sequence(processor, prompt, screen)
        start = min(common_prefix(*cached, ids, spans), len(ids) - 1)
        without, with_reuse = without + len(ids), with_reuse + len(ids) - start
        generated = processor.encode(texts[step] + ENDINGS[dialect_name])
        cached = (ids + generated[:-1], spans)  # the last new token never enters the cache
    return without, with_reuse


def token_table(processor, steps: int = 10) -> str:
    screen = Screen(1080, 2400)
    lines = ["| dialect | history | prefilled without reuse | with reuse | without / with |",
             "|---|---|---|---|---|"]
    for name in DIALECTS:
        for label, history in LAYOUTS.items():
            without, with_reuse = prefilled_tokens(processor, name, history, steps, screen)
            lines.append(f"| {name} | {label} | {without:,} | {with_reuse:,} | "
                         f"{without / with_reuse:.1f}x |")
    return "\n".join(lines)


# --- timing ----------------------------------------------------------------------------------
def timing(steps: int, new_tokens: int, history: HistoryPolicy, max_pixels: int, dtype: str
           ) -> None:
    import torch

    from agent.backends.local import LocalBackend

    with tempfile.TemporaryDirectory() as tmp:
        path = scaled_checkpoint(tmp)
        backends = {"with reuse": LocalBackend(path, device="cpu", dtype=dtype),
                    "without": LocalBackend(path, device="cpu", dtype=dtype, reuse_prefix=False)}
    screen = Screen(1080, 2400, max_pixels=max_pixels)
    shots = screenshots(steps)
    dialect = get_dialect("qwen2vl", "phone")
    seconds = dict.fromkeys(backends, 0.0)
    prefilled = dict.fromkeys(backends, 0)
    preprocessing = dict.fromkeys(backends, 0.0)  # the processor's part of the seconds
    texts = {name: [] for name in backends}
    episode = episode_prompts("qwen2vl", replies("qwen2vl", steps, screen), screen, history)
    for step, prompt in enumerate(episode):
        for name, backend in backends.items():
            start = time.perf_counter()
            done = backend.generate(
                hf_messages(prompt), prompt_images(prompt, shots), max_new_tokens=new_tokens,
                stop=dialect.stop, continue_final_message=prompt.continue_final_message,
                max_pixels=screen.max_pixels,
            )  # fmt: skip
            seconds[name] += time.perf_counter() - start
            prefilled[name] += done.prompt_tokens - done.cached_tokens
            preprocessing[name] += done.timings["preprocess_ms"] / 1000
            texts[name].append(done.text)
        print(f"step {step}: {done.prompt_tokens} prompt tokens; seconds so far "
              + ", ".join(f"{name} {s:.1f}" for name, s in seconds.items()), flush=True)
    same = texts["with reuse"] == texts["without"]
    print(f"{steps}-step qwen2vl episode, history {history}, max_pixels {max_pixels}, "
          f"{new_tokens} new tokens a step, "
          f"threads {torch.get_num_threads()}, {dtype}; same replies both ways: {same}")
    print(f"{'':<12}{'seconds':>10}{'of which preprocessing':>24}{'prefilled tokens':>18}")
    for name in backends:
        print(f"{name:<12}{seconds[name]:>10.2f}{preprocessing[name]:>24.2f}"
              f"{prefilled[name]:>18,}")
    print(f"without / with reuse: {seconds['without'] / seconds['with reuse']:.2f}x time, "
          f"{prefilled['without'] / prefilled['with reuse']:.2f}x tokens")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", action="store_true", help="print the prefilled-token table")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--new-tokens", type=int, default=24)
    defaults = HistoryPolicy()
    parser.add_argument("--images", type=int, default=defaults.images,
                        help="history: past screenshots kept")
    parser.add_argument("--block", type=int, default=defaults.block,
                        help="history: dropped this many at once")
    parser.add_argument("--max-pixels", type=int, default=SCREEN_MAX,
                        help="the processor's resize budget per screenshot")
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    if args.tokens:
        from model import Qwen2VLProcessor

        with tempfile.TemporaryDirectory() as tmp:
            print(token_table(Qwen2VLProcessor.from_pretrained(make_tiny_checkpoint(tmp)),
                              args.steps))
        return
    timing(args.steps, args.new_tokens, HistoryPolicy(images=args.images, block=args.block),
           args.max_pixels, args.dtype)


if __name__ == "__main__":
    main()
