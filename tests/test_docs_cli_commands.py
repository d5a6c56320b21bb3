"""The commands that README.md, docs/*.md and the commands' own help show are ones the CLI takes:
each `python agent_cli.py ...` of a shell block parses (its options exist, their values have the
right type and range), and each option an inline `agent_cli.py CMD --opt` or `CMD --opt` names
is one of that command's."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
from typer.main import get_command

from cli.app import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
CLI = get_command(app)
OPTION = re.compile(r"(?<![\w-])--?[a-z][\w-]*")


def _subcommand(words: list[str]):
    """The (sub)command that WORDS name, its path and the words left for it."""
    command, path = CLI, []
    while hasattr(command, "commands") and words and words[0] in command.commands:
        path.append(words[0])
        command = command.commands[words.pop(0)]
    return command, path, words


def _invocations(text: str) -> list[list[str]]:
    """The arguments of each `agent_cli.py` call in TEXT, a shell line or a help paragraph;
    `[--opt VALUE]` (an optional part) counts as written out."""
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    calls, current = [], None
    for token in lexer:
        if token == "agent_cli.py":
            current = []
            calls.append(current)
        elif token in ("|", "&&", "||", ";"):
            current = None
        elif current is not None:
            current.append(token.strip("[]"))
    return calls


def _shell_blocks(text: str) -> list[str]:
    """The fenced blocks of TEXT that are shell (```bash, ```sh or no language)."""
    blocks, language, lines = [], None, []
    for line in text.splitlines():
        if not line.startswith("```"):
            lines.append(line)
        elif language is None:  # an opening fence
            language, lines = line[3:].strip(), []
        else:
            if language in ("", "bash", "sh"):
                blocks.append("\n".join(lines))
            language = None
    return blocks


def _documented() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for block in _shell_blocks(doc.read_text()):
            for line in re.sub(r"\\\n", " ", block).splitlines():
                if "python agent_cli.py" in line:
                    found += [(doc.name, args) for args in _invocations(line)]

    def helps(command, path):
        for paragraph in (command.help or "").split("\n\n"):
            if "agent_cli.py" in paragraph:
                where = "agent_cli.py " + " ".join(path) + " --help"
                found.extend((where, args) for args in _invocations(" ".join(paragraph.split())))
        for name, sub in getattr(command, "commands", {}).items():
            helps(sub, [*path, name])

    helps(CLI, [])
    return found


DOCUMENTED = _documented()


def test_the_docs_show_each_command():
    shown = {" ".join(_subcommand(list(args))[1]) for _, args in DOCUMENTED}
    assert {"run", "bench", "record", "parse", "view", "export", "replay", "serve", "tasks list",
            "model tiny", "model info", "model generate", "device virtual",
            "device list"} <= shown


@pytest.mark.parametrize("where, args", DOCUMENTED,
                         ids=[f"{w}: {' '.join(a)[:60]}" for w, a in DOCUMENTED])
def test_a_documented_command_line_parses(where, args):
    command, path, rest = _subcommand(list(args))
    assert path, f"{where}: agent_cli.py {' '.join(args)} names no command"
    # Parses (options, types, ranges, required ones) without running the command.
    command.make_context(" ".join(path), rest)


def _inline_spans() -> list[tuple[str, list[str], str]]:
    found = []
    for doc in DOCS:
        for span in re.findall(r"`([^`\n]+)`", doc.read_text()):
            words = span.split()
            if "agent_cli.py" in words:
                words = words[words.index("agent_cli.py") + 1:]
            elif not words or words[0] not in CLI.commands:
                continue
            found += [(doc.name, words, option) for option in OPTION.findall(" ".join(words))]
    return found


INLINE = _inline_spans()


def test_the_inline_options_are_found():
    """An empty INLINE would leave the test below with no parameters, skipped rather than failed:
    the inline options of the docs include some known ones, each with its command."""
    found = {(words[0], option) for _, words, option in INLINE if words}
    assert {("run", "--device"), ("replay", "--display"), ("bench", "--compare")} <= found, found


@pytest.mark.parametrize("where, words, option", INLINE,
                         ids=[f"{w}: {' '.join(s)[:50]}: {o}" for w, s, o in INLINE])
def test_an_inline_option_belongs_to_its_command(where, words, option):
    command, path, _ = _subcommand(list(words))
    options = {name for param in command.params for name in (*param.opts, *param.secondary_opts)}
    assert option in options, f"{where}: `{' '.join(words)}`: {' '.join(path)} has no {option}"
