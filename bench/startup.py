"""Start-up: a fresh process that imports the model code and loads a checkpoint, ours against
transformers' Qwen2VLForConditionalGeneration (what every command that loads a model pays
before its first token).

Usage: .venv/bin/python bench/startup.py [--checkpoint DIR] [--repeat N]

Without --checkpoint it times a tiny random checkpoint (runtime/tiny_checkpoint.py), where
start-up is imports and set-up rather than reading weights. Runs alternate between the two,
each in a new process on CPU; prints the median wall time of each and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

LOADS = {
    "ours": "from model import Qwen2VL\nQwen2VL.from_pretrained({path!r}, device='cpu')",
    "transformers": "from transformers import Qwen2VLForConditionalGeneration as Model\n"
                    "Model.from_pretrained({path!r}, dtype='float32')",
}


def seconds(code: str) -> float:
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode:
        sys.exit(f"the load failed:\n{done.stderr}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    label = str(args.checkpoint or "a tiny random checkpoint")
    with tempfile.TemporaryDirectory() as scratch:
        if args.checkpoint is None:
            from runtime.tiny_checkpoint import make_tiny_checkpoint

            args.checkpoint = make_tiny_checkpoint(Path(scratch))
        times: dict[str, list[float]] = {name: [] for name in LOADS}
        for _ in range(args.repeat):
            for name, code in LOADS.items():
                times[name].append(seconds(code.format(path=str(args.checkpoint))))
    ours, ref = (statistics.median(times[name]) for name in LOADS)
    print(f"{label}, {args.repeat} runs each")
    print(f"ours {ours:.2f} s, transformers {ref:.2f} s: {ref / ours:.2f}x")


if __name__ == "__main__":
    main()
