"""Text as UTF-8 can carry it."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

#: A piece of a concealed text this long left in a message gives it away (shorter pieces are
#: too common to tell apart from other words).
CONCEALED_PIECE = 6


def well_formed(text: str) -> str:
    """``text`` without lone surrogates, which ordinary runs meet (a goal whose bytes are not
    UTF-8, a page title cut inside an emoji) and which JSON, tokenizers and UTF-8 files refuse.
    Through UTF-16 a pair split into two code points joins and a lone half becomes U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def one_line(text: str, limit: int) -> str:
    """``text`` on one line (each run of whitespace, line breaks included, as one space), cut at
    ``limit`` characters: a message quoted in a log line or a table cell."""
    return " ".join(text.split())[:limit]


def pieces(texts: Iterable[str]) -> Iterator[str]:
    """Each run of ``CONCEALED_PIECE`` characters in ``texts``: a text quoted cut short, or
    escaped some other way, still shows one of them."""
    size = CONCEALED_PIECE
    return (text[i:i + size] for text in texts for i in range(len(text) - size + 1))
