"""The live processes as /proc shows them, for tests that check what a run starts and leaves
behind."""

from __future__ import annotations

from pathlib import Path


def processes() -> dict[int, list[str]]:
    """Every live process: its /proc/PID/stat fields after the name (state, ppid, pgrp, ...)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z":
                found[int(entry.name)] = fields
    return found


def descendants(pid: int) -> list[int]:
    table = processes()
    out, parents = [], [pid]
    while parents:
        parent = parents.pop()
        children = [child for child, fields in table.items() if int(fields[1]) == parent]
        out += children
        parents += children
    return out


def command(pid: int) -> str:
    """The process's command line, arguments joined by spaces ("" once it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""
