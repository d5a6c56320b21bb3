"""docs/generation.md's prefilled-token table is what bench/prefix_reuse.py computes."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_documented_table_is_the_computed_one(tiny_processor):
    sys.path.insert(0, str(ROOT / "bench"))
    from prefix_reuse import token_table

    assert token_table(tiny_processor) in (ROOT / "docs" / "generation.md").read_text()
