"""Typed actions, coordinate spaces and model dialects. Pure logic: no I/O, no torch."""

from actions.types import (
    ACTION_ADAPTER, ACTION_CLASSES, ALL_KINDS, DESKTOP_KINDS, FINAL_KINDS, PHONE_KINDS, Action,
    action_json_schema, check_on_screen, parse_action,
)

__all__ = [
    "ACTION_ADAPTER", "ACTION_CLASSES", "ALL_KINDS", "DESKTOP_KINDS", "FINAL_KINDS", "PHONE_KINDS",
    "Action", "action_json_schema", "check_on_screen", "parse_action",
]
