"""Secrets: values the agent types without the model, the trajectory or the terminal seeing them.

A goal names a secret as ``<secret:NAME>``. The model only ever sees that placeholder; when it
types text holding a placeholder, the env receives the value instead (``reveal``). Everything the
runtime writes or prints about a step passes through ``scrub``, which puts the placeholder back
wherever the value shows up (an env's error message, a task check's reason, a screen's text).

The envs' errors never quote typed text (docs/safety.md); as a second line of defence ``scrub``
also finds the value in the forms the runtime itself encodes typed text in: shell-quoted, with
spaces as ``%s`` (Android's ``input text``), escaped as by ``repr`` or JSON, and in base64; and
percent-encoded, as a page's URL shows a form field that was typed into. A value that a model's
reply spells with escapes (``learn``) is masked in that spelling too.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import ValidationError

from core.actions import Action
from core.text import CONCEALED_PIECE, pieces

_NAME_PATTERN = r"[A-Za-z_][A-Za-z0-9_]*"
_NAME = re.compile(_NAME_PATTERN)
PLACEHOLDER = re.compile(rf"<secret:({_NAME_PATTERN})>")
#: Splits a text at its placeholders, keeping each as a piece of its own.
_PLACEHOLDER_SPLIT = re.compile(rf"(<secret:{_NAME_PATTERN}>)")
#: The shortest base64 run of a value that ``scrub`` replaces (shorter runs could be anything).
MIN_BASE64_RUN = 8
_URL_DROPS = dict.fromkeys(map(ord, "\t\n\r"))
#: The printable ASCII that the WHATWG URL parser (which chromium follows) leaves as it is in a
#: fragment, a query, a special scheme's query and a path (with and without "^"), for ``quote``'s
#: ``safe``; it percent-encodes controls, space and non-ASCII everywhere.
_URL_PARSER_SAFE = tuple("".join(c for c in map(chr, range(0x21, 0x7F)) if c not in encoded)
                         for encoded in ('"<>`', '"#<>', '"#<>\'', '"#<>?`{}', '"#<>?^`{}'))


class SecretError(ValueError):
    """A secret that cannot be used: a bad name, a missing value, an unknown placeholder."""


def placeholder(name: str) -> str:
    return f"<secret:{name}>"


def parse_secret_options(options: Iterable[str], environ: Mapping[str, str] | None = None
                         ) -> dict[str, str]:
    """``NAME=VALUE`` or ``NAME`` (the value of the environment variable NAME), one per option."""
    environ = os.environ if environ is None else environ
    secrets: dict[str, str] = {}
    for number, option in enumerate(options, start=1):
        name, has_value, value = option.partition("=")
        if not _NAME.fullmatch(name):
            # Not quoted: a value given with another separator (PIN:1234) would be printed.
            raise SecretError(f"--secret number {number}: a secret's name is letters, digits "
                              "and _ (give NAME=VALUE, or NAME to read the environment variable "
                              "NAME)")
        if not has_value:
            if name not in environ:
                raise SecretError(f"--secret {name}: the environment variable {name} is not set")
            value = environ[name]
        if not value:
            raise SecretError(f"--secret {name}: the value is empty")
        _check_utf8(name, value)
        secrets[name] = value
    return secrets


def _check_utf8(name: str, value: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # an environment variable whose bytes are not UTF-8
        raise SecretError(f"the value of the secret {name} is not UTF-8 text, so it cannot be "
                          "typed; set it again as UTF-8") from None


class Secrets:
    """The run's secrets by name."""

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values = dict(values or {})
        for name, value in self._values.items():
            _check_utf8(name, value)
        self._by_length: list[tuple[str, str]] = []
        self._add({(form, name) for name, value in self._values.items()
                   for form in encoded_forms(value)})

    def _add(self, forms: set[tuple[str, str]]) -> None:
        # Every form of every value, longest first, so a value that contains another is
        # scrubbed whole.
        self._by_length = sorted(forms | set(self._by_length), key=lambda fn: (-len(fn[0]), fn))
        self._distinct = [(form, name) for form, name in self._by_length
                          if len(form) >= CONCEALED_PIECE]

    def __bool__(self) -> bool:
        return bool(self._values)

    def __repr__(self) -> str:  # never the values, even in a traceback
        return f"Secrets({sorted(self._values)})"

    def check_goal(self, goal: str) -> None:
        """Every placeholder in the goal must name a given secret."""
        missing = sorted({m for m in PLACEHOLDER.findall(goal) if m not in self._values})
        if missing:
            raise SecretError(f"the goal uses {', '.join(map(placeholder, missing))} but no "
                              f"--secret {missing[0]}=VALUE (or --secret {missing[0]}) was given")

    def reveal(self, action: Action) -> Action:
        """The action the env runs: a typed text's placeholders replaced by their values."""
        if action.kind != "type" or not PLACEHOLDER.search(action.text):
            return action

        def value(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in self._values:
                raise SecretError(f"there is no secret called {name}; the goal's secrets are: "
                                  f"{', '.join(map(placeholder, self._values)) or 'none'}")
            return self._values[name]

        try:  # validated as the model's own text is (length, well-formed Unicode)
            return type(action).model_validate({**action.model_dump(),
                                                "text": PLACEHOLDER.sub(value, action.text)})
        except ValidationError as exc:  # its messages and inputs would quote the values
            problems = "; ".join(dict.fromkeys(e["msg"] for e in exc.errors()))
            raise SecretError("the text with its secrets' values in place cannot be typed: "
                              f"{self.scrub(problems)}") from None

    def learn(self, reply: str) -> None:
        """Mask from now on (in the step's record, its thought, and the later prompts that quote
        it) the spellings of a value that the model's ``reply`` writes with escapes a parser
        reads (``\\/``, ``\\u0073``, ``\\x73``): no list of encodings holds them all."""
        if self._values:
            self._add({(spelling, name) for name, value in self._values.items()
                       for spelling in escaped_spellings(reply, value)})

    def holds_value(self, action: Action) -> bool:
        """Whether a text field of ``action`` holds a value (where its reply spelled one)."""
        fields = action.model_dump(mode="json").values()
        return any(value in field for value in self._values.values()
                   for field in fields if isinstance(field, str))

    def scrub(self, data: Any) -> Any:
        """``data`` (text, or JSON-like lists and dicts) with every value replaced by its
        placeholder."""
        if not self._values:
            return data
        if isinstance(data, str):
            return _replaced(data, self._by_length)
        if isinstance(data, dict):
            return {self.scrub(k): self.scrub(v) for k, v in data.items()}
        if isinstance(data, (list, tuple)):
            return type(data)(self.scrub(v) for v in data)
        return data

    def scrub_distinct(self, text: str) -> str:
        """``text`` with the forms of ``CONCEALED_PIECE`` characters or more masked: the last
        line of defence for a text of no known source, a whole terminal write. A shorter value
        (a 4-digit PIN) also turns up in the numbers the runtime writes itself (a step, a
        screen size, a time), where a mask would show where, and so what, the value is; what
        the model, a screen or an env wrote is scrubbed whole where it is made."""
        return _replaced(text, self._distinct)

    def scrub_cut(self, text: str) -> str:
        """``scrub`` for a text that another program wrote and may have cut short (an
        endpoint's error that quotes the request): a value cut in two is no longer found whole,
        so the text ends before the first piece of ``CONCEALED_PIECE`` characters of a value
        left in it."""
        scrubbed = self.scrub(text)
        found = [at for piece in pieces(form for form, _ in self._by_length)
                 if (at := scrubbed.find(piece)) >= 0]
        if not found:
            return scrubbed
        return scrubbed[:min(found)] + "… (cut: it quoted part of a secret's value)"


def _replaced(text: str, forms: list[tuple[str, str]]) -> str:
    """``text`` with each value form (form, name), longest first, replaced by its placeholder in
    turn, so a value that overlaps a shorter one is masked whole; only between the placeholders
    already there, so that a value found inside one ("secret" in "<secret:PW>", or in another
    value's put there a moment before) does not break it: ``<<secret:PW>:PW>`` was recorded."""
    for form, name in forms:
        # The pieces at odd indexes are placeholders (re.split keeps what it splits at).
        pieces = _PLACEHOLDER_SPLIT.split(text)
        text = "".join(piece if i % 2 else piece.replace(form, placeholder(name))
                       for i, piece in enumerate(pieces))
    return text


#: One character of a quoted string as JSON, Python or the ui-tars parser reads it: an escape,
#: or the character itself.
_UNIT = re.compile(r"\\(?:u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|x[0-9a-fA-F]{2}|N\{[^}\n]{1,100}\}"
                   r"|[0-7]{1,3}|.)|.", re.S)
_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f", "v": "\v", "a": "\a",
                   "\\": "\\", "'": "'", '"': '"', "/": "/", "\n": ""}


