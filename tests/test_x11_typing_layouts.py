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
    """An X connection whose keyboard has ROWS, the layout ``group`` active. As python-xlib's,
    its keycode lookup is a copy of the keymap, read again only by ``refresh_keyboard_mapping``
    after the server's MappingNotify (sent to every client on each change)."""

    def __init__(self, group: int) -> None:
        self.rows = dict(ROWS)
        self.group = group
        self.display = SimpleNamespace(info=SimpleNamespace(min_keycode=8, max_keycode=255))
        self.pressed: list[tuple[int, int]] = []
        self.events: list[SimpleNamespace] = []
        self.looked_up = dict(self.rows)

    def get_keyboard_mapping(self, first, count):
        return [self.rows.get(first + i, (0, 0, 0, 0)) for i in range(count)]

    def keysym_to_keycodes(self, keysym):
        return sorted(((code, i) for code, row in self.looked_up.items()
                       for i, sym in enumerate(row) if sym == keysym), key=lambda p: (p[1], p[0]))

    def load_keymap(self, rows) -> None:
        """Another client's change (``setxkbmap``): the rows, and the server's MappingNotify."""
        self.rows = dict(rows)
        self.events.append(SimpleNamespace(type=X.MappingNotify, request=X.MappingKeyboard))

    def pending_events(self):
        return len(self.events)

    def next_event(self):
        return self.events.pop(0)

    def refresh_keyboard_mapping(self, event):
        self.looked_up = dict(self.rows)

    def keysym_to_keycode(self, keysym):
        return next((code for code, _ in self.keysym_to_keycodes(keysym)), 0)

    def screen(self):
        state = SimpleNamespace(mask=self.group << 13)  # Lock off
        return SimpleNamespace(root=SimpleNamespace(query_pointer=lambda: state))

    def change_keyboard_mapping(self, keycode, rows):
        self.load_keymap({**self.rows, keycode: tuple(rows[0])})  # the same in every group

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


def typist_on(connection: TwoLayouts, monkeypatch) -> X11Typist:
    monkeypatch.setattr("Xlib.display.Display", lambda name: connection)
    monkeypatch.setattr("Xlib.ext.xtest.fake_input",
                        lambda display, kind, keycode: connection.pressed.append((kind, keycode)))
    monkeypatch.setattr(envs.x11_typing, "REBIND_GRACE_S", 0)
    return X11Typist(":0")


def type_all(typist: X11Typist, text: str) -> None:
    for chunk in typist.chunks(text):
        typist.type(chunk)


def test_a_keymap_loaded_between_two_texts_types_the_next_as_written(monkeypatch):
    """After ``setxkbmap de`` (or a desktop applying its layout) the typist went on by its copy
    of the old keymap, "zy" arrived as "yz"; and a character bound to a spare keycode that the
    new keymap gave a key of its own typed that key."""
    connection = TwoLayouts(0)
    typist = typist_on(connection, monkeypatch)
    type_all(typist, "hé")
    bound = next(code for code, row in connection.rows.items() if keysym_for("é") in row)
    h = next(code for code, row in ROWS.items() if row[0] == ord("h"))
    # The new keymap swaps two keys, and puts a key of its own on the keycode of é.
    connection.load_keymap({**ROWS, h: ROWS[32], 32: ROWS[h],
                            bound: (ord("x"), ord("X"), ord("x"), ord("X"))})
    connection.pressed.clear()
    type_all(typist, "hoé")
    assert connection.typed() == [keysym_for(c) for c in "hoé"]
    typist.close()
    assert connection.rows[bound] == (ord("x"), ord("X"), ord("x"), ord("X"))  # left alone


def test_spare_keycodes_another_client_took_are_left_to_it_and_the_rest_still_used(
        monkeypatch):
    """One rebound keycode taken by another client (``xmodmap``): typing failed with a bare
    KeyError, and close left the typist's other characters on the keymap."""
    connection = TwoLayouts(0)
    connection.rows = connection.looked_up = {  # every keycode holds a key but ROWS' spare ones
        **{code: (0xFFBE, 0, 0xFFBE, 0) for code in range(8, 256)}, **ROWS}
    typist = typist_on(connection, monkeypatch)
    spare = [code for code, row in ROWS.items() if not any(row)]
    greek = "".join(chr(0x3B1 + i) for i in range(len(spare) + 1))  # one more than there are
    type_all(typist, greek)
    taken = next(code for code in spare if any(connection.rows[code]))
    connection.load_keymap({**connection.rows, taken: (0xFFCA, 0, 0xFFCA, 0)})  # F13
    connection.pressed.clear()
    type_all(typist, "ü" + greek[:3])
    assert connection.typed() == [keysym_for(c) for c in "ü" + greek[:3]]
    typist.close()
    assert connection.rows[taken] == (0xFFCA, 0, 0xFFCA, 0)
    assert all(not any(connection.rows[code]) for code in spare if code != taken)
