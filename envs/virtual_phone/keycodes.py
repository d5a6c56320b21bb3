"""Android key codes (android.view.KeyEvent) and what the phone's page does with them."""

from __future__ import annotations

#: KEYCODE_<NAME> -> number, for the keys the virtual phone understands.
KEYCODES: dict[str, int] = {
    "HOME": 3, "BACK": 4, "CALL": 5, "ENDCALL": 6,
    **{str(d): 7 + d for d in range(10)},
    "STAR": 17, "POUND": 18, "DPAD_UP": 19, "DPAD_DOWN": 20, "DPAD_LEFT": 21,
    "DPAD_RIGHT": 22, "DPAD_CENTER": 23, "VOLUME_UP": 24, "VOLUME_DOWN": 25, "POWER": 26,
    "CAMERA": 27, "CLEAR": 28,
    **{chr(ord("A") + i): 29 + i for i in range(26)},
    "COMMA": 55, "PERIOD": 56, "TAB": 61, "SPACE": 62, "ENTER": 66, "DEL": 67, "GRAVE": 68,
    "MINUS": 69, "EQUALS": 70, "LEFT_BRACKET": 71, "RIGHT_BRACKET": 72, "BACKSLASH": 73,
    "SEMICOLON": 74, "APOSTROPHE": 75, "SLASH": 76, "AT": 77, "PLUS": 81, "MENU": 82,
    "SEARCH": 84, "PAGE_UP": 92, "PAGE_DOWN": 93, "ESCAPE": 111, "FORWARD_DEL": 112,
    "MOVE_HOME": 122, "MOVE_END": 123, "WAKEUP": 224, "SLEEP": 223, "APP_SWITCH": 187,
}
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
    "FORWARD_DEL": "Delete", "MOVE_HOME": "Home", "MOVE_END": "End",
}


def key_name(spec: str) -> str:
    """``KEYCODE_ENTER``, ``ENTER`` or ``66`` -> ``ENTER``; ValueError when unknown."""
    if spec.isdigit():
        if int(spec) in _BY_NUMBER:
            return _BY_NUMBER[int(spec)]
        raise ValueError(f"unknown key code {spec}")
    name = spec.upper().removeprefix("KEYCODE_")
    if name not in KEYCODES:
        raise ValueError(f"unknown key {spec}")
    return name
