"""A private Xvfb display for headless desktops and tests.

Xvfb picks a free display number itself (``-displayfd``), so parallel runs never collide. Each
display gets its own ``XAUTHORITY`` file holding one random MIT-MAGIC-COOKIE-1: Xvfb admits only
clients that present it (our own, which get the file), and X clients find their entry (pyautogui
refuses to start without a file; python-xlib warns on an empty one).
"""

from __future__ import annotations

import os
import secrets
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

from envs.base import EnvError
from envs.processes import DIES_WITH_PARENT, stop
from envs.temp_folders import TempFolder
from envs.xauthority import COOKIE, FAMILY_LOCAL, packed


def _write_cookie(path: Path) -> None:
    """An Xauthority file with one entry: this host (FamilyLocal), any display number (an
    empty one matches all, and Xvfb picks its number later), a random 16-byte cookie."""
    entry = (FAMILY_LOCAL, socket.gethostname().encode(), b"", COOKIE, secrets.token_bytes(16))
    path.write_bytes(packed(entry))  # in the display's private temporary folder (mode 0700)


class Xvfb:
    """Start ``Xvfb`` on a free display; ``close`` (or leaving the ``with`` block) stops it.

    ``env`` holds ``DISPLAY`` and ``XAUTHORITY`` for child processes; ``apply()`` also sets them
    in this process (pyautogui reads ``DISPLAY`` once, when it is first imported).
    """

    def __init__(
        self, width: int = 1280, height: int = 800, depth: int = 24, timeout_s: float = 10.0
    ) -> None:
        binary = shutil.which("Xvfb")
        if binary is None:
            raise EnvError("Xvfb is not installed: install it with `apt-get install xvfb`")
        self.size = (width, height)
        self._dir = TempFolder("vlagent-xvfb-")
        self.xauthority = str(Path(self._dir.name) / "Xauthority")
        _write_cookie(Path(self.xauthority))
        # Xvfb's log goes to a file: a pipe nobody reads would block it once full.
        self._log = open(Path(self._dir.name) / "xvfb.log", "w+b")
        read_fd, write_fd = os.pipe()
        try:
            self._process = subprocess.Popen(
                # -noreset: an X server resets when its last client leaves, and a connection
                # made meanwhile (the next env's, on a busy machine) was reset by the server.
                [binary, "-displayfd", str(write_fd), "-screen", "0",
                 f"{width}x{height}x{depth}", "-nolisten", "tcp", "-auth", self.xauthority,
                 "-noreset"],
                pass_fds=(write_fd,),
                preexec_fn=DIES_WITH_PARENT,
                stdout=subprocess.DEVNULL,
                stderr=self._log,
            )
            os.close(write_fd)
            write_fd = -1
            number = self._read_display_number(read_fd, timeout_s)
        except BaseException:
            self.close()
            raise
        finally:
            os.close(read_fd)
            if write_fd >= 0:
                os.close(write_fd)
        self.display = f":{number}"

    def _read_display_number(self, fd: int, timeout_s: float) -> int:
        # Xvfb writes the display number followed by a newline once it accepts clients.
        deadline = time.monotonic() + timeout_s
        data = b""
        while not data.endswith(b"\n"):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise EnvError(f"Xvfb did not report a display within {timeout_s:g}s")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                continue
            chunk = os.read(fd, 64)
            if not chunk:
                self._process.wait(timeout=timeout_s)
                self._log.seek(0)
                log = self._log.read().decode(errors="replace")
                raise EnvError(f"Xvfb exited before it was ready: {log}")
            data += chunk
        return int(data.strip())

    @property
    def env(self) -> dict[str, str]:
        """The variables an X client needs to reach this display."""
        return {"DISPLAY": self.display, "XAUTHORITY": self.xauthority}

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def close(self) -> None:
        process = getattr(self, "_process", None)
        if process is not None:
            stop(process)
        self._log.close()
        self._dir.cleanup()

    def __enter__(self) -> "Xvfb":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
