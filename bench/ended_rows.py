"""Replies of different lengths in one batch: one request decodes --long tokens and the others
--short, decoded together (``generate_together``, one session each) against the same requests
one at a time.

Rows that ended used to run on in the batch until its longest row ended; on a CPU each costs
its share of every step, so once half the rows have ended the others go on in a smaller batch.
Both sides are ``local`` backends over the scaled-down model of bench/model_cpu.py (random
weights, fp32, cpu); EOS is off so each reply runs to its budget. Each figure is the best of
--repeats, the sides taking turns, with the sessions emptied before each run.

Run: .venv/bin/python bench/ended_rows.py [--requests 8] [--long 128] [--short 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model_cpu import scaled_checkpoint  # noqa: E402

from agent.backends.base import Params  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--long", type=int, default=128)
    parser.add_argument("--short", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    from agent.backends.local import LocalBackend

    with tempfile.TemporaryDirectory() as tmp:
        backend = LocalBackend(str(scaled_checkpoint(tmp)), device="cpu",
                               sessions=args.requests)
        backend.model.eos_token_ids = []
        jobs = [backend.prepare(
            [{"role": "user", "content": f"request {i}: " + "word " * 200}], [],
            Params(max_new_tokens=args.long if i == 0 else args.short))
            for i in range(args.requests)]
        best = {"together": float("inf"), "one at a time": float("inf")}
        replies = {}
        for _ in range(args.repeats):
            for side in best:
                for session in backend.sessions:
                    session.reset()
                start = time.perf_counter()
                if side == "together":
                    done = backend.generate_batch(jobs)
                else:
                    done = [backend.generate_batch([job])[0] for job in jobs]
                best[side] = min(best[side], time.perf_counter() - start)
                replies[side] = [c.text for c in done]
    print(f"{args.requests} requests, one of {args.long} new tokens, the others {args.short}")
    for side, seconds in best.items():
        print(f"  {side}: {seconds:.2f} s")
    print(f"  together / one at a time: {best['together'] / best['one at a time']:.2f}")
    print(f"  same replies both ways: {replies['together'] == replies['one at a time']}")


if __name__ == "__main__":
    main()
