"""Android's key codes (android.view.KeyEvent) by the names adb's ``input keyevent`` takes:
the virtual phone's keys, and what a model may name on any phone."""

from __future__ import annotations

#: KEYCODE_<NAME> -> number: the keys the virtual phone takes, and what a model may name on
#: any phone (the virtual phone does nothing with those its apps have no use for, as with power).
KEYCODES: dict[str, int] = {
    "HOME": 3, "BACK": 4, "CALL": 5, "ENDCALL": 6,
    **{str(d): 7 + d for d in range(10)},
    "STAR": 17, "POUND": 18, "DPAD_UP": 19, "DPAD_DOWN": 20, "DPAD_LEFT": 21,
    "DPAD_RIGHT": 22, "DPAD_CENTER": 23, "VOLUME_UP": 24, "VOLUME_DOWN": 25, "POWER": 26,
    "CAMERA": 27, "CLEAR": 28,
    **{chr(ord("A") + i): 29 + i for i in range(26)},
    "COMMA": 55, "PERIOD": 56, "TAB": 61, "SPACE": 62, "EXPLORER": 64, "ENVELOPE": 65,
    "ENTER": 66, "DEL": 67, "GRAVE": 68, "MINUS": 69, "EQUALS": 70, "LEFT_BRACKET": 71,
    "RIGHT_BRACKET": 72, "BACKSLASH": 73, "SEMICOLON": 74, "APOSTROPHE": 75, "SLASH": 76,
    "AT": 77, "HEADSETHOOK": 79, "FOCUS": 80, "PLUS": 81, "MENU": 82, "NOTIFICATION": 83,
    "SEARCH": 84, "MEDIA_PLAY_PAUSE": 85, "MEDIA_STOP": 86, "MEDIA_NEXT": 87,
    "MEDIA_PREVIOUS": 88, "MUTE": 91, "PAGE_UP": 92, "PAGE_DOWN": 93, "ESCAPE": 111,
    "FORWARD_DEL": 112, "CAPS_LOCK": 115, "MOVE_HOME": 122, "MOVE_END": 123, "INSERT": 124,
    "MEDIA_PLAY": 126, "MEDIA_PAUSE": 127, **{f"F{n}": 130 + n for n in range(1, 13)},
    "NUM_LOCK": 143, "VOLUME_MUTE": 164, "ZOOM_IN": 168, "ZOOM_OUT": 169, "SETTINGS": 176,
    "APP_SWITCH": 187, "CONTACTS": 207, "CALENDAR": 208, "MUSIC": 209, "CALCULATOR": 210,
    "ASSIST": 219, "BRIGHTNESS_DOWN": 220, "BRIGHTNESS_UP": 221, "SLEEP": 223, "WAKEUP": 224,
    "VOICE_ASSIST": 231, "NAVIGATE_PREVIOUS": 260, "NAVIGATE_NEXT": 261, "CUT": 277,
    "COPY": 278, "PASTE": 279, "ALL_APPS": 284,
}

#: Names `input keyevent` takes without the KEYCODE_ prefix, as the Qwen2.5-VL prompt invites:
#: "DEL" is backspace there, "clear" clears. Single letters and digits are left out: "a" is that
#: character, typed.
ADB_KEY_NAMES: frozenset[str] = frozenset(n for n in KEYCODES if len(n) > 1)
