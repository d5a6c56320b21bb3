"""Compiled against eager decode on CPU: our decode step under torch.compile, one run.

The scaled-down config of bench/model_cpu.py (hidden 512, 4 layers), a ~700-token text prompt,
greedy. Decode tokens/s is 63 over the difference between 64 new tokens and 1 (the prefill), so
the prefill is left out. The compile happens in the warm-up and is reported on its own.

Run: .venv/bin/python bench/decode_compile.py [--repeats 3] [--batch 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_cpu import best_times, scaled_checkpoint  # noqa: E402

from model import Qwen2VL, Qwen2VLProcessor  # noqa: E402
from model.generate import GenerationOptions, generate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        path = scaled_checkpoint(tmp)
        proc = Qwen2VLProcessor.from_pretrained(path)
        model = Qwen2VL.from_pretrained(path, device="cpu", dtype="fp32")
    words = "Open the settings app, find the display section and turn on dark mode. "
    text = proc.apply_chat_template([{"role": "user", "content": words * 20}])
    ids = proc(text=[text] * args.batch)["input_ids"]

    def run(new: int, compile: bool) -> None:
        generate(model, ids, options=GenerationOptions(max_new_tokens=new, eos_token_ids=(),
                                                       compile=compile))  # fmt: skip

    start = time.perf_counter()
    run(64, True)
    compile_s = time.perf_counter() - start
    t = best_times(
        {f"{mode} {n}": (lambda n=n, c=mode == "compiled": run(n, c))
         for mode in ("eager", "compiled") for n in (1, 64)},
        args.repeats,
    )  # fmt: skip
    rates = {m: 63 * args.batch / (t[f"{m} 64"] - t[f"{m} 1"]) for m in ("eager", "compiled")}
    print(f"prompt {ids.shape[1]} tokens, batch {args.batch}, threads {torch.get_num_threads()}, "
          f"first compiled call (compile included) {compile_s:.1f} s")  # fmt: skip
    for mode, rate in rates.items():
        print(f"{mode:<10} decode {rate:8.1f} tokens/s  (64 tokens {t[f'{mode} 64'] * 1e3:.1f} ms, "
              f"prefill {t[f'{mode} 1'] * 1e3:.1f} ms)")  # fmt: skip
    print(f"compiled / eager: {rates['compiled'] / rates['eager']:.2f}x")


if __name__ == "__main__":
    main()
