"""CPU baseline: our Qwen2-VL against transformers', same random weights, in one run.

A scaled-down config (hidden 512, 4 layers, vision depth 4) with the tiny test tokenizer:
  1. preprocessing a 1080x2400 screenshot (the checkpoints' default pixel budget);
  2. prefill of that screenshot at max_pixels=1280*28*28 with a ~300-token text prompt;
  3. greedy decoding of 64 new tokens after that prompt (prefill included, and per token).
Each figure is the best of --repeats runs, ours and transformers alternating.

Run: .venv/bin/python bench/model_cpu.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from tiny_checkpoint import make_tiny_checkpoint  # noqa: E402

from model import Qwen2VL, Qwen2VLProcessor  # noqa: E402
from model.image_processing import preprocess_image  # noqa: E402

SCREEN_MAX = 1280 * 28 * 28
TEXT = dict(hidden_size=512, intermediate_size=1536, num_hidden_layers=4, num_attention_heads=4,
            num_key_value_heads=2)  # fmt: skip
VISION = dict(depth=4, embed_dim=256, num_heads=4, mlp_ratio=4)


def compare(ours, theirs, repeats: int) -> tuple[float, float]:
    """Best wall time in seconds of each, after a warm-up, alternating the two so that load
    from other processes hits both alike (the minimum is the least disturbed run)."""
    ours(), theirs()
    a, b = [], []
    for _ in range(repeats):
        for fn, out in ((ours, a), (theirs, b)):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return min(a), min(b)


def screenshot() -> Image.Image:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:2400, 0:1080]
    base = np.stack([x * 255 // 1080, y * 255 // 2400, (x // 40 + y // 40) % 2 * 255], axis=-1)
    return Image.fromarray(np.clip(base + rng.integers(0, 30, base.shape), 0, 255).astype(np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from transformers import Qwen2VLForConditionalGeneration, Qwen2VLImageProcessorPil

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = make_tiny_checkpoint(tmp, text_overrides=TEXT, vision_overrides=VISION)
        proc = Qwen2VLProcessor.from_pretrained(path)
        ours = Qwen2VL.from_pretrained(path, device="cpu", dtype="fp32")
        ref = Qwen2VLForConditionalGeneration.from_pretrained(path, dtype=torch.float32).eval()

    image = screenshot()
    hf_images = Qwen2VLImageProcessorPil()
    rows = []
    rows.append((
        "preprocess 1080x2400 (3354 tokens)",
        *compare(lambda: preprocess_image(image, proc.image_config),
                 lambda: hf_images.preprocess([image], return_tensors="np"), args.repeats),
    ))  # fmt: skip

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
    n_text = len(proc.encode(text)) - 1
    print(f"prompt: {ids.shape[1]} tokens ({n_text} text + {ids.shape[1] - n_text} image), "
          f"grid {grid.tolist()[0]}, threads {torch.get_num_threads()}")  # fmt: skip

    with torch.inference_mode():
        rows.append((
            f"prefill {ids.shape[1]} tokens",
            *compare(lambda: ours(input_ids=ids, pixel_values=pixels, image_grid_thw=grid),
                     lambda: ref(input_ids=ids, pixel_values=pixels, image_grid_thw=grid,
                                 mm_token_type_ids=mm), args.repeats),
        ))  # fmt: skip
        rows.append((
            "generate 64 tokens (prefill included)",
            *compare(
                lambda: ours.generate(input_ids=ids, pixel_values=pixels, image_grid_thw=grid,
                                      max_new_tokens=64, eos_token_ids=[]),
                lambda: ref.generate(input_ids=ids, attention_mask=torch.ones_like(ids),
                                     pixel_values=pixels, image_grid_thw=grid, mm_token_type_ids=mm,
                                     max_new_tokens=64, min_new_tokens=64, do_sample=False),
                args.repeats,
            ),
        ))  # fmt: skip
    (_, prefill_ours, prefill_ref), (_, gen_ours, gen_ref) = rows[1], rows[2]
    rows.append((
        "decode per token ((generate - prefill) / 63)",
        (gen_ours - prefill_ours) / 63,
        (gen_ref - prefill_ref) / 63,
    ))  # fmt: skip

    print(f"{'step':<46}{'ours ms':>10}{'transformers ms':>17}{'tf/ours':>9}")
    for name, a, b in rows:
        print(f"{name:<46}{a * 1e3:>10.1f}{b * 1e3:>17.1f}{b / a:>8.2f}x")


if __name__ == "__main__":
    main()