def _unit_text(unit: str) -> str:
    """What one unit (``_UNIT``) stands for; an escape no reader knows stands for itself."""
    if len(unit) == 1:
        return unit
    kind, body = unit[1], unit[2:]
    if kind in "uUx" and body:
        code = int(body, 16)
        return chr(code) if code <= 0x10FFFF else unit
    if kind == "N":
        try:
            return unicodedata.lookup(body[1:-1])
        except KeyError:
            return unit
    if kind in "01234567":
        return chr(int(unit[1:], 8))
    return _SIMPLE_ESCAPES.get(kind, unit)


def escaped_spellings(text: str, value: str) -> set[str]:
    """The stretches of ``text`` that spell ``value`` with at least one escape, read from the
    start of the text as a quoted string's characters are (a JSON surrogate pair as one)."""
    starts: list[int] = []  # the raw offset of each unit, and the text it stands for
    read: list[str] = []
    for match in _UNIT.finditer(text):
        piece = _unit_text(match[0])
        if read and "\ud800" <= read[-1][-1:] <= "\udbff" and "\udc00" <= piece <= "\udfff":
            read[-1] = (read[-1] + piece).encode("utf-16-le", "surrogatepass").decode("utf-16-le")
            continue
        starts.append(match.start())
        read.append(piece)
    starts.append(len(text))
    # Where each unit's text begins in the text read, and so which read offsets are unit edges.
    edges: dict[int, int] = {}
    offset = 0
    for index, piece in enumerate(read):
        edges.setdefault(offset, index)
        offset += len(piece)
    edges.setdefault(offset, len(read))
    joined = "".join(read)
    found = set()
    at = joined.find(value)
    while at >= 0:
        end = at + len(value)
        if at in edges and end in edges:
            spelled = text[starts[edges[at]]:starts[edges[end]]]
            if spelled != value:
                found.add(spelled)
        at = joined.find(value, at + 1)
    return found


