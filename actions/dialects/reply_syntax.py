"""Helpers every dialect's parser and renderer share: literals, brackets, errors, messages."""

from __future__ import annotations

import ast
import json
import math
import re
import warnings
from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError

from actions.dialects.base import Message, ParseError
from core.actions import Action, parse_action
from core.coords import CoordinateError, CoordSpace, Number
from core.geometry import Screen


def fail(problem: str, expected: str) -> ParseError:
    """A ParseError worded for the model: what was wrong, then the format it must write."""
    return ParseError(f"{problem.rstrip('.')}. Expected {expected}")


_FENCE = re.compile(r"^[ \t]*```[\w+-]*[ \t]*$", re.MULTILINE)
_OPENING_FENCE = re.compile(r"\A\s*```[\w+-]*[ \t]*(?:\r?\n|\Z)")
# One \s* after the fence: "[ \t]*\s*" matched the same text, in quadratic time when a long
# run of spaces after a fence did not end the reply.
_CLOSING_FENCE = re.compile(r"(?:\A|\n)[ \t]*```\s*\Z")


def strip_fences(text: str) -> str:
    """Drop the Markdown fence (```json ... ```) a model wrapped its reply in.

    Only a fence line that opens the reply (its first non-blank line) or closes it (its last)
    goes; fence lines anywhere else stay, since they may be inside a quoted argument (typed text
    holding a code block) and typed text must arrive exactly as the model wrote it. A fence around
    the action part alone ends the reply too; its opening line sits before the action, where each
    dialect skips it (``drop_fence_lines``).
    """
    text = _OPENING_FENCE.sub("", text, count=1)
    return _CLOSING_FENCE.sub("", text, count=1)


def drop_fence_lines(text: str) -> str:
    """``text`` without its code-fence lines; only for text that holds no quoted argument (what
    comes between a dialect's action marker and its call)."""
    return _FENCE.sub("", text)


_CLOSERS = {"{": "}", "[": "]", "(": ")"}


def _marks(text: str, start: int) -> Iterator[tuple[int, str]]:
    """The brackets of ``text`` from ``start`` outside quoted strings, as (index, bracket); then,
    where a string never closes, (its opening quote's index, the quote). A quote opens a string
    only inside brackets: an apostrophe in prose ("I'm") opens none."""
    depth, quote, opened = 0, "", start
    i = start
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'":
            if depth:
                quote, opened = ch, i
        elif ch in _CLOSERS:
            depth += 1
            yield i, ch
        elif ch in ")]}":
            depth = max(depth - 1, 0)
            yield i, ch
        i += 1
    if quote:
        yield opened, quote


def extract_balanced(text: str, start: int) -> str:
    """The bracketed span opening at ``text[start]``, honouring quotes.

    When the text ends before the brackets close (generation cut off, or a missing final brace),
    the missing closers are appended so the caller can still try to read it. A string that runs
    on into the call's closing brackets is a ValueError (``require_closed``).
    """
    stack: list[str] = []
    for i, mark in _marks(text, start):
        if mark in "\"'":  # a string that never closes
            require_closed(text[i + 1:])
            return text[start:] + mark + "".join(reversed(stack))
        if mark in _CLOSERS:
            stack.append(_CLOSERS[mark])
        elif stack and stack[-1] == mark:
            stack.pop()
            if not stack:
                return text[start : i + 1]
        else:
            return text[start : i + 1]  # mismatched: let the literal reader report it
    return text[start:] + "".join(reversed(stack))


_UNCLOSED_STRING = ("a string is never closed: its closing quote is missing, or escaped (a "
                    "backslash before it), so the call's closing brackets would be read as its "
                    "text; close every string, and write a backslash that ends one as \\\\")


def require_closed(body: str) -> None:
    """A ValueError if ``body``, what follows an opening quote that nothing closes up to the end
    of the reply, ends in a closing bracket: the model ended the call but not the string (it forgot
    the quote, or escaped it: ``type(content='C:\\Users\\')``), and reading on would type the
    call's ``')`` (and a line break after it, an Enter) as text. A reply cut off inside its
    text still reads as far as it goes."""
    if body.rstrip()[-1:] in (")", "]", "}"):
        raise ValueError(_UNCLOSED_STRING)


_NAMES = {"true": True, "false": False, "null": None, "True": True, "False": False, "None": None}


class _KeyTwice(ValueError):
    """An object names one key twice: which value the model meant is unknown."""


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _KeyTwice(f"{short(key)} is written twice; write each key once")
        out[key] = value
    return out


def load_literal(text: str) -> Any:
    """Read JSON, or a Python literal (tuples, single quotes, True/None, trailing commas).

    Never evaluates code: the Python form is read from the AST, constants only. A key written
    twice in one object is an error, never the last value silently (two points, two actions).
    """
    try:
        return json.loads(text, object_pairs_hook=_unique_keys)
    except _KeyTwice:
        raise
    except (ValueError, RecursionError):
        pass
    try:
        with warnings.catch_warnings():  # "invalid decimal literal" and the like: just not ours
            warnings.simplefilter("ignore")
            tree = ast.parse(text.strip(), mode="eval")
        return _literal(tree.body)
    except _KeyTwice:
        raise
    except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as exc:
        raise ValueError(f"not valid JSON or a Python literal ({type(exc).__name__})") from None


