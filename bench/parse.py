"""Parse speed of each dialect on its reply corpus, and ours against the ui-tars package.

Usage: .venv/bin/python bench/parse.py [--repeat N]

Prints the median time per reply for each dialect (valid replies only), and for the UI-TARS
corpus the ratio of the ui-tars package's parse_action_to_structure_output to ours.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from actions.dialects import get_dialect  # noqa: E402
from core.geometry import Screen  # noqa: E402

DATA = ROOT / "tests" / "data"


def per_call_us(fn, items: list, repeat: int) -> float:
    """Median over ``repeat`` runs of the mean time per item, in microseconds."""
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        for item in items:
            fn(item)
        runs.append((time.perf_counter() - start) / len(items) * 1e6)
    return statistics.median(runs)


def rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    args = parser.parse_args()

    print("| dialect | replies | median per reply |")
    print("|---|---|---|")
    for name in ("qwen2vl", "qwen25vl", "uitars"):
        valid = [r for r in rows(DATA / f"{name}_replies.jsonl") if "expected" in r]
        dialects = {dev: get_dialect(name, dev or "computer") for dev in ("phone", "computer", None)}
        items = [(dialects[r.get("device")], r["text"],
                  Screen(*r["screen"], **({"max_pixels": r["max_pixels"]}
                                          if "max_pixels" in r else {}))) for r in valid]
        us = per_call_us(lambda it: it[0].parse(it[1], it[2]), items, args.repeat)
        print(f"| {name} | {len(items)} | {us:.1f} us |")

    from ui_tars.action_parser import parse_action_to_structure_output as peer

    corpus = [r for r in rows(DATA / "uitars_corpus.jsonl")
              if r["id"] not in ("c_two_actions", "c_point_float")]
    ours = [(get_dialect("uitars", r["device"]),
             r["text"], Screen(*r["screen"])) for r in corpus]
    theirs = [(r["text"].replace("<|box_start|>", "").replace("<|box_end|>", ""), r["screen"])
              for r in corpus]
    us_ours = per_call_us(lambda it: it[0].parse(it[1], it[2]), ours, args.repeat)
    with contextlib.redirect_stdout(io.StringIO()):  # the peer prints on some inputs
        us_peer = per_call_us(
            lambda it: peer(it[0], 1000, it[1][1], it[1][0], model_type="qwen2vl"), theirs,
            args.repeat,
        )
    print(f"\nUI-TARS corpus ({len(corpus)} replies): ours {us_ours:.1f} us, ui-tars "
          f"{us_peer:.1f} us per reply; ui-tars / ours = {us_peer / us_ours:.2f}")


if __name__ == "__main__":
    main()
