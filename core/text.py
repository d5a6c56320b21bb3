"""Text as UTF-8 can carry it."""

from __future__ import annotations


def well_formed(text: str) -> str:
    """``text`` without lone surrogates, which ordinary runs meet (a goal whose bytes are not
    UTF-8, a page title cut inside an emoji) and which JSON, tokenizers and UTF-8 files refuse.
    Through UTF-16 a pair split into two code points joins and a lone half becomes U+FFFD."""
    return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")
