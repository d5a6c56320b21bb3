"""Android's key codes (android.view.KeyEvent) by the names adb's ``input keyevent`` takes:
the virtual phone's keys, and what a model may name on any phone."""

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

#: Names `input keyevent` takes without the KEYCODE_ prefix (these and Android's others), as the
#: Qwen2.5-VL prompt invites: "DEL" is backspace there, "clear" clears. Single letters and
#: digits are left out: "a" is that character, typed.
ADB_KEY_NAMES: frozenset[str] = frozenset(n for n in KEYCODES if len(n) > 1) | {
    "NOTIFICATION", "SETTINGS", "ALL_APPS", "ASSIST", "VOICE_ASSIST", "MUTE", "VOLUME_MUTE",
    "MEDIA_PLAY_PAUSE", "MEDIA_PLAY", "MEDIA_PAUSE", "MEDIA_STOP", "MEDIA_NEXT",
    "MEDIA_PREVIOUS", "BRIGHTNESS_UP", "BRIGHTNESS_DOWN", "ZOOM_IN", "ZOOM_OUT", "CUT", "COPY",
    "PASTE", "INSERT", "HEADSETHOOK", "FOCUS", "EXPLORER", "ENVELOPE", "CONTACTS", "CALENDAR",
    "CALCULATOR", "MUSIC", "NAVIGATE_PREVIOUS", "NAVIGATE_NEXT", "CAPS_LOCK", "NUM_LOCK",
    *(f"F{n}" for n in range(1, 13)),
}
