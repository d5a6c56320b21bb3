"""CPU baseline: our Qwen2-VL against transformers', same random weights, in one run.

A scaled-down config (hidden 512, 4 layers, vision depth 4) with the tiny test tokenizer:
  1. preprocessing a 1080x2400 screenshot (the checkpoints' default pixel budget);
  2. prefill of that screenshot at max_pixels=1280*28*28 with a ~300-token text prompt;
  3. greedy decoding of 64 new tokens: after that prompt (prefill included), and after the text
     prompt alone (a small prefill, so mostly the decode steps); decode tokens/s is 63 over the
     difference between 64 new tokens and 1 (which is the prefill alone) after the text prompt,
     eager and with the decode step compiled (``--compile``; transformers eager).
  4. Qwen2.5-VL (window-attention tower, same scaled-down sizes): the vision tower alone and the
     prefill of that screenshot.
Each figure is the best of --repeats runs; all the runs take turns within each repeat.
``--dtype bf16`` runs both models in bf16 (the same weights rounded), fp32 otherwise.

Run: .venv/bin/python bench/model_cpu.py [--repeats 3] [--dtype fp32|bf16]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model import Qwen2VL, Qwen2VLProcessor  # noqa: E402
from model.image_processing import preprocess_image  # noqa: E402
from model.modeling import DTYPES  # noqa: E402
from runtime.tiny_checkpoint import make_tiny_checkpoint  # noqa: E402

SCREEN_MAX = 1280 * 28 * 28
# The released models' context (32,768): the episode benchmarks' prompts outgrow the tiny one's.
TEXT = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2, max_position_embeddings=32768)  # fmt: skip
VISION = dict(depth=4, embed_dim=256, num_heads=4, mlp_ratio=4)


def scaled_checkpoint(tmp: str | Path, vision: dict = VISION, **kw: object) -> Path:
    """This benchmark's scaled-down random checkpoint (TEXT, ``vision``), written into ``tmp``.

    Made on a thread that ends with it: a thread that ran torch ops keeps an OpenMP team, and
    a local backend's model runs slower while another thread holds one
    (agent/backends/one_thread.py); a process that serves does not make checkpoints.
    """
    made: list[Path] = []

    def make() -> None:
        torch.manual_seed(0)
        made.append(make_tiny_checkpoint(tmp, text_overrides=TEXT, vision_overrides=vision, **kw))

    thread = threading.Thread(target=make)
    thread.start()
    thread.join()
    if not made:
        raise RuntimeError("making the checkpoint failed (its error is printed above)")
    return made[0]


def best_times(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Best wall time in seconds of each function, after a warm-up. The functions run in turn
    within each repeat so that load from other processes hits all of them alike; the minimum is
    the least disturbed run."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: min(t) for name, t in times.items()}


def screenshot() -> Image.Image:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:2400, 0:1080]
    base = np.stack([x * 255 // 1080, y * 255 // 2400, (x // 40 + y // 40) % 2 * 255], axis=-1)
    return Image.fromarray(np.clip(base + rng.integers(0, 30, base.shape), 0, 255).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", choices=("fp32", "bf16"), default="fp32")
    args = parser.parse_args()
    dtype = DTYPES[args.dtype]

    from transformers import Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    with tempfile.TemporaryDirectory() as tmp:
        path = scaled_checkpoint(tmp)
        proc = Qwen2VLProcessor.from_pretrained(path)
        ours = Qwen2VL.from_pretrained(path, device="cpu", dtype=dtype)
        ref = Qwen2VLForConditionalGeneration.from_pretrained(path, dtype=dtype).eval()

    image = screenshot()
    # Its class default max_pixels is 1280*28*28; use the checkpoint's, like ours does.
    hf_images = Qwen2VLImageProcessorPil(
        min_pixels=proc.image_config.min_pixels, max_pixels=proc.image_config.max_pixels
    )
    pre = best_times(
        {"ours": lambda: preprocess_image(image, proc.image_config),
         "tf": lambda: hf_images.preprocess([image], return_tensors="np")},
        args.repeats,
    )  # fmt: skip

    words = "Open the settings app, find the display section and turn on dark mode. "
    prompt_text = words * 40
    while len(proc.encode(prompt_text)) > 300:
        prompt_text = prompt_text[: -len(words) // 2]
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt_text}]}]
    )
    batch = proc(text=text, images=[image], max_pixels=SCREEN_MAX)
    ids, pixels, grid = batch["input_ids"], batch["pixel_values"], batch["image_grid_thw"]
    mm = (ids == proc.image_token_id).int()
    text_ids = proc(text=proc.apply_chat_template([{"role": "user", "content": prompt_text}]))[
        "input_ids"
    ]
    n_text = len(proc.encode(text)) - 1
    print(f"prompt: {ids.shape[1]} tokens ({n_text} text + {ids.shape[1] - n_text} image), "
          f"grid {grid.tolist()[0]}, threads {torch.get_num_threads()}, {args.dtype}")  # fmt: skip

    with torch.inference_mode():
        t = best_times(
            {
                "ours prefill": lambda: ours(input_ids=ids, pixel_values=pixels, image_grid_thw=grid),
                "tf prefill": lambda: ref(input_ids=ids, pixel_values=pixels, image_grid_thw=grid,
                                          mm_token_type_ids=mm),
                "ours generate": lambda: ours.generate(
                    input_ids=ids, pixel_values=pixels, image_grid_thw=grid, max_new_tokens=64,
                    eos_token_ids=[]),
                "tf generate": lambda: ref.generate(
                    input_ids=ids, attention_mask=torch.ones_like(ids), pixel_values=pixels,
                    image_grid_thw=grid, mm_token_type_ids=mm, max_new_tokens=64,
                    min_new_tokens=64, do_sample=False),
                # Text only: the prefill is small, so this is mostly the 64 decode steps.
                "ours decode": lambda: ours.generate(
                    input_ids=text_ids, max_new_tokens=64, eos_token_ids=[]),
                "tf decode": lambda: ref.generate(
                    input_ids=text_ids, attention_mask=torch.ones_like(text_ids), max_new_tokens=64,
                    min_new_tokens=64, do_sample=False),
                "ours 1 token": lambda: ours.generate(input_ids=text_ids, max_new_tokens=1),
                # --compile: the decode step through torch.compile (compiled in the warm-up).
                "ours decode compiled": lambda: ours.generate(
                    input_ids=text_ids, max_new_tokens=64, eos_token_ids=[], compile=True),
                "tf 1 token": lambda: ref.generate(
                    input_ids=text_ids, attention_mask=torch.ones_like(text_ids), max_new_tokens=1,
                    do_sample=False),
            },
            args.repeats,
        )  # fmt: skip
    rows = [
        ("preprocess 1080x2400 (3354 tokens)", pre["ours"], pre["tf"]),
        (f"prefill {ids.shape[1]} tokens", t["ours prefill"], t["tf prefill"]),
        ("generate 64 tokens (prefill included)", t["ours generate"], t["tf generate"]),
        (f"generate 64 tokens after {text_ids.shape[1]} text tokens",
         t["ours decode"], t["tf decode"]),
    ]  # fmt: skip

    print(f"{'step':<48}{'ours ms':>10}{'transformers ms':>17}{'tf/ours':>9}")
    for name, a, b in rows:
        print(f"{name:<48}{a * 1e3:>10.1f}{b * 1e3:>17.1f}{b / a:>8.2f}x")
    ours_rate = 63 / (t["ours decode"] - t["ours 1 token"])
    tf_rate = 63 / (t["tf decode"] - t["tf 1 token"])
    compiled_rate = 63 / (t["ours decode compiled"] - t["ours 1 token"])
    for name, rate in (("", ours_rate), (", ours compiled", compiled_rate)):
        print(f"{'decode tokens/s (63 steps)' + name:<48}{rate:>10.1f}{tf_rate:>17.1f}"
              f"{rate / tf_rate:>8.2f}x (ours/tf)")
    qwen25_rows(image, args.repeats, dtype)


VISION_25 = dict(depth=4, hidden_size=256, intermediate_size=512, num_heads=4, fullatt_block_indexes=[3])


def qwen25_rows(image: Image.Image, repeats: int, dtype: torch.dtype) -> None:
    """Qwen2.5-VL: our window tower (one batched SDPA call for all windows) against transformers'."""
    from transformers import Qwen2_5_VLForConditionalGeneration

    with tempfile.TemporaryDirectory() as tmp:
        path = scaled_checkpoint(tmp, VISION_25, model_type="qwen2_5_vl")
        proc = Qwen2VLProcessor.from_pretrained(path)
        ours = Qwen2VL.from_pretrained(path, device="cpu", dtype=dtype)
        ref = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=dtype).eval()
    text = proc.apply_chat_template(
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Open settings."}]}]
    )
    batch = proc(text=text, images=[image], max_pixels=SCREEN_MAX)
    ids, pixels, grid = batch["input_ids"], batch["pixel_values"], batch["image_grid_thw"]
    mm = (ids == proc.image_token_id).int()
    with torch.inference_mode():
        t = best_times(
            {
                "ours vision": lambda: ours.visual(pixels, grid),
                "tf vision": lambda: ref.model.visual(pixels, grid_thw=grid),
                "ours prefill": lambda: ours(input_ids=ids, pixel_values=pixels, image_grid_thw=grid),
                "tf prefill": lambda: ref(input_ids=ids, pixel_values=pixels, image_grid_thw=grid,
                                          mm_token_type_ids=mm),
            },
            repeats,
        )  # fmt: skip
    print(f"Qwen2.5-VL, grid {grid.tolist()[0]}, windows of 4x4 merged tokens")
    for name, a, b in [
        (f"qwen2.5-vl vision tower {pixels.shape[0]} patches", t["ours vision"], t["tf vision"]),
        (f"qwen2.5-vl prefill {ids.shape[1]} tokens", t["ours prefill"], t["tf prefill"]),
    ]:
        print(f"{name:<48}{a * 1e3:>10.1f}{b * 1e3:>17.1f}{b / a:>8.2f}x")


if __name__ == "__main__":
    main()
