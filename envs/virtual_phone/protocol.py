"""The ADB transport protocol's packets (what adbd and the adb server exchange over TCP or USB).

Each packet is a 24-byte little-endian header (command, arg0, arg1, data length, byte-sum of the
data, command ^ 0xffffffff) followed by the data.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

HEADER = struct.Struct("<6I")

A_SYNC = 0x434E5953
A_CNXN = 0x4E584E43
A_OPEN = 0x4E45504F
A_OKAY = 0x59414B4F
A_CLSE = 0x45534C43
A_WRTE = 0x45545257
A_AUTH = 0x48545541
A_STLS = 0x534C5453

#: Protocol version 0x01000001 lets both sides skip the data checksum.
A_VERSION = 0x01000001
#: The largest payload we accept; the host's CNXN may lower what we send.
MAX_PAYLOAD = 1024 * 1024

NAMES = {A_SYNC: "SYNC", A_CNXN: "CNXN", A_OPEN: "OPEN", A_OKAY: "OKAY", A_CLSE: "CLSE",
         A_WRTE: "WRTE", A_AUTH: "AUTH", A_STLS: "STLS"}


class ProtocolError(ValueError):
    """A packet that breaks the protocol: bad magic, bad checksum, oversized data."""


@dataclass(frozen=True)
class Packet:
    command: int
    arg0: int
    arg1: int
    data: bytes = b""

    def encode(self, with_checksum: bool = True) -> bytes:
        """Header and data; ``with_checksum=False`` sends 0, as adbd does to hosts of
        ``A_VERSION`` or later (summing a 10 MB frame in Python costs most of a second)."""
        return HEADER.pack(
            self.command, self.arg0, self.arg1, len(self.data),
            checksum(self.data) if with_checksum else 0, self.command ^ 0xFFFFFFFF,
        ) + self.data

    def __repr__(self) -> str:  # readable in logs and test failures
        name = NAMES.get(self.command, hex(self.command))
        return f"Packet({name}, {self.arg0}, {self.arg1}, {self.data[:40]!r})"


def checksum(data: bytes) -> int:
    return sum(data) & 0xFFFFFFFF


def decode_header(header: bytes) -> tuple[int, int, int, int, int]:
    """(command, arg0, arg1, length, checksum) of a 24-byte header; ProtocolError if malformed."""
    command, arg0, arg1, length, crc, magic = HEADER.unpack(header)
    if magic != command ^ 0xFFFFFFFF:
        raise ProtocolError(f"bad magic in packet header {header.hex()}")
    if length > 16 * 1024 * 1024:
        raise ProtocolError(f"packet data of {length} bytes is too large")
    return command, arg0, arg1, length, crc


def banner(properties: dict[str, str], features: list[str]) -> bytes:
    """The device's CNXN payload: ``device::key=value;...;features=a,b``."""
    props = "".join(f"{k}={v};" for k, v in properties.items())
    return f"device::{props}features={','.join(features)}".encode()
