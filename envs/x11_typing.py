"""Type any unicode text on an X display through XTest.

X delivers keycodes, and a keycode only means a character through the keyboard mapping, so a
character missing from the keymap (``é``, ``日``, ``✓``) must first be bound to a spare keycode.
``xdotool type`` does this too, but it unbinds each character right after pressing it: a busy
client that reads the key event after the unbind gets nothing, and the character is lost. Here the
bindings stay in place until the spare keycodes are needed for other characters (or ``close``),
so a slow client still finds the right mapping when it gets to the event. Text with more such
characters than spare keycodes comes in ``chunks``, and the env waits for the client to draw one
before the next rebinds them (``DesktopEnv._type``).
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

from envs.base import EnvError, one_line_break_each

#: How long a rebind waits for clients to fetch the new mapping (once per piece of text).
REBIND_GRACE_S = 0.03

# Return, Return, Tab. ``chunks`` turns "\r\n" and a lone "\r" into one "\n" first, so each
# line break presses Return once.
_SPECIAL_KEYSYMS = {"\n": 0xFF0D, "\r": 0xFF0D, "\t": 0xFF09}


def keysym_for(char: str) -> int:
    """The X keysym of one character (X11's rule: Latin-1 as is, the rest as 0x1000000 + code)."""
    if char in _SPECIAL_KEYSYMS:
        return _SPECIAL_KEYSYMS[char]
    code = ord(char)
    if 0x20 <= code <= 0x7E or 0xA0 <= code <= 0xFF:
        return code
    return 0x1000000 + code


class X11Typist:
    """Types text on one X display with its own connection; ``close`` releases its keys and
    restores the keymap.

    Characters already on the keyboard (ASCII on any layout) use their own keys, with Shift where
    needed. The rest are bound to spare keycodes, of which a display has few (19 on Xvfb), so a
    text with more distinct such characters is typed in ``chunks``: the caller must let the
    client catch up between chunks, because starting the next one rebinds the keycodes.
    """

    def __init__(self, display: str) -> None:
        from Xlib import XK
        from Xlib.display import Display

        try:
            self._display = Display(display)
        except Exception as exc:  # noqa: BLE001 - Xlib raises many kinds when X is unreachable
            raise EnvError(f"cannot open X display {display} for typing: {exc}") from exc
        self._spare = [code for code, syms in self._keymap().items() if not any(syms)]
        self._shift = self._display.keysym_to_keycode(XK.XK_Shift_L)
        self._bound: dict[int, int] = {}  # keysym -> spare keycode, kept between calls
        #: Every spare keycode bound, and the keysym it was bound to last (a rebind forgets the
        #: old keysym, not the keycode): those still holding it are unbound on close.
        self._ours: dict[int, int] = {}
        #: Keys pressed and not released yet: a key XTest presses stays down on the display,
        #: after this connection closes too, until something releases it.
        self._down: set[int] = set()
        #: The keymap's columns of the active layout, unshifted and shifted (``_read_layout``).
        self._columns: tuple[int, ...] = (0, 1)

    def _read_layout(self) -> None:
        """Which layout a key press types in now. A keyboard of two layouts (``setxkbmap
        -layout us,ru``) lists each key's characters as first layout, shifted, second layout,
        shifted, and the server types a key in the layout active at the press (the XKB group,
        bits 13-14 of the core state). Beyond the second, the core keymap's columns no longer
        follow the layouts, so every character goes on a spare keycode, which types the same in
        any layout."""
        group = (self._display.screen().root.query_pointer().mask >> 13) & 3
        self._columns = ((0, 1), (2, 3))[group] if group < 2 else ()

    def _on_keyboard(self, keysym: int) -> tuple[int, bool] | None:
        """The keyboard's own key for ``keysym`` in the active layout and whether it needs
        Shift, if it has one."""
        for keycode, index in self._display.keysym_to_keycodes(keysym):
            if keycode not in self._spare and index in self._columns:
                return keycode, index == self._columns[1]
        return None

    def chunks(self, text: str) -> list[str]:
        """Split ``text`` so no piece needs more characters bound than there are spare keycodes
        (its line breaks first made one "\\n" each: ``envs.base.one_line_break_each``)."""
        self._catch_up()
        self._read_layout()
        chunks, current, needed = [], "", set()
        for char in one_line_break_each(text):
            keysym = keysym_for(char)
            if self._on_keyboard(keysym) is None:
                needed.add(keysym)
                if len(needed) > len(self._spare):
                    if not self._spare:
                        # Not the character: the text may hold a secret's value.
                        raise EnvError(f"typing {len(text)} characters failed: one is not on "
                                       "the keyboard and the display has no spare keycode")
                    chunks.append(current)
                    current, needed = "", {keysym}
            current += char
        return [*chunks, current] if current else chunks

    def type(self, chunk: str) -> None:
        """Type one piece from ``chunks`` (a short text is one piece)."""
        self._catch_up()
        self._bind({keysym_for(c) for c in chunk if self._on_keyboard(keysym_for(c)) is None})
        with self._lock_off():
            for char in chunk:
                self._key(char, press=True)
                self._key(char, press=False)
        self._display.sync()

    @contextlib.contextmanager
    def _lock_off(self) -> Iterator[None]:
        """Caps Lock off meanwhile, and back on after, where it was on (the user's, or a key the
        model pressed): under Lock the keys this picks by the keymap type "hELLO" for "Hello".
        Like ``xdotool type --clearmodifiers``, it taps the key that locks."""
        from Xlib import X

        if not self._display.screen().root.query_pointer().mask & X.LockMask:
            yield
            return
        lock = next((k for k in self._display.get_modifier_mapping()[X.LockMapIndex] if k), 0)
        if not lock:
            raise EnvError("Caps Lock is on, and the X display has no key that turns it off")
        self._tap(lock)
        try:
            yield
        finally:
            self._tap(lock)

    def _tap(self, keycode: int) -> None:
        self._fake(keycode, press=True)
        self._fake(keycode, press=False)
        self._display.sync()

    def hold(self, char: str, press: bool) -> None:
        """Press (or release) the key of one character, as a key of a combination whose
        modifiers are held around it (ctrl+<, alt+é)."""
        if press:
            self._catch_up()
            self._read_layout()
        if press and self._on_keyboard(keysym_for(char)) is None:
            self._bind({keysym_for(char)})
        self._key(char, press)
        self._display.sync()

    def _key(self, char: str, press: bool) -> None:
        """One character's key down or up, with Shift around it where its key needs Shift."""
        keysym = keysym_for(char)
        keycode, shift = self._on_keyboard(keysym) or (self._bound[keysym], False)
        if shift and press:
            self._fake(self._shift, press=True)
        self._fake(keycode, press)
        if shift and not press:
            self._fake(self._shift, press=False)

    def _keymap(self) -> dict[int, tuple[int, ...]]:
        """Each keycode's keysyms, as the display maps them now."""
        info = self._display.display.info
        first = info.min_keycode
        mapping = self._display.get_keyboard_mapping(first, info.max_keycode - first + 1)
        return {first + i: tuple(syms) for i, syms in enumerate(mapping)}

    def _bind(self, keysyms: set[int]) -> None:
        missing = keysyms - self._bound.keys()
        if not missing:
            return
        free = [k for k in self._spare if k not in self._bound.values()]
        if len(free) < len(missing):  # reuse keycodes of characters this piece does not need
            self._bound = {s: k for s, k in self._bound.items() if s in keysyms}
            free = [k for k in self._spare if k not in self._bound.values()]
        if len(free) < len(missing):  # the keymap took spare keycodes since ``chunks``
            raise EnvError(f"typing failed: the keymap changed meanwhile, and the display has "
                           f"{len(free)} spare keycodes for {len(missing)} characters")
        for keysym, keycode in zip(sorted(missing), free):
            self._ours[keycode] = keysym
            self._display.change_keyboard_mapping(keycode, [(keysym, keysym)])
            self._bound[keysym] = keycode
        # A client fetches the new mapping after it hears of the change: chromium read the first
        # key after a rebind with the keycode's old character (1 text in 40 under load). A
        # Shift tap, which types nothing, takes that place, and a moment more lets the fetch
        # land before the characters come.
        self._tap(self._shift)
        time.sleep(REBIND_GRACE_S)

    def _catch_up(self) -> None:
        """Follow the keymap changes the server told of since (MappingNotify: ``setxkbmap``, a
        desktop applying its layout, another client's rebind, this one's own): python-xlib's
        keycode lookup is a copy, read again only when asked, and a stale one typed the old
        layout's keys. A spare keycode the change took is no longer the typist's: its
        character is bound again where needed, and close leaves the key alone."""
        from Xlib import X

        changed = False
        while self._display.pending_events():
            event = self._display.next_event()
            if event.type == X.MappingNotify and event.request == X.MappingKeyboard:
                self._display.refresh_keyboard_mapping(event)
                changed = True
        if not changed:
            return
        keymap = self._keymap()
        self._ours = {code: keysym for code, keysym in self._ours.items()
                      if {*keymap[code]} - {0} == {keysym}}
        self._bound = {keysym: code for keysym, code in self._bound.items() if code in self._ours}
        self._spare = [code for code, syms in keymap.items()
                       if not any(syms) or code in self._ours]

    def _fake(self, keycode: int, press: bool) -> None:
        from Xlib import X
        from Xlib.ext import xtest

        if press:  # counted before it is sent: a stray release is harmless, a lost one is not
            self._down.add(keycode)
        xtest.fake_input(self._display, X.KeyPress if press else X.KeyRelease, keycode)
        if not press:
            self._down.discard(keycode)

    def release_all(self) -> None:
        """Release every key still pressed (typing stopped midway: Ctrl-C, an error)."""
        for keycode in list(self._down):
            self._fake(keycode, press=False)
        self._display.sync()

    def close(self) -> None:
        """Release the keys still pressed, unbind the spare keycodes and disconnect. Safe to
        call twice."""
        if self._display is None:
            return
        self.release_all()
        self._catch_up()  # a keycode the keymap took since is not the typist's to unbind
        for keycode in self._ours:
            self._display.change_keyboard_mapping(keycode, [(0, 0)])
        self._bound, self._ours = {}, {}
        self._display.sync()
        self._display.close()
        self._display = None
