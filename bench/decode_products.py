"""A decode step's weight products: ``F.linear`` against row blocks, from cache and from memory.

The decoder of bench/model_cpu.py's scaled config (hidden 512, intermediate 1536, 4/2 heads of
128): its four weight shapes and the lm_head's (vocab 608), random fp32 weights, torch's threads.
Each way is timed twice: on one weight read again and again (it stays in the caches), and over
``model.linear._cold_set`` (copies of it, twice the largest cache, read in turn), which is how a
decode step reads its weights and how ``model/linear.py`` measures. Printed per shape and row
count: microseconds per product, the GB/s of weight read, and the way the measurement chooses.

Run: .venv/bin/python bench/decode_products.py [--rows 1 8] [--repeats 5]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_cpu import TEXT  # noqa: E402

from model import linear  # noqa: E402

VOCAB = 608  # the tiny test tokenizer's


def shapes() -> dict[str, tuple[int, int]]:
    hidden, inter = TEXT["hidden_size"], TEXT["intermediate_size"]
    head_dim = hidden // TEXT["num_attention_heads"]
    kv = TEXT["num_key_value_heads"] * head_dim
    return {"qkv_proj": (hidden + 2 * kv, hidden), "o_proj": (hidden, hidden),
            "gate_up_proj": (2 * inter, hidden), "down_proj": (hidden, inter),
            "lm_head": (VOCAB, hidden)}  # fmt: skip


def seconds_per_product(way, weights: list[torch.Tensor], repeats: int) -> float:
    """Best over ``repeats`` passes of one product with each weight in turn."""
    for w in weights[:2]:
        way(w)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for w in weights:
            way(w)
        best = min(best, (time.perf_counter() - start) / len(weights))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    parts = torch.get_num_threads()
    print(f"threads {parts}, largest cache {linear._largest_cache_bytes() >> 20} MiB, fp32; "
          "microseconds per product (GB/s of weight read)")
    print(f"{'weight':<14}{'rows':>5}  {'linear, cached':>17}{'blocks, cached':>17}"
          f"{'linear, memory':>17}{'blocks, memory':>17}  chosen")
    for name, shape in shapes().items():
        weight = torch.randn(shape)
        cold = linear._cold_set(weight)
        size = weight.numel() * weight.element_size()
        for rows in args.rows:
            x = torch.randn(rows, shape[1])
            ways = {"linear": lambda w: F.linear(x, w),
                    "blocks": lambda w: linear._blocked(x, w, None, parts)}
            cells = []
            for weights in ([weight] * 64, cold):
                for way in ways.values():
                    s = seconds_per_product(way, weights, args.repeats)
                    cells.append(f"{s * 1e6:.0f} ({size / s / 1e9:.0f})")
            chosen = "blocks" if linear._measure_blocks(weight, parts, rows) else "linear"
            print(f"{name:<14}{rows:>5}  " + "".join(f"{c:>17}" for c in cells) + f"  {chosen}")


if __name__ == "__main__":
    main()
