"""Text that a model, a page or a device wrote, made safe to print in a terminal."""

from __future__ import annotations

import re

from core.text import well_formed

# C0 controls but line feed and tab, DEL, and the C1 controls (0x9b is a one-byte CSI); and the
# bidirectional controls (marks, embeddings, overrides, isolates), with which a text reorders
# what the terminal shows after it on its line ("Trojan Source"): a question reads otherwise.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e"
                      r"\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` with each control character written as its escape (ESC as ``\\x1b``, a
    right-to-left override as ``\\u202e``): a reply or a screen's text cannot clear the
    terminal, retitle it or set its clipboard through escape sequences, nor reorder the line.
    Line breaks and tabs stay; a lone surrogate (a goal's byte that was not UTF-8, a reply's
    JSON ``\\ud800``), which no terminal encoding takes, is shown as U+FFFD."""
    return _CONTROL.sub(lambda match: match.group().encode("unicode_escape").decode(),
                        well_formed(text))


def literal(text: str) -> str:
    """``text`` to put in a rich markup string: printable, and its square brackets shown, not
    read as markup (on which rich would also fail)."""
    from rich.markup import escape

    return escape(printable(text))
