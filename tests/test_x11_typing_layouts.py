"""Typing on an X keyboard of two layouts (``setxkbmap -layout us,ru``) with the second active.

The core keymap lists each key as first layout, shifted, second layout, shifted; the server
types a key in the layout active at the press (the XKB group). A fake connection holds such a
keymap and reads the typist's key presses as the server would; the typist used the first
layout's columns whatever layout was active, so "hello" arrived as "руддщ".
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from Xlib import X

import envs.x11_typing
from envs.x11_typing import X11Typist, keysym_for

# keycode: (us, US, ru, RU); keys of one layout repeat it, as the server lists them.
ROWS = {
    43: (ord("h"), ord("H"), 0x6D2, 0x6F2),  # р
    26: (ord("e"), ord("E"), 0x6D5, 0x6F5),  # у
    46: (ord("l"), ord("L"), 0x6C4, 0x6E4),  # д
    32: (ord("o"), ord("O"), 0x6DA, 0x6FA),  # щ
    10: (ord("1"), ord("!"), ord("1"), ord("!")),
    50: (0xFFE1, 0, 0xFFE1, 0),  # Shift_L
    **{keycode: (0, 0, 0, 0) for keycode in range(200, 210)},  # spare
}


class TwoLayouts:
    """An X connection whose keyboard has ROWS, the layout ``group`` active."""

    def __init__(self, group: int) -> None:
        self.rows = dict(ROWS)
        self.group = group
        self.display = SimpleNamespace(info=SimpleNamespace(min_keycode=8, max_keycode=255))
        self.pressed: list[tuple[int, int]] = []

    def get_keyboard_mapping(self, first, count):
        return [self.rows.get(first + i, (0, 0, 0, 0)) for i in range(count)]

    def keysym_to_keycodes(self, keysym):
        return sorted(((code, i) for code, row in self.rows.items()
                       for i, sym in enumerate(row) if sym == keysym), key=lambda p: (p[1], p[0]))

    def keysym_to_keycode(self, keysym):
        return next((code for code, _ in self.keysym_to_keycodes(keysym)), 0)

    def screen(self):
        state = SimpleNamespace(mask=self.group << 13)  # Lock off
        return SimpleNamespace(root=SimpleNamespace(query_pointer=lambda: state))

    def change_keyboard_mapping(self, keycode, rows):
        self.rows[keycode] = tuple(rows[0])  # one layout: the same in every group

    def sync(self):
        pass

    def close(self):
        pass

    def typed(self) -> list[int]:
        """The keysyms the server made of the presses: the active layout's column of each key
        (a key listed for one layout only types that in any)."""
        shift, out = False, []
        for kind, code in self.pressed:
            if code == 50:
                shift = kind == X.KeyPress
            elif kind == X.KeyPress:
                row = self.rows[code]
                column = 2 * self.group + shift if len(row) == 4 else shift
                out.append(row[column if column < len(row) else shift])
        return out


@pytest.mark.parametrize("group", [0, 1, 2], ids=["first layout", "second", "third"])
@pytest.mark.parametrize("text", ["hello", "Hello!1", "Hé"])
def test_text_arrives_as_written_whichever_layout_is_active(monkeypatch, group, text):
    connection = TwoLayouts(group)
    monkeypatch.setattr("Xlib.display.Display", lambda name: connection)
    monkeypatch.setattr("Xlib.ext.xtest.fake_input",
                        lambda display, kind, keycode: connection.pressed.append((kind, keycode)))
    monkeypatch.setattr(envs.x11_typing, "REBIND_GRACE_S", 0)
    typist = X11Typist(":0")
    for chunk in typist.chunks(text):
        typist.type(chunk)
    assert connection.typed() == [keysym_for(c) for c in text]


def test_a_keymap_loaded_between_two_texts_is_bound_again_and_its_keys_left_alone(monkeypatch):
    """After ``setxkbmap`` (or a desktop applying its layout) the characters bound to spare
    keycodes were gone, and a text holding one typed nothing in its place, reported typed; the
    new keymap's own keys on those keycodes were then unbound on close."""
    connection = TwoLayouts(0)
    monkeypatch.setattr("Xlib.display.Display", lambda name: connection)
    monkeypatch.setattr("Xlib.ext.xtest.fake_input",
                        lambda display, kind, keycode: connection.pressed.append((kind, keycode)))
    monkeypatch.setattr(envs.x11_typing, "REBIND_GRACE_S", 0)
    typist = X11Typist(":0")
    typist.type("hé")
    bound = next(code for code, row in connection.rows.items() if keysym_for("é") in row)
    # The new keymap puts a key of its own on that keycode, and leaves the next ones spare.
    connection.rows = {**ROWS, bound: (ord("x"), ord("X"), ord("x"), ord("X"))}
    connection.pressed.clear()
    typist.type("hé")
    assert connection.typed() == [keysym_for(c) for c in "hé"]
    typist.close()
    assert connection.rows[bound] == (ord("x"), ord("X"), ord("x"), ord("X"))
