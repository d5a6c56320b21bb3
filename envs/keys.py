"""One key-name vocabulary for every env.

Models write keys many ways (``Return``, ``enter``, ``ctrl``, ``Control``, ``cmd``...).
``canonical`` turns any of them into one lower-case name; each backend then maps canonical names
to its own. A single character (``a``, ``7``, ``/``) is a key of its own and passes through unchanged.
"""

from __future__ import annotations

from core.actions import WHITE_SPACE_KEYS

#: Canonical names, each with the spellings that mean it.
_ALIASES: dict[str, tuple[str, ...]] = {
    "enter": ("return", "kp_enter"),
    "esc": ("escape",),
    "backspace": ("back_space", "bksp"),
    "delete": ("del",),
    "tab": (),
    "space": ("spacebar", " "),
    "up": ("arrowup", "arrow_up", "up_arrow"),
    "down": ("arrowdown", "arrow_down", "down_arrow"),
    "left": ("arrowleft", "arrow_left", "left_arrow"),
    "right": ("arrowright", "arrow_right", "right_arrow"),
    "home": (),
    "end": (),
    "pageup": ("page_up", "pgup", "prior"),
    "pagedown": ("page_down", "pgdn", "next"),
    "insert": ("ins",),
    "ctrl": ("control", "control_l", "ctrl_l"),
    "alt": ("alt_l", "option"),
    "shift": ("shift_l",),
    "meta": ("cmd", "command", "super", "win", "windows", "super_l", "meta_l"),
    "capslock": ("caps_lock",),
    **{f"f{n}": () for n in range(1, 13)},
}

_CANONICAL: dict[str, str] = {
    spelling: name for name, spellings in _ALIASES.items() for spelling in (name, *spellings)
}

KEY_NAMES: frozenset[str] = frozenset(_ALIASES)


def canonical(key: str) -> str:
    """The canonical name of ``key``; ValueError names the known keys when it is unknown."""
    # A line break is Enter's press (Playwright and pyautogui press it so): a gate that read
    # "\n" as a character would miss the press.
    if len(key) == 1:
        return WHITE_SPACE_KEYS.get(key, key)
    name = _CANONICAL.get(key.strip().lower().replace("-", "_"))
    if name is None:
        known = ", ".join(sorted(KEY_NAMES))
        raise ValueError(f"unknown key '{key}'; use a single character or one of: {known}")
    return name


#: Playwright's names (``keyboard.press``) for the canonical keys.
PLAYWRIGHT: dict[str, str] = {
    "enter": "Enter", "esc": "Escape", "backspace": "Backspace", "delete": "Delete",
    "tab": "Tab", "space": "Space", "up": "ArrowUp", "down": "ArrowDown", "left": "ArrowLeft",
    "right": "ArrowRight", "home": "Home", "end": "End", "pageup": "PageUp",
    "pagedown": "PageDown", "insert": "Insert", "ctrl": "Control", "alt": "Alt",
    "shift": "Shift", "meta": "Meta", "capslock": "CapsLock",
    **{f"f{n}": f"F{n}" for n in range(1, 13)},
}

#: pyautogui's names for the canonical keys.
PYAUTOGUI: dict[str, str] = {
    "enter": "enter", "esc": "esc", "backspace": "backspace", "delete": "delete", "tab": "tab",
    "space": "space", "up": "up", "down": "down", "left": "left", "right": "right",
    "home": "home", "end": "end", "pageup": "pageup", "pagedown": "pagedown",
    "insert": "insert", "ctrl": "ctrl", "alt": "alt", "shift": "shift", "meta": "win",
    "capslock": "capslock",
    **{f"f{n}": f"f{n}" for n in range(1, 13)},
}


def backend_key(key: str, table: dict[str, str]) -> str:
    """``key`` in a backend's spelling (``table`` is PLAYWRIGHT or PYAUTOGUI)."""
    name = canonical(key)
    return table.get(name, name)
