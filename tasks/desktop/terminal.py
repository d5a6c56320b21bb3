"""Terminal tasks: an xterm running bash in the episode's folder; success is read from the files
the commands write (or, for a question, compared with the agent's answer)."""

from __future__ import annotations

import random
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


class TerminalWriteFile(TerminalTask):
    name = "desktop/terminal-write-file"
    goal_template = ("In the terminal, create a file named {file} in the current folder whose "
                     "only line is: {text}")
    tags = TerminalTask.tags | {"easy"}
    keywords = ("shell", "xterm", "console", "file")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        return {"file": _file_name(rng), "text": rng.choice(LINES)}

    def check(self, env: Env, answer: str | None) -> Score:
        found = self.read(self.params["file"])
        if found is not None and found.splitlines() == [self.params["text"]]:
            return Score(success=True, reason=f"{self.params['file']} holds the line")
        return Score(success=False, reason=f"{self.params['file']} holds {found!r}, expected "
                                           f"the line {self.params['text']!r}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        file, text = self.params["file"], self.params["text"]
        yield from self.run_command(env, f"printf '%s\\n' {shlex.quote(text)} > {file}")
        wait_until(lambda: self.check(env, None).success, f"writing {file}")
        yield SolutionStep(Terminate(status="success"), f"{file} is written.")


class TerminalArithmetic(TerminalTask):
    name = "desktop/terminal-arithmetic"
    goal_template = ("Use the terminal to compute {a} * {b} - {c} and save just the result in "
                     "a file named {file}.")
    tags = TerminalTask.tags | {"medium", "math"}
    keywords = ("shell", "calculate", "multiply")

    @classmethod
    def sample_params(cls, rng: random.Random) -> dict[str, Any]:
        return {"a": rng.randint(12, 99), "b": rng.randint(3, 29), "c": rng.randint(1, 99),
                "file": _file_name(rng)}

    def check(self, env: Env, answer: str | None) -> Score:
        p = self.params
        want = str(p["a"] * p["b"] - p["c"])
        found = self.read(p["file"])
        if found is not None and found.strip() == want:
            return Score(success=True, reason=f"{p['file']} holds {want}")
        return Score(success=False, reason=f"{p['file']} holds {found!r}, expected {want}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        p = self.params
        yield from self.run_command(env, f"echo $(( {p['a']} * {p['b']} - {p['c']} )) "
                                         f"> {p['file']}")
        wait_until(lambda: self.check(env, None).success, f"writing {p['file']}")
        yield SolutionStep(Terminate(status="success"), "The result is saved.")


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

    def prepare(self, folder: Path) -> None:
        (folder / self.params["file"]).write_text("\n".join(self.params["lines"]) + "\n",
                                                  encoding="utf-8")

    def check(self, env: Env, answer: str | None) -> Score:
        if answer is not None and answer.strip().rstrip(".") == str(self.count):
            return Score(success=True, reason=f"answered {self.count}")
        return Score(success=False, reason=f"answered {answer!r}, expected {self.count}")

    def solution(self, env: Env) -> Iterator[SolutionStep]:
        p = self.params
        yield from self.run_command(env, f"grep -c -w {p['word']} {p['file']}")
        # The terminal now shows the count (grep's answer; the task knows it too).
        yield SolutionStep(Answer(text=str(self.count)), "grep printed the count.")
