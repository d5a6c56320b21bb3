"""An adbd-like TCP endpoint: the ADB transport protocol over asyncio.

The adb server (``adb connect HOST:PORT``) sends CNXN; we answer with our own CNXN and no AUTH,
so the device is online at once. The host then OPENs streams to services. We serve ``shell:CMD``
and ``exec:CMD`` by running the command under a real ``/bin/sh -c`` (via ``spawn``), or without a
shell when ``inline`` takes it (the phone's own tools with literal arguments), and streaming
its output back in WRTE packets, one unacknowledged packet at a time as the protocol requires.
``shell_v2`` is not advertised, so the host never asks for its framing. Other services (``sync:``
for push/pull, ``reverse:``...) are refused: adbutils' shell, screenshots and input do not use them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from envs.virtual_phone.protocol import (
    A_CLSE,
    A_CNXN,
    A_OKAY,
    A_OPEN,
    A_VERSION,
    A_WRTE,
    HEADER,
    MAX_PAYLOAD,
    Packet,
    ProtocolError,
    banner,
    checksum,
    decode_header,
)

log = logging.getLogger(__name__)

#: Starts ``/bin/sh -c command`` in a new session, stdout (and stderr merged) piped.
Spawn = Callable[[str], Awaitable[asyncio.subprocess.Process]]
#: The whole output of a command run without a shell, or None when ``Spawn`` must run it.
RunInline = Callable[[str], Awaitable["bytes | None"]]

INTERACTIVE_REFUSAL = (
    b"vlagent virtual phone: interactive shells are not supported; "
    b"run a command instead, e.g. `adb shell wm size`\n"
)


@dataclass
class _Stream:
    local_id: int
    remote_id: int
    acked: asyncio.Event = field(default_factory=asyncio.Event)
    closed: bool = False
    task: asyncio.Task | None = None
    process: asyncio.subprocess.Process | None = None


class AdbTransport:
    """One host connection: packet loop plus the streams the host opened."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 spawn: Spawn, properties: dict[str, str], features: list[str],
                 inline: RunInline | None = None) -> None:
        self.reader, self.writer = reader, writer
        self.spawn, self.inline = spawn, inline
        self.banner = banner(properties, features)
        self.max_payload = 4096  # until the host's CNXN says more
        self.checksums = True  # until the host's CNXN shows a version that skips them
        self.streams: dict[int, _Stream] = {}
        self._next_id = 1

    def send(self, command: int, arg0: int, arg1: int, data: bytes = b"") -> None:
        if not self.writer.is_closing():
            self.writer.write(Packet(command, arg0, arg1, data).encode(self.checksums))

    async def run(self) -> None:
        try:
            while True:
                header = await self.reader.readexactly(HEADER.size)
                command, arg0, arg1, length, crc = decode_header(header)
                data = await self.reader.readexactly(length) if length else b""
                if crc and crc != checksum(data):
                    raise ProtocolError("bad data checksum")
                self._handle(command, arg0, arg1, data)
                await self.writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the host went away
        except ProtocolError as exc:
            log.warning("dropping adb connection: %s", exc)
        finally:
            await self.close()

    def _handle(self, command: int, arg0: int, arg1: int, data: bytes) -> None:
        if command == A_CNXN:
            self.max_payload = min(MAX_PAYLOAD, arg1 or MAX_PAYLOAD)
            self.checksums = arg0 < A_VERSION
            self.send(A_CNXN, A_VERSION, MAX_PAYLOAD, self.banner)
        elif command == A_OPEN:
            self._open(arg0, data.rstrip(b"\0").decode("utf-8", "replace"))
        elif command == A_OKAY:
            stream = self.streams.get(arg1)
            if stream:
                stream.acked.set()
        elif command == A_WRTE:
            # Input from the host (stdin); our commands take none, but it must be acknowledged.
            if arg1 in self.streams:
                self.send(A_OKAY, arg1, arg0)
        elif command == A_CLSE:
            stream = self.streams.pop(arg1, None)
            if stream:
                stream.closed = True  # the host closed it: no CLSE back
                _kill(stream.process)
                stream.acked.set()
        # AUTH/STLS/SYNC: never asked for, since we answer CNXN without AUTH.

    def _open(self, remote_id: int, service: str) -> None:
        if service.startswith("shell:") or service.startswith("exec:"):
            command = service.split(":", 1)[1]
        else:
            self.send(A_CLSE, 0, remote_id)  # unsupported service: refuse the open
            return
        stream = _Stream(self._next_id, remote_id)
        self._next_id += 1
        self.streams[stream.local_id] = stream
        self.send(A_OKAY, stream.local_id, remote_id)
        stream.task = asyncio.ensure_future(self._serve(stream, command))

    async def _write(self, stream: _Stream, data: bytes) -> bool:
        """Send ``data`` in packets the host accepts, waiting for its OKAY after each one."""
        for start in range(0, len(data), self.max_payload):
            if stream.closed:
                return False
            stream.acked.clear()
            self.send(A_WRTE, stream.local_id, stream.remote_id,
                      data[start:start + self.max_payload])
            await self.writer.drain()
            await stream.acked.wait()
        return not stream.closed

    async def _serve(self, stream: _Stream, command: str) -> None:
        try:
            if not command.strip():
                await self._write(stream, INTERACTIVE_REFUSAL)
                return
            output = await self.inline(command) if self.inline is not None else None
            if output is not None:
                await self._write(stream, output)
                return
            stream.process = await self.spawn(command)
            if stream.closed:  # the host closed it while the command started: it ends now
                return
            assert stream.process.stdout is not None
            while chunk := await stream.process.stdout.read(self.max_payload):
                if not await self._write(stream, chunk):
                    break
            await stream.process.wait()
        except (ConnectionError, RuntimeError) as exc:
            log.debug("stream %s ended: %s", stream.local_id, exc)
        finally:
            _kill(stream.process)
            if not stream.closed:
                stream.closed = True
                self.streams.pop(stream.local_id, None)
                self.send(A_CLSE, stream.local_id, stream.remote_id)
                with contextlib.suppress(ConnectionError):
                    await self.writer.drain()

    async def close(self) -> None:
        for stream in list(self.streams.values()):
            stream.closed = True
            _kill(stream.process)
            stream.acked.set()
        self.streams.clear()
        self.writer.close()
        with contextlib.suppress(Exception):
            await self.writer.wait_closed()


def _kill(process: asyncio.subprocess.Process | None) -> None:
    """Kill the command's whole process group (spawn starts each in its own session)."""
    if process is not None and process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)


class AdbServer:
    """Accepts adb hosts on ``host:port`` (port 0 picks a free one) and serves each connection."""

    def __init__(self, spawn: Spawn, properties: dict[str, str], features: list[str],
                 inline: RunInline | None = None) -> None:
        self.spawn, self.properties, self.features = spawn, properties, features
        self.inline = inline
        self.transports: set[AdbTransport] = set()
        self._server: asyncio.base_events.Server | None = None

    async def start(self, host: str, port: int) -> int:
        self._server = await asyncio.start_server(self._accept, host, port)
        return self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = AdbTransport(reader, writer, self.spawn, self.properties, self.features,
                                 self.inline)
        self.transports.add(transport)
        try:
            await transport.run()
        finally:
            self.transports.discard(transport)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for transport in list(self.transports):
            await transport.close()
        if self._server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 5)
