"""The shared key vocabulary: every spelling maps to one name, and each backend has its own."""

from __future__ import annotations

import pytest

from envs import keys


@pytest.mark.parametrize("spelling, name", [
    ("Return", "enter"), ("ENTER", "enter"), ("Escape", "esc"), ("Control", "ctrl"),
    ("cmd", "meta"), ("Super", "meta"), ("ArrowUp", "up"), ("Page_Down", "pagedown"),
    ("BackSpace", "backspace"), ("F5", "f5"), (" ", "space"), ("a", "a"), ("A", "A"), ("/", "/"),
])
def test_spellings_map_to_one_canonical_name(spelling: str, name: str) -> None:
    assert keys.canonical(spelling) == name


def test_unknown_key_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown key 'hyperdrive'.*enter"):
        keys.canonical("hyperdrive")


def test_every_canonical_key_has_a_name_in_each_backend() -> None:
    assert set(keys.PLAYWRIGHT) == keys.KEY_NAMES
    assert set(keys.PYAUTOGUI) == keys.KEY_NAMES
    assert keys.backend_key("Return", keys.PLAYWRIGHT) == "Enter"
    assert keys.backend_key("cmd", keys.PYAUTOGUI) == "win"
    assert keys.backend_key("x", keys.PLAYWRIGHT) == "x"


def test_pyautogui_knows_every_name_we_send_it() -> None:
    # Read pyautogui's KEY_NAMES from its source: importing it would need an X display.
    import ast
    import importlib.util
    import pathlib

    tree = ast.parse(pathlib.Path(importlib.util.find_spec("pyautogui").origin).read_text())
    (known,) = [
        ast.literal_eval(node.value) for node in tree.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "KEY_NAMES"
    ]
    assert set(keys.PYAUTOGUI.values()) <= set(known)
