"""Realistic replies, messy ones included, each with the exact action written by hand.

The expectations in tests/data/<dialect>_replies.jsonl were computed from the coordinate rule in
actions/coords.py (pixel = round half up of v * side / extent, the extent's own value mapping to
the last pixel), not by running the parser. Rows with "error" must raise ParseError whose message
contains that text and says which format was expected.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from actions.dialects import ParseError, get_dialect
from core.actions import parse_action
from core.geometry import Screen

DATA = Path(__file__).parent / "data"
DIALECTS = ("qwen2vl", "qwen25vl", "uitars")


def load(name: str) -> list[dict]:
    return [json.loads(line) for line in (DATA / f"{name}_replies.jsonl").read_text().splitlines()]


def cases(kind: str) -> list:
    return [
        pytest.param(name, row, id=f"{name}-{row['id']}")
        for name in DIALECTS
        for row in load(name)
        if kind in row
    ]


def setup(name: str, row: dict):
    w, h = row["screen"]
    screen = Screen(w, h, **({"max_pixels": row["max_pixels"]} if "max_pixels" in row else {}))
    return get_dialect(name, row.get("device", "computer")), screen


@pytest.mark.parametrize("name", DIALECTS)
def test_each_corpus_is_big_enough(name):
    rows = load(name)
    assert sum("expected" in r for r in rows) >= 30
    assert sum("error" in r for r in rows) >= 10
    assert len({r["id"] for r in rows}) == len(rows)


@pytest.mark.parametrize("name, row", cases("expected"))
def test_reply_parses_to_the_expected_action(name, row):
    dialect, screen = setup(name, row)
    assert dialect.parse(row["text"], screen) == parse_action(row["expected"])


@pytest.mark.parametrize("name, row", cases("error"))
def test_bad_reply_raises_a_parse_error_that_says_why(name, row):
    dialect, screen = setup(name, row)
    with pytest.raises(ParseError) as info:
        dialect.parse(row["text"], screen)
    message = str(info.value)
    assert row["error"] in message
    assert "Expected" in message  # names the format the model must write
