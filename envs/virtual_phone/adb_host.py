"""A private adb server (its own port and HOME), for tests, benchmarks and scripts.

Several can run at once without touching the user's adb server on 5037. The server is this
process's child (``adb nodaemon server``), not a daemon: it stays in the run's process group, so
killing the group kills it, and the kernel kills it when its parent dies (``PR_SET_PDEATHSIG``),
so even a SIGKILL of the run alone leaves no adb server behind. (Linux counts the thread that
started it as its parent: start it from a thread that outlives its use.)
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from typing import Any

from envs.base import EnvError
from envs.processes import DIES_WITH_PARENT, stop
from envs.temp_folders import TempFolder
from envs.virtual_phone.phone import VirtualPhone

#: How many other ports a server whose port was taken before it bound it tries.
PORT_MOVES = 3


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _listening(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on TCP ``port`` (Linux /proc)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError), open(table) as lines:
            for line in list(lines)[1:]:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == "0A":
                    inodes.add(fields[9])
    if not inodes:
        return False
    with contextlib.suppress(OSError):
        for fd in os.listdir(f"/proc/{pid}/fd"):
            with contextlib.suppress(OSError):
                link = os.readlink(f"/proc/{pid}/fd/{fd}")
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
    return False


class PrivateAdbServer:
    """``adb -P PORT nodaemon server`` with a scratch HOME, as a child; stopped on exit."""

    def __init__(self, adb: str = "adb") -> None:
        found = shutil.which(adb)
        if found is None:
            raise EnvError(f"{adb} is not installed: install it with `apt-get install adb`")
        self.adb = found
        self.port = free_port()
        self.home = TempFolder("vlagent-adb-")
        # Only the devices it is told to `adb connect`: no USB phone, no emulator on 5555-5585
        # and no mDNS one, all of which the user's own adb server may be using.
        self.env = {**os.environ, "HOME": self.home.name, "ADB_USB": "0", "ADB_EMU": "0",
                    "ADB_MDNS": "0"}
        self.env.pop("ANDROID_ADB_SERVER_PORT", None)

    def run(self, *args: str, timeout_s: float = 30.0) -> subprocess.CompletedProcess:
        """Run the adb CLI against this server; output is bytes."""
        return subprocess.run([self.adb, "-P", str(self.port), *args], env=self.env,
                              capture_output=True, timeout=timeout_s, check=False)

    def start(self, timeout_s: float = 20.0) -> "PrivateAdbServer":
        return self.launch().wait_ready(timeout_s)

    def launch(self) -> "PrivateAdbServer":
        """Start the server process and return at once (``wait_ready`` waits until it listens,
        from any thread; this must run in a thread that outlives the server)."""
        self._log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [self.adb, "-P", str(self.port), "nodaemon", "server"], env=self.env,
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=DIES_WITH_PARENT,
        )
        return self

    def wait_ready(self, timeout_s: float = 20.0) -> "PrivateAdbServer":
        deadline = time.monotonic() + timeout_s
        moves = 0
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._log.seek(0)
                output = self._log.read().decode(errors="replace").strip()[-300:]
                # Another process took the free port between free_port() and adb's bind (two
                # bench workers starting phones at once): try another port.
                if "Address already in use" in output and moves < PORT_MOVES:
                    moves += 1
                    self._log.close()
                    self.port = free_port()
                    self.launch()
                    continue
                raise RuntimeError(f"the adb server exited ({self.process.returncode}): {output}")
            # Ready when the port listens in our adb: a connection alone may reach whoever took
            # the port first, before our adb finds it taken and exits.
            if _listening(self.process.pid, self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"the adb server did not listen on port {self.port} in {timeout_s}s")

    def connect(self, serial: str, timeout_s: float = 20.0) -> None:
        """``adb connect SERIAL`` and wait until the device is listed as ready."""
        result = self.run("connect", serial)
        if b"connected" not in result.stdout:
            raise RuntimeError(f"adb connect {serial} failed: {result.stdout!r} {result.stderr!r}")
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if f"{serial}\tdevice" in self.run("devices").stdout.decode():
                return
            time.sleep(0.1)
        raise RuntimeError(f"{serial} did not come online in {timeout_s}s")

    def stop(self) -> None:
        process = getattr(self, "process", None)
        if process is not None:
            stop(process, timeout_s=10)
            self._log.close()
        self.home.cleanup()

    def __enter__(self) -> "PrivateAdbServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def connected_phone(adb: PrivateAdbServer | None = None, **phone_options: Any
                    ) -> Iterator[tuple[VirtualPhone, PrivateAdbServer]]:
    """A started VirtualPhone, attached (``adb connect``) to ``adb`` or to a new private server."""
    with contextlib.ExitStack() as stack:
        server = adb or stack.enter_context(PrivateAdbServer())
        phone = stack.enter_context(VirtualPhone(**phone_options))
        server.connect(phone.serial)
        yield phone, server