def encoded_forms(value: str) -> set[str]:
    """``value`` as is, and as the runtime or a page may have encoded it in a command, a message
    or a URL: spaces as ``%s``, shell-quoted (both, whole or inside a longer quoted text),
    escaped by ``repr`` (with either quote) and by JSON, with its white space collapsed, as a
    browser reads it in a url, percent-encoded (as a form in UTF-8 or windows-1252,
    ``encodeURIComponent``, ``encodeURI`` and the URL parser write it), and the runs of its
    base64 (at each of the three byte alignments it can have inside a longer text) that depend
    on its bytes alone."""
    spaced = value.replace(" ", "%s")
    in_url = value.translate(_URL_DROPS)
    forms = {value, spaced, shlex.quote(value), shlex.quote(spaced), repr(value)[1:-1],
             # Inside a longer text: its shell quote (each ' as '"'"') and its repr (which
             # escapes ' where the text also holds a ").
             *(text.replace("'", "'\"'\"'") for text in (value, spaced)),
             repr("'\"" + value)[4:-1],
             # Each run of white space as one space, ends trimmed: an endpoint's error as the
             # backend shows it, a page's text as the browser reads it.
             " ".join(value.split()),
             # In a url, as a browser reads it (``envs.urls.as_browser_reads``): tabs and
             # line breaks dropped, and backslashes as slashes.
             in_url, in_url.replace("\\", "/"),
             json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             # Percent-encoded as a browser sends a form field (so it shows in a page's URL),
             # as encodeURIComponent writes it, and with every reserved character escaped.
             quote_plus(value, safe="*").replace("~", "%7E"), quote(value, safe="!~*'()"),
             quote(value, safe=""),
             # A form sent from a page with no charset (chromium reads it as windows-1252,
             # and sends a character that has no byte there as "&#N;"), and encodeURI.
             quote_plus(value, safe="*", encoding="cp1252", errors="xmlcharrefreplace"
                        ).replace("~", "%7E"),
             quote(value, safe="!*'();,/?:@&=+$#"),
             # As the URL parser encodes it where a page's script puts it in its own URL
             # (history.replaceState): in the fragment, the query and the path.
             *(quote(value, safe=safe) for safe in _URL_PARSER_SAFE)}
    data = value.encode("utf-8")
    for offset in range(3):
        padded = bytes(offset) + data + bytes(-(offset + len(data)) % 3)
        encoded = base64.b64encode(padded).decode("ascii")
        # Character i holds bits [6i, 6i + 6); the value's bytes hold [8 offset, 8 end).
        run = encoded[-(-8 * offset // 6):8 * (offset + len(data)) // 6]
        if len(run) >= MIN_BASE64_RUN:
            forms.add(run)
    return {form for form in forms if form}
