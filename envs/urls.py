"""Urls as a browser reads them, and the allowlist of domains judged on them.

The safety gate and the browser env judge a url by the host chromium would go to (WHATWG URL,
which chromium follows), not by what Python's ``urlsplit`` makes of it, so a url spelled to
look like an allowed host (a backslash, a tab, a missing slash) is judged as the browser reads
it; ``normalize_url`` spells a url that way before it is judged and opened."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Sequence
from urllib.parse import urlsplit

#: Schemes a ``navigate`` action may open (the start url, set by the user, may be any).
NAVIGABLE_SCHEMES = ("http", "https")
#: What a browser strips from a url's ends, and removes from anywhere in it (WHATWG URL).
_C0_CONTROL_OR_SPACE = "".join(map(chr, range(0x21)))
_TAB_AND_NEWLINE = str.maketrans("", "", "\t\n\r")
#: WHATWG's forbidden domain code points (less ":", which an IPv6 host holds).
_FORBIDDEN_IN_HOST = frozenset(_C0_CONTROL_OR_SPACE + "#%/<>?@[\\]^|\x7f")


def as_browser_reads(url: str) -> str:
    """``url`` with what a browser ignores or reads differently spelled out, so that Python's
    ``urlsplit`` finds the host a browser would go to (WHATWG URL, which chromium follows):
    leading and trailing C0 controls and spaces go, ASCII tabs and newlines anywhere go, and in
    an http(s) url every backslash is a slash (``https://evil.com\\@example.com`` is a path on
    evil.com to a browser, but userinfo before example.com to ``urlsplit``) and the host comes
    after however many slashes follow the scheme (``https:evil.com``, ``https:///evil.com``)."""
    url = url.strip(_C0_CONTROL_OR_SPACE).translate(_TAB_AND_NEWLINE)
    scheme, colon, rest = url.partition(":")
    if colon and scheme.lower() in NAVIGABLE_SCHEMES:
        url = f"{scheme.lower()}://{rest.replace(chr(92), '/').lstrip('/')}"
    return url


#: A domain as an allowlist names it, in ASCII: dot-separated labels of letters, digits, hyphens
#: and underscores (which chromium keeps in a host); an IPv4 address is one too.
_DOMAIN = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*")


def ascii_host(name: str) -> str | None:
    """``name`` as a browser's url spells it: in lower case, and a name with letters of other
    scripts in its ASCII form, as chromium makes it (IDNA, UTS #46 nontransitional:
    "Bücher.example" is "xn--bcher-kva.example"); None where it has none."""
    if name.isascii():
        return name.lower()
    import idna

    try:
        return idna.encode(name, uts46=True, transitional=False).decode("ascii")
    except idna.IDNAError:
        return None


def ascii_domains(domains: Sequence[str]) -> list[str]:
    """An allowlist's entries as a browser's urls spell them (``ascii_host``); a ValueError
    naming the first that could match no host: a pattern (``*.example.com``), a url, a port, an
    IPv6 address not written as a browser writes it. Each would have blocked every page, to
    the user's surprise."""
    spelled = []
    for domain in domains:
        name = ascii_host(domain) or domain
        try:
            address = ipaddress.IPv6Address(name)  # as a url's host reads, without brackets
        except ValueError:
            address = None
        if (address is None and _DOMAIN.fullmatch(name)) or \
                (address is not None and "%" not in name and address.compressed == name):
            spelled.append(name)
            continue
        hint = "a domain is letters, digits, hyphens, underscores and dots"
        if "*" in name or name.startswith("."):
            hint = "a domain allows its subdomains, so write example.com, not *.example.com or " \
                ".example.com"
        elif name.endswith("."):
            hint = "write it without the dot at its end"
        elif address is not None:
            hint = "write the address as a browser's url does: " \
                f"{address.compressed.partition('%')[0]}, with no zone"
        elif "/" in name or ":" in name or "@" in name:
            hint = "give the host alone: example.com, not https://example.com/ or example.com:443"
        raise ValueError(f"allowed domain {domain!r} matches no host: {hint}")
    return spelled


def domain_allowed(url: str, allowed_domains: Sequence[str]) -> bool:
    """True when ``url`` is http(s) on an allowed domain or a subdomain of one, or about:blank.
    The host is read as a browser reads it (``as_browser_reads``, ``ascii_host``); a url Python
    cannot split, or whose host holds a character a browser refuses in a host (a control, a
    space, ``%``...), is not allowed."""
    url = as_browser_reads(url)
    if url == "about:blank":
        return True
    try:
        parts = urlsplit(url)
        hostname = parts.hostname
    except ValueError:  # a bad IPv6 literal, a netloc that NFKC would change...
        return False
    if parts.scheme not in NAVIGABLE_SCHEMES or not hostname or set(hostname) & _FORBIDDEN_IN_HOST:
        return False
    host = ascii_host(hostname)
    allowed = [d for d in map(ascii_host, allowed_domains) if d]
    return host is not None and any(host == d or host.endswith("." + d) for d in allowed)


def normalize_url(url: str) -> str:
    """Give a bare host such as ``example.com/x`` an https scheme; keep anything with a scheme.
    The result is spelled as a browser reads it (``as_browser_reads``: no tabs or newlines,
    and slashes for an http(s) url's backslashes), so the url the safety gate and the allowlist
    judge is the url the browser opens."""
    url = as_browser_reads(url)
    lowered = url.lower()
    if "://" in url or lowered.startswith(("about:", "data:", "file:", "javascript:", "http:",
                                            "https:")):
        return url
    return as_browser_reads("https://" + url)
