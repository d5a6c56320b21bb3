"""What the env's adb client asks the adb server, seen from a fake server that speaks adb's host
protocol: one connection per command, which attaches to the device in a way every adb version
knows, so that no version is asked (adbutils asked it before every command) and a server
swapped for another adb between two commands goes on answering."""

from __future__ import annotations

import socket
import socketserver
import threading

import pytest

from envs.android import adb_client

SERIAL = "emulator-5554"


class FakeAdbServer(socketserver.ThreadingTCPServer):
    """Answers ``host:version`` with ``version``, attaches to SERIAL as adb does (with
    ``host:tport:`` from version 41 on, ``host:transport:`` on any), and answers
    ``shell:echo X`` with "X"; every request is kept."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, port: int, version: int) -> None:
        self.version = version
        self.requests: list[str] = []
        super().__init__(("127.0.0.1", port), Handler)
        threading.Thread(target=self.serve_forever, args=(0.05,), daemon=True).start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server: FakeAdbServer = self.server  # type: ignore[assignment]
        conn = self.request
        while request := self._read_request(conn):
            server.requests.append(request)
            if request == "host:version":
                reply = f"{server.version:04x}"
                conn.sendall(b"OKAY" + f"{len(reply):04x}{reply}".encode())
                return
            if request == f"host:tport:serial:{SERIAL}" and server.version >= 41:
                conn.sendall(b"OKAY" + (1).to_bytes(8, "little"))
            elif request == f"host:transport:{SERIAL}":
                conn.sendall(b"OKAY")
            elif request.startswith("shell:echo "):
                conn.sendall(b"OKAY" + request.removeprefix("shell:echo ").encode() + b"\n")
                return  # the shell's output ends where the connection does
            else:
                message = b"unknown request"
                conn.sendall(b"FAIL" + f"{len(message):04x}".encode() + message)
                return

    @staticmethod
    def _read_request(conn: socket.socket) -> str:
        head = b""
        while len(head) < 4 and (chunk := conn.recv(4 - len(head))):
            head += chunk
        if len(head) < 4:
            return ""
        size, body = int(head, 16), b""
        while len(body) < size and (chunk := conn.recv(size - len(body))):
            body += chunk
        return body.decode()


@pytest.fixture
def port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def echo(device, word: str) -> str:
    return device.shell(f"echo {word}", timeout=5).strip()


@pytest.mark.parametrize("versions", [(41, 40), (40, 41)])
def test_each_command_is_one_connection_on_a_server_of_any_version(port, versions):
    first, then = versions
    server = FakeAdbServer(port, version=first)
    try:
        device = adb_client("127.0.0.1", port, timeout_s=5).device(SERIAL)
        assert [echo(device, word) for word in ("one", "two")] == ["one", "two"]
        assert server.requests == [f"host:transport:{SERIAL}", "shell:echo one",
                                   f"host:transport:{SERIAL}", "shell:echo two"]
    finally:
        server.stop()
    # Another adb took the port while the env waited (a tool with another adb restarts the
    # server): the next command goes to it, named in a way it knows.
    swapped = FakeAdbServer(port, version=then)
    try:
        assert echo(device, "three") == "three"
    finally:
        swapped.stop()

    with pytest.raises(Exception):  # noqa: B017 - adbutils' own error: nothing listens
        echo(device, "gone")
    back = FakeAdbServer(port, version=first)
    try:
        assert echo(device, "back") == "back"
    finally:
        back.stop()
