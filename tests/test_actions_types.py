"""The Action union: JSON schema export, screen validation, JSON round trip."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from core.actions import action_json_schema, parse_action
from core.kinds import ALL_KINDS, CONTROL_KINDS, FINAL_KINDS, KINDS


def test_json_schema_lists_every_kind_with_its_fields():
    schema = action_json_schema()
    json.dumps(schema)  # plain JSON, ready for docs and tool definitions
    mapping = schema["discriminator"]["mapping"]
    assert set(mapping) == ALL_KINDS
    defs = schema["$defs"]
    tap = defs[mapping["tap"].split("/")[-1]]
    assert set(tap["required"]) == {"x", "y"}
    swipe = defs[mapping["swipe"].split("/")[-1]]
    assert {"x", "y", "x2", "y2"} <= set(swipe["properties"])
    terminate = defs[mapping["terminate"].split("/")[-1]]
    assert terminate["properties"]["status"]["enum"] == ["success", "failure"]


def test_every_form_factor_offers_real_kinds_and_every_kind_has_a_home():
    offered = set().union(*KINDS.values())
    assert offered <= ALL_KINDS, offered - ALL_KINDS
    assert ALL_KINDS <= offered, f"no form factor offers {sorted(ALL_KINDS - offered)}"
    for form_factor, kinds in KINDS.items():
        assert CONTROL_KINDS <= kinds, form_factor  # every env can wait and end an episode
    assert FINAL_KINDS <= CONTROL_KINDS


@pytest.mark.parametrize(
    "data",
    [
        {"kind": "tap", "x": 1080, "y": 5},
        {"kind": "tap", "x": -1, "y": 5},
        {"kind": "swipe", "x": 1, "y": 1, "x2": 5, "y2": 2400},
        {"kind": "scroll", "direction": "down", "x": 5, "y": 9999},
    ],
)
def test_points_off_the_screen_are_rejected(data):
    with pytest.raises(ValidationError, match="outside the 1080x2400 screen"):
        parse_action(data, (1080, 2400))
    parse_action(data)  # without a screen there is nothing to check against


def test_actions_round_trip_through_json():
    for data in [
        {"kind": "tap", "x": 1079, "y": 2399},
        {"kind": "hotkey", "keys": ["ctrl", "c"]},
        {"kind": "terminate", "status": "failure", "message": "no network"},
        {"kind": "type", "text": "héllo\n"},
    ]:
        action = parse_action(data, (1080, 2400))
        assert parse_action(action.model_dump_json(), (1080, 2400)) == action


def test_unknown_kind_and_extra_fields_are_rejected():
    with pytest.raises(ValidationError):
        parse_action({"kind": "fly"})
    with pytest.raises(ValidationError):
        parse_action({"kind": "tap", "x": 1, "y": 2, "z": 3})


@pytest.mark.parametrize("data", [
    {"kind": "click", "x": True, "y": 3}, {"kind": "drag", "x": 1, "y": 1, "x2": 5, "y2": False},
    {"kind": "scroll", "direction": "up", "amount": True}, {"kind": "wait", "seconds": True},
    {"kind": "long_press", "x": 1, "y": 1, "duration_ms": True},
])
def test_true_or_false_is_no_number(data):
    """pydantic reads true as 1: a page or a script that sent "x": true clicked at x=1."""
    with pytest.raises(ValidationError, match="not true or false"):
        parse_action(data, screen=(100, 100))
    assert parse_action({**data, **{k: 2 for k, v in data.items() if isinstance(v, bool)}},
                        screen=(100, 100))
