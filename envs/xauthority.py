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
def for_python_xlib(path: str | None, display: str) -> Iterator[None]:
    """While it lasts, ``$XAUTHORITY`` names a file from which python-xlib reads the cookie that
    X programs would send to ``display``, from ``path`` (None: ``$XAUTHORITY`` or
    ``~/.Xauthority``, as they look): ``path`` itself, or, where that cookie is an entry for any
    host (the first entry for this host or any, of the display's number or none, is the one
    libXau sends), a copy holding it for this host (a local socket's entry, and 127.0.0.1's),
    in a private folder removed once the connections are made. Afterwards ``$XAUTHORITY`` is
    ``path``, or as it was (unset too)."""
    from Xlib import error, xauth

    before = os.environ.get("XAUTHORITY")
    source = path or before or os.path.join(os.path.expanduser("~"), ".Xauthority")
    try:
        entries: list[Entry] = list(xauth.Xauthority(source).entries)
    except (error.XauthError, OSError):  # none there: the connection says what it misses
        entries = []
    host = socket.gethostname().encode()
    number = display.rpartition(":")[2].partition(".")[0].encode()
    sent = next((entry for entry in entries if entry[0] in (FAMILY_WILD, FAMILY_LOCAL)
                 and (entry[0] == FAMILY_WILD or entry[1] == host)
                 and entry[2] in (b"", number) and entry[3] == COOKIE), None)
    folder = TempFolder("vlagent-xauth-") if sent and sent[0] == FAMILY_WILD else None
    try:
        if folder is not None:
            copy = Path(folder.name) / "Xauthority"
            copy.write_bytes(b"".join(packed((family, address, *sent[2:])) for family, address
                                      in ((FAMILY_LOCAL, host),
                                          (FAMILY_INTERNET, socket.inet_aton("127.0.0.1")))))
            os.environ["XAUTHORITY"] = str(copy)
        elif path:
            os.environ["XAUTHORITY"] = path
        yield
    finally:
        if path or before:
            os.environ["XAUTHORITY"] = path or before
        else:
            os.environ.pop("XAUTHORITY", None)
        if folder is not None:
            folder.cleanup()
