"""A degenerate reply (a model repeating one character) is read or refused in linear time.

A model stuck in a loop writes thousands of asterisks, blank lines or spaces. Parsing it, and
taking its thought for the record, must not stall the episode: a 20,000-asterisk reply took 45 s
in qwen2vl's keyword search, and 20,000 line breaks or spaces after a fence took seconds.
"""

from __future__ import annotations

import re
import time

import pytest

from actions.dialects import ParseError, get_dialect
from core.geometry import Screen
from core.kinds import KINDS

N = 20_000
REPLIES = {
    "asterisks": "*" * N,
    "flowers": "✿" * N,
    "asterisks_then_action": "*" * N + '\n*FUNCTION*: Tap *ARGS*: {"point": (1, 2)}',
    "line_breaks": "\n" * N,
    "spaced_line_breaks": " \n" * (N // 2),
    "spaces_after_a_fence": "\n```" + " " * N + "x",
    "line_breaks_after_a_fence": "\n```" + "\n" * N + "x",
}


@pytest.mark.parametrize("dialect", ["qwen2vl", "qwen25vl", "uitars", "uitars15"])
@pytest.mark.parametrize("reply", list(REPLIES), ids=list(REPLIES))
def test_a_degenerate_reply_is_read_quickly(dialect, reply):
    d = get_dialect(dialect, "phone")
    text = REPLIES[reply]
    started = time.monotonic()
    try:
        d.parse(text, Screen(1080, 2400))
    except ParseError:
        pass
    d.thought(text)
    assert time.monotonic() - started < 1.0  # milliseconds when linear; 1 to 45 s before


def test_the_keywords_are_still_found_after_runs_of_stars():
    d = get_dialect("qwen2vl", "phone")
    text = '**** I will tap.\n***FUNCTION***: Tap ***ARGS***: {"point": (500, 500)}'
    assert d.parse(text, Screen(1000, 1000)).model_dump() == {"kind": "tap", "x": 500, "y": 500}
    assert d.thought(text) == "**** I will tap."
    blank = get_dialect("uitars", "phone")
    assert blank.thought("Thought: go\n\n\n  Action: press_home()") == "go"


@pytest.mark.parametrize("dialect", ["qwen2vl", "uitars", "uitars15"])
@pytest.mark.parametrize("form_factor", ["phone", "computer", "browser"])
def test_the_example_a_parse_error_gives_is_an_action_of_the_env(dialect, form_factor):
    """qwen2vl's example was a Tap on every device, which a browser or a desktop refuses."""
    d = get_dialect(dialect, form_factor)
    screen = Screen(1000, 800)
    with pytest.raises(ParseError) as error:
        d.parse("garbage", screen)
    (example,) = re.findall(r"for example `([^`]+)`", str(error.value))
    assert d.parse(example, screen).kind in KINDS[form_factor]
