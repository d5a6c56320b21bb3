"""Where a decode step's time goes on a GPU: our model at a real shape (random bf16 weights).

Batch 1 after a 300-token text prompt, as bench/model_gpu.py decodes, in one run:
  1. the first compiled call (the compile itself, CUDA graphs recorded);
  2. the step time compiled and eager: 64 new tokens minus 1, over 63 steps (each the second of
     two tries);
  3. the compiled step reading tokens back every step and every 32 (the default is 8 on cuda);
  4. torch.profiler over one 33-token compiled generation: host calls by self time, then GPU
     kernels by self time (a kernel's count over 32 steps is its launches a step).
  5. with ``--variants``, the compiled step again under settings that might close the gap to the
     bandwidth bound (docs/benchmarks.md, "Where a compiled step goes"), each compiled afresh:
     SDPA without cuDNN's attention (one query row per KV head is a poor fit for its flash
     kernel), and inductor's coordinate-descent tuning of its kernels (as gpt-fast sets it);
     per variant, the step time, its compile time and its top GPU kernels.
Run with ``TORCH_LOGS=perf_hints`` to see whether inductor skipped CUDA graphs, and why.

Run (where a GPU is lent): python bench/decode_step_gpu.py [--size 2B] [--variants]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch._inductor.config as inductor_config
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_gpu import SHAPES, random_models  # noqa: E402

from model.generate import _COMPILED, GenerationOptions, generate  # noqa: E402


def no_cudnn_attention() -> None:
    torch.backends.cuda.enable_cudnn_sdp(False)


def coordinate_descent() -> None:
    torch.backends.cuda.enable_cudnn_sdp(True)
    inductor_config.coordinate_descent_tuning = True


#: Settings tried with --variants, each on top of torch's defaults.
VARIANTS = {"SDPA without cuDNN": no_cudnn_attention,
            "coordinate-descent tuning": coordinate_descent}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="2B", choices=list(SHAPES))
    parser.add_argument("--variants", action="store_true", help="also time VARIANTS")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("bench/decode_step_gpu.py needs a CUDA GPU; this machine has none")
    ref, ours = random_models(args.size, "cuda")
    del ref  # transformers' model is not timed here
    prompt = torch.randint(1000, 50_000, (1, 300), device="cuda")

    def run(n: int, compiled: bool = True, sync_every: int | None = None) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        generate(ours, prompt, options=GenerationOptions(
            max_new_tokens=n, compile=compiled, sync_every=sync_every))
        torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1000

    with torch.inference_mode():
        start = time.perf_counter()
        run(64)
        print(f"{args.size}: first compiled call {time.perf_counter() - start:.1f} s")
        for compiled in (True, False):
            for _ in range(2):
                many, one = run(64, compiled), run(1, compiled)
            print(f"{args.size}: compiled={compiled}: {(many - one) / 63:.3f} ms a step")
        for every in (1, 32):
            many, one = run(64, True, every), run(1, True, every)
            print(f"{args.size}: compiled, read back every {every}: {(many - one) / 63:.3f} ms a step")
        table = profiled(run).table
        print(table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=70))
        print(table(sort_by="self_device_time_total", row_limit=15, max_name_column_width=70))
        for name, setting in VARIANTS.items() if args.variants else ():
            setting()
            _COMPILED.pop(ours, None)  # the next compiled call compiles afresh, under the setting
            torch._dynamo.reset()
            start = time.perf_counter()
            run(64)
            compile_s = time.perf_counter() - start
            for _ in range(2):
                many, one = run(64), run(1)
            print(f"{args.size}: {name}: {(many - one) / 63:.3f} ms a step "
                  f"(first call {compile_s:.1f} s)")
            print(profiled(run).table(sort_by="self_device_time_total", row_limit=8,
                                      max_name_column_width=70))


def profiled(run: Callable[[int], float]) -> torch.autograd.profiler_util.EventList:
    """torch.profiler's events over one 33-token compiled generation (32 steps)."""
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        run(33)
    return prof.key_averages()


if __name__ == "__main__":
    main()
