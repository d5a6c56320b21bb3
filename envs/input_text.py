"""Android's ``input text`` argument rules, shared by the adb client (which writes the argument)
and the virtual phone (which types what a real device would type for it)."""

from __future__ import annotations


def decode_input_text(encoded: str) -> str:
    """What Android's ``input text ARG`` types for ARG: each "%s" becomes a space."""
    out: list[str] = []
    escape = False
    for c in encoded:
        if escape and c == "s":
            out[-1] = " "
            escape = False
            continue
        escape = c == "%"
        out.append(c)
    return "".join(out)


def input_text_argument(text: str) -> str | None:
    """The ``input text`` argument that types exactly ``text``, or None if it cannot.

    It can carry printable ASCII only, spaces written as "%s"; a literal "%s" in the text
    would itself turn into a space, so such text cannot go this way.
    """
    if not all(" " <= c <= "~" for c in text):
        return None
    encoded = text.replace(" ", "%s")
    return encoded if decode_input_text(encoded) == text else None
