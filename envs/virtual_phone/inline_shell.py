"""The phone's fast path for the commands an adb host sends on every step.

``input tap 540 1200``, ``screencap``, ``dumpsys window`` and ``uiautomator dump /dev/tty``, alone
or followed by adbutils' ``; echo X4EXIT:$?``, are run straight on the phone's loop: no
``/bin/sh``, no tool process (starting those cost 50-150 ms per command on a busy box). The output
is what the real shell and tool_client.py would print. Anything else (pipes, variables, globs,
redirections, other programs) is left to the real shell: ``split_simple`` returns None for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from envs.virtual_phone.shell_commands import Result, ShellCommands

#: ``CMD; echo TAG$?``: a command followed by the echo of its exit status (adbutils' shell2,
#: ``; echo rc=$?``).
_STATUS_ECHO = re.compile(r"^(?P<head>.*);[ \t]*echo[ \t]+(?P<tag>[A-Za-z0-9_:=-]*)\$\?[ \t]*$",
                          re.S)
#: Characters that mean more than a literal to sh when unquoted.
_SPECIAL = set("|&;<>()$`*?[]{}\"'\\#~\n")


@dataclass(frozen=True)
class SimpleCommand:
    argv: list[str]
    #: Print this followed by the exit status after the command's output (None: don't).
    status_tag: str | None = None


def split_simple(command: str, programs: frozenset[str] | set[str] | tuple[str, ...]
                 ) -> SimpleCommand | None:
    """``command`` as one of ``programs`` with literal arguments, or None if sh must run it."""
    tag = None
    found = _STATUS_ECHO.match(command)
    if found:
        command, tag = found.group("head"), found.group("tag")
    argv = _words(command)
    if not argv or argv[0] not in programs:
        return None
    return SimpleCommand(argv, tag)


def _words(text: str) -> list[str] | None:
    """sh's word splitting of ``text`` when every word is a literal; None otherwise.

    Single quotes and double quotes without ``$``, backquote or backslash inside are literal;
    any other special character (unquoted) sends the command to the real shell.
    """
    words: list[str] = []
    word: list[str] = []
    in_word = False
    i = 0
    while i < len(text):
        char = text[i]
        if char in " \t":
            if in_word:
                words.append("".join(word))
                word, in_word = [], False
            i += 1
            continue
        if char in "'\"":
            end = text.find(char, i + 1)
            if end < 0:
                return None
            quoted = text[i + 1:end]
            if char == '"' and any(c in quoted for c in "$`\\"):
                return None
            word.append(quoted)
            in_word, i = True, end + 1
            continue
        if char in _SPECIAL:
            return None  # something sh would expand, redirect or run otherwise
        word.append(char)
        in_word, i = True, i + 1
    if in_word:
        words.append("".join(word))
    return words


class InlineShell:
    """Runs simple tool commands on the phone's loop; ``cwd`` is where the shell would start."""

    def __init__(self, commands: ShellCommands, tools: tuple[str, ...], cwd: Path) -> None:
        self.commands, self.tools, self.cwd = commands, frozenset(tools), cwd

    async def run(self, command: str) -> bytes | None:
        """The command's whole output (stderr after stdout), or None when sh must run it."""
        simple = split_simple(command, self.tools)
        if simple is None:
            return None
        result = await self.commands.run(simple.argv)
        output = self._output(simple.argv[0], result)
        if simple.status_tag is not None:
            output += f"{simple.status_tag}{result.code}\n".encode()
        return output

    def _output(self, tool: str, result: Result) -> bytes:
        # As tool_client.py: a result aimed at a file goes there, then its message is printed.
        if not result.file:
            return result.stdout + result.stderr
        try:
            (self.cwd / result.file).write_bytes(result.stdout)
        except OSError as exc:
            result.code = 1
            return f"{tool}: cannot write {result.file}: {exc.strerror}\n".encode()
        return result.message + result.stderr
