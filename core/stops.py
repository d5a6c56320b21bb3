"""Stop strings as every caller may give them."""

from __future__ import annotations

from typing import Iterable


def stop_strings(stop: str | Iterable[str] | None) -> tuple[str, ...]:
    """``stop`` as a tuple of strings. One string is one stop string, as transformers'
    ``stop_strings`` and OpenAI's ``stop`` take it, never its characters one by one."""
    if stop is None:
        return ()
    return (stop,) if isinstance(stop, str) else tuple(stop)
