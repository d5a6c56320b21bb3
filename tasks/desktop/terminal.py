"""Terminal tasks: an xterm running bash in the episode's folder; success is read from the files
the commands write (or, for a question, compared with the agent's answer)."""

from __future__ import annotations

import random
import re
import shlex
from pathlib import Path
from typing import Any, Iterator

from core.actions import Answer, Key, Terminate, Type
from core.results import Score
from envs.base import Env
from tasks.base import SolutionStep
from tasks.desktop.programs import DesktopTask, find_window, wait_until

FILE_STEMS = ("notes", "todo", "report", "draft", "log", "summary", "result", "memo")
#: Lines with the characters a shell and a typist get wrong most easily.
LINES = ("release <v2> is ready", "a | b | c", 'she said "hello"', "it's 5 > 3",
         "cost: $40 & tax", "backup ~/*.txt now", "#todo: fix [bug] {soon}", "x=1; y=2 (ok)")
WORDS = ("apple", "river", "cobalt", "maple", "quartz", "tundra", "violet", "walnut")
FILLER = ("the quick brown fox", "jumps over the lazy dog", "lorem ipsum dolor",
          "sit amet consectetur", "a line of plain text", "nothing to see here")


class TerminalTask(DesktopTask):
    """An xterm with bash (no rc files, so the prompt and settings are the same everywhere)."""

    tags = frozenset({"terminal", "typing"})
    max_steps = 6

    def start(self, env: Env) -> None:
        self.launch(env, ["xterm", "-geometry", "100x30+40+40", "-e", "bash", "--norc",
                          "--noprofile"], "xterm")

    def run_command(self, env: Env, command: str) -> Iterator[SolutionStep]:
        """Focus the terminal (X gives the keyboard to the window under the pointer) and run
        ``command``."""
        yield SolutionStep(find_window(env, "xterm").click_centre(), "Focus the terminal.")
        yield SolutionStep(Type(text=command), "Type the command.")
        yield SolutionStep(Key(key="enter"), "Run it.")


def _file_name(rng: random.Random) -> str:
    return f"{rng.choice(FILE_STEMS)}-{rng.randint(10, 99)}.txt"


class TerminalFileTask(TerminalTask):
    """The agent's command writes ``params["file"]``; the check reads the file."""

    def command(self) -> str:
        """The command line the solution types."""
        raise NotImplementedError

    def expected(self) -> str:
        """What the file must hold (trailing newlines aside)."""
        raise NotImplementedError

    def matches(self, found: str) -> bool:
        return found.rstrip("\n") == self.expected()

    def asked(self) -> frozenset[str]:
        return frozenset({self.params["file"]})

    def verdict(self, env: Env, answer: str | None) -> Score:
        file, want = self.params["file"], self.expected()
        found = self.read(file)
        if found is not None and self.matches(found):
            return Score(success=True, reason=f"{file} holds {want!r}")
        return Score(success=False, reason=f"{file} holds {found!r}, expected {want!r}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        yield from self.run_command(env, self.command())
        wait_until(lambda: self.check(env, None).success, f"writing {self.params['file']}")
        yield SolutionStep(Terminate(status="success"), f"{self.params['file']} is written.")


class TerminalWriteFile(TerminalFileTask):
    name = "desktop/terminal-write-file"
    goal_template = ("In the terminal, create a file named {file} in the current folder whose "
                     "only line is: {text}")
    tags = TerminalTask.tags | {"easy"}
    keywords = ("shell", "xterm", "console", "file")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        return {"file": _file_name(rng), "text": rng.choice(LINES)}

    def expected(self) -> str:
        return self.params["text"]

    def command(self) -> str:
        return f"printf '%s\\n' {shlex.quote(self.params['text'])} > {self.params['file']}"


class TerminalArithmetic(TerminalFileTask):
    name = "desktop/terminal-arithmetic"
    goal_template = ("Use the terminal to compute {a} * {b} - {c} and save just the result in "
                     "a file named {file}.")
    tags = TerminalTask.tags | {"medium", "math"}
    keywords = ("shell", "calculate", "multiply")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        return {"a": rng.randint(12, 99), "b": rng.randint(3, 29), "c": rng.randint(1, 99),
                "file": _file_name(rng)}

    def expected(self) -> str:
        p = self.params
        return str(p["a"] * p["b"] - p["c"])

    def matches(self, found: str) -> bool:
        return found.strip() == self.expected()  # spaces around the number do not matter

    def command(self) -> str:
        p = self.params
        return f"echo $(( {p['a']} * {p['b']} - {p['c']} )) > {p['file']}"


class TerminalCountLines(TerminalTask):
    """A question: the file is in the terminal's folder, the answer is a count."""

    name = "desktop/terminal-count-lines"
    goal_template = ("How many lines of the file {file}, in the terminal's current folder, "
                     "contain the word '{word}'? Answer with the number.")
    tags = TerminalTask.tags | {"answer", "medium"}
    keywords = ("shell", "grep", "count")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        word = rng.choice(WORDS)
        lines = [rng.choice(FILLER) for _ in range(rng.randint(8, 14))]
        hits = rng.sample(range(len(lines)), rng.randint(2, 6))
        for index in hits:
            lines[index] = f"{lines[index]} {word}"
        return {"file": _file_name(rng), "word": word, "lines": lines}

    @property
    def count(self) -> int:
        return sum(self.params["word"] in line.split() for line in self.params["lines"])

    @property
    def text(self) -> str:
        return "\n".join(self.params["lines"]) + "\n"

    def prepare(self, folder: Path) -> None:
        (folder / self.params["file"]).write_text(self.text, encoding="utf-8")

    def verdict(self, env: Env, answer: str | None) -> Score:
        # A question is no licence to act: a file edited or removed on the way fails it, as
        # any change in the folder does (``check``).
        if _counts_said(answer or "") == {self.count}:
            return Score(success=True, reason=f"answered {self.count}")
        return Score(success=False, reason=f"answered {answer!r}, expected {self.count}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        p = self.params
        yield from self.run_command(env, f"grep -c -w {p['word']} {p['file']}")
        # The terminal now shows the count (grep's answer; the task knows it too).
        yield SolutionStep(Answer(text=str(self.count)), "grep printed the count.")


def _counts_said(answer: str) -> set[int]:
    """The whole numbers an answer names on their own ("4 lines." names 4), not those inside a
    file name (notes-42.txt), a decimal or a time. One must remain for a right answer, so
    naming several ("3 or 4") is no way to be right."""
    return {int(n) for n in re.findall(r"(?<![\w.:/-])\d+(?![\w:/-]|\.\w)", answer)}