def objects_in(text: str) -> list[set[str] | None]:
    """The keys of each non-empty object (JSON or a Python dict literal) written in ``text``,
    outermost or in an outermost list, None for one that writes a key twice: after a call, each
    is a second action that a parser must refuse, never drop. One walk of the text (``_marks``):
    an unclosed bracket is prose, and a string that never closes holds the rest."""
    found: list[set[str] | None] = []
    stack: list[str] = []
    start = 0
    for i, mark in _marks(text, 0):
        if mark in "\"'":
            break
        if mark in _CLOSERS:
            if not stack:
                start = i
            stack.append(_CLOSERS[mark])
            continue
        if not stack:  # a closer in prose
            continue
        if stack.pop() != mark:
            stack.clear()  # mismatched: prose after all
            continue
        if stack:
            continue
        try:
            value = load_literal(text[start:i + 1])
        except _KeyTwice:
            found.append(None)
            continue
        except ValueError:
            continue
        # An object, or the objects of a list ([{...}, {...}]).
        found += [set(v) for v in (value if isinstance(value, list) else [value])
                  if isinstance(v, dict) and v]
    return found


def _literal(node: ast.AST) -> Any:
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, int, float, bool)):
        return node.value
    if isinstance(node, ast.Constant) and node.value is None:
        return None
    if isinstance(node, ast.Name) and node.id in _NAMES:
        return _NAMES[node.id]
    if isinstance(node, (ast.Tuple, ast.List)):
        return [_literal(e) for e in node.elts]
    if isinstance(node, ast.Dict):
        pairs = []
        for k, v in zip(node.keys, node.values):
            if k is None:
                raise ValueError("** in a literal")
            key = _literal(k)
            if not isinstance(key, str):
                raise ValueError("dict keys must be strings")
            pairs.append((key, _literal(v)))
        return _unique_keys(pairs)
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        value = _literal(node.operand)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return -value if isinstance(node.op, ast.USub) else value
    raise ValueError(f"unsupported {type(node).__name__} in a literal")


_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def numbers_in(value: Any) -> list[Number] | None:
    """The numbers of a point or box as the model wrote it: [x, y], (x, y) or "(x, y)"."""
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            return [_tame(v) for v in value]
        if len(value) == 1:
            return numbers_in(value[0])
        return None
    if isinstance(value, str):
        found = _NUMBER.findall(value)
        rest = _NUMBER.sub("", value)
        if not found or re.search(r"[^\s(),\[\]]", rest):
            return None
        return [_tame(_number(n)) for n in found]
    return None


def _tame(value: Number) -> Number:
    """Integers too big for float arithmetic become infinite: off any screen either way."""
    if isinstance(value, int) and abs(value) > 10**15:
        return math.inf if value > 0 else -math.inf
    return value


def _number(text: str) -> Number:
    if any(c in text for c in ".eE"):
        return float(text)
    try:
        return int(text)
    except ValueError:  # more digits than int() converts: far off screen anyway
        return float(text)


def key_names(value: Any) -> list[str] | None:
    """Key names from a list, or from one string split on spaces or '+'; None if unusable."""
    if isinstance(value, str):
        value = split_keys(value)
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(k, str) and k.strip() for k in value):
        return None
    return value


def split_keys(text: str) -> list[str]:
    """``"ctrl+c"``, ``"ctrl c"`` or ``"ctrl + c"`` as its keys. A '+' joins the key before it
    to a key after it; any other '+' is the plus key itself: ``"ctrl++"``, ``"ctrl+"`` and
    ``"ctrl shift +"`` end with it."""
    tokens = re.findall(r"[^+\s]+|\+", text)
    keys: list[str] = []
    for i, token in enumerate(tokens):
        joins = token == "+" and 0 < i < len(tokens) - 1 and tokens[i - 1] != "+"
        if not joins:
            keys.append(token)
    return keys


def to_point(
    value: Any, space: CoordSpace, screen: Screen, what: str, expected: str
) -> tuple[int, int]:
    """Screen pixels of a point argument, or a ParseError naming the argument."""
    nums = numbers_in(value)
    if nums is None or len(nums) not in (2, 4):
        raise fail(f"{what} must be a point (x, y), got {short(value)}", expected)
    try:
        if len(nums) == 4:  # a box: its centre, once both corners are on the screen
            for x, y in (nums[:2], nums[2:]):
                space.to_screen(x, y, screen)
            nums = [(nums[0] + nums[2]) / 2, (nums[1] + nums[3]) / 2]
        return space.to_screen(nums[0], nums[1], screen)
    except CoordinateError as exc:
        raise fail(f"{what} {exc}", expected) from None


def make_action(data: dict[str, Any], screen: Screen, expected: str) -> Action:
    """Validate ``data`` as an Action on ``screen``; pydantic errors become a ParseError."""
    try:
        return parse_action(data, screen.size)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'][1:]) or data.get('kind')}: {e['msg']}"
            for e in exc.errors()
        )
        raise fail(f"invalid {data.get('kind')} action ({errors})", expected) from None


def number_text(value: Number) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))


def merge_messages(messages: list[Message], apart: tuple[str, ...] = ()) -> list[Message]:
    """Join consecutive messages of the same role, so steps can each add to the current turn;
    each message of a role in ``apart`` stays a turn of its own."""
    merged: list[Message] = []
    for message in messages:
        if merged and merged[-1].role == message.role and message.role not in apart:
            merged[-1].content.extend(message.content)
        else:
            merged.append(Message(message.role, list(message.content)))
    return merged


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)`` cut to ``limit`` characters, for error messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."
