"""Android key codes (android.view.KeyEvent) and what the phone's page does with them."""

from __future__ import annotations

from envs.android_keycodes import KEYCODES

_BY_NUMBER = {number: name for name, number in KEYCODES.items()}

#: Keys the page receives, as Playwright key names.
PAGE_KEYS: dict[str, str] = {
    **{str(d): str(d) for d in range(10)},
    **{chr(ord("A") + i): chr(ord("a") + i) for i in range(26)},
    "STAR": "*", "POUND": "#", "DPAD_UP": "ArrowUp", "DPAD_DOWN": "ArrowDown",
    "DPAD_LEFT": "ArrowLeft", "DPAD_RIGHT": "ArrowRight", "DPAD_CENTER": "Enter",
    "COMMA": ",", "PERIOD": ".", "TAB": "Tab", "SPACE": " ", "ENTER": "Enter",
    "DEL": "Backspace", "GRAVE": "`", "MINUS": "-", "EQUALS": "=", "LEFT_BRACKET": "[",
    "RIGHT_BRACKET": "]", "BACKSLASH": "\\", "SEMICOLON": ";", "APOSTROPHE": "'", "SLASH": "/",
    "AT": "@", "PLUS": "+", "PAGE_UP": "PageUp", "PAGE_DOWN": "PageDown", "ESCAPE": "Escape",
    "FORWARD_DEL": "Delete", "MOVE_HOME": "Home", "MOVE_END": "End", "INSERT": "Insert",
    **{f"F{n}": f"F{n}" for n in range(1, 13)},
}


def key_name(spec: str) -> str:
    """``KEYCODE_ENTER``, ``ENTER`` or ``66`` -> ``ENTER``; ValueError when unknown."""
    if spec.isdecimal():
        if int(spec) in _BY_NUMBER:
            return _BY_NUMBER[int(spec)]
        raise ValueError(f"unknown key code {spec}")
    name = spec.upper().removeprefix("KEYCODE_")
    if name not in KEYCODES:
        raise ValueError(f"unknown key {spec}")
    return name
