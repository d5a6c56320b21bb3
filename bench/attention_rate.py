"""How close the prefill's main kernel runs to this CPU's best: FLOP rates, one run.

The vision tower's attention over a 1080x2400 screenshot (5,088 patches; bench/model_cpu.py's
scaled-down tower: 4 heads of 64) is most of a prefill, in the same SDPA kernel on our side and
transformers'. Printed: that kernel's FLOP rate, and a large matmul's (the best rate torch gets
from this CPU), so the headroom left to a faster attention is their ratio.

Run: .venv/bin/python bench/attention_rate.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F


def best_seconds(fn: Callable[[], object], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    patches, heads, head_dim, n = 5088, 4, 64, 2048
    with torch.inference_mode():
        q, k, v = (torch.randn(1, heads, patches, head_dim) for _ in range(3))
        attention = best_seconds(lambda: F.scaled_dot_product_attention(q, k, v), args.repeats)
        a, b = torch.randn(n, n), torch.randn(n, n)
        matmul = best_seconds(lambda: a @ b, args.repeats)
    attention_rate = 4 * heads * patches**2 * head_dim / attention / 1e9  # QK^T and PV
    matmul_rate = 2 * n**3 / matmul / 1e9
    print(f"threads {torch.get_num_threads()}")
    print(f"SDPA, {patches} patches, {heads} heads of {head_dim}: {attention * 1e3:.1f} ms, "
          f"{attention_rate:.0f} GFLOP/s")
    print(f"matmul {n}x{n}x{n}: {matmul * 1e3:.1f} ms, {matmul_rate:.0f} GFLOP/s")
    print(f"attention / matmul rate: {attention_rate / matmul_rate:.2f}")


if __name__ == "__main__":
    main()
