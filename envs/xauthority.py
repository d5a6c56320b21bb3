"""Xauthority files: written for a private display, and made readable to python-xlib.

pyautogui and the typist reach the X server through python-xlib, which matches an Xauthority
entry by its host only, never an entry for any host (FamilyWild). libXau (xdotool, mss, every X
program) takes such an entry for any host, and the usual recipe for X programs in a container
writes one (``xauth nlist $DISPLAY | sed -e 's/^..../ffff/' | xauth -f FILE nmerge -``).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Iterator
from pathlib import Path

from envs.temp_folders import TempFolder

FAMILY_INTERNET = 0
FAMILY_LOCAL = 256
FAMILY_WILD = 0xFFFF
COOKIE = b"MIT-MAGIC-COOKIE-1"
#: (family, address, display number, auth name, auth data), as the file holds each entry.
Entry = tuple[int, bytes, bytes, bytes, bytes]


def packed(entry: Entry) -> bytes:
    """One entry as an Xauthority file holds it: the family, then each field after its length."""
    family, *fields = entry
    return struct.pack(">H", family) + b"".join(struct.pack(">H", len(f)) + f for f in fields)


@contextlib.contextmanager
def for_python_xlib(path: str | None) -> Iterator[None]:
    """While it lasts, ``$XAUTHORITY`` names a file python-xlib can read the cookie of ``path``
    (None: ``$XAUTHORITY`` or ``~/.Xauthority``, as X programs look) from: ``path`` itself, or,
    where that holds entries for any host, a copy that also holds each of them for this host
    (a local socket's entry, and 127.0.0.1's), in a private folder removed once the connections
    are made. Afterwards ``$XAUTHORITY`` is ``path``, or as it was."""
    from Xlib import error, xauth

    before = os.environ.get("XAUTHORITY")
    source = path or before or os.path.join(os.path.expanduser("~"), ".Xauthority")
    try:
        entries: list[Entry] = list(xauth.Xauthority(source).entries)
    except (error.XauthError, OSError):  # none there: the connection says what it misses
        entries = []
    wild = [entry for entry in entries if entry[0] == FAMILY_WILD]
    folder = TempFolder("vlagent-xauth-") if wild else None
    try:
        if folder is not None:
            hosts = ((FAMILY_LOCAL, socket.gethostname().encode()),
                     (FAMILY_INTERNET, socket.inet_aton("127.0.0.1")))
            copy = Path(folder.name) / "Xauthority"
            copy.write_bytes(b"".join(map(packed, entries + [
                (family, address, *rest) for _, _, *rest in wild for family, address in hosts])))
            os.environ["XAUTHORITY"] = str(copy)
        elif path:
            os.environ["XAUTHORITY"] = path
        yield
    finally:
        if path or before:
            os.environ["XAUTHORITY"] = path or before
        if folder is not None:
            folder.cleanup()
