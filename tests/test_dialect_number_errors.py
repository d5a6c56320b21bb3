"""A number argument out of range is refused with an error that says so.

``time: 1e9`` (a long press of 31 years) was refused as "time must be a number, got
1000000000.0": the model was told its number was not a number, not that it was too large.
"""

from __future__ import annotations

import pytest

from actions.dialects import ParseError, get_dialect
from core.geometry import Screen

CALL = ('<tool_call>{"name": "mobile_use", "arguments": {"action": "long_press", '
        '"coordinate": [5, 5], "time": %s}}</tool_call>')


@pytest.mark.parametrize("time", ["1e9", "-1e12", "1e999", "NaN"])
def test_a_huge_or_infinite_number_is_refused_as_such(time):
    with pytest.raises(ParseError, match="time must be a finite number between -1e9 and 1e9"):
        get_dialect("qwen25vl", "phone").parse(CALL % time, Screen(1080, 2400))


@pytest.mark.parametrize("time", ['"soon"', "true", "[1]"])
def test_what_is_no_number_is_refused(time):
    with pytest.raises(ParseError, match="time must be a"):
        get_dialect("qwen25vl", "phone").parse(CALL % time, Screen(1080, 2400))
