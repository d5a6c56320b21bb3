"""The safety gate: every parsed action passes through it before the env executes it.

``ConfirmationGate`` marks actions as sensitive by rules (``GateRules``, loadable from a JSON or
TOML file; docs/safety.md gives the schema):

- typing into a password field (the focused element, from the UI dump or the DOM), with ``type``
  or with a key that may type or paste (any ``key`` or ``hotkey`` but the editing and moving
  keys);
- a press on an element whose text matches a pattern (the element at the point): a tap or click,
  and a swipe, drag or phone scroll that the env performs as one (``Env.press_point``); and a
  key that presses the focused element (Enter, the space bar, a line break typed);
- either of those on an element the env could not inspect (``ElementInfo.opaque``: a frame the
  browser cannot read, a UI dump that failed), whose kind and text are unknown;
- ``open_app`` of a listed package or label, judged by what the env would open
  (``Env.resolve_app``), not only by the name the model wrote;
- ``navigate`` to a url off the allowed domains.

A sensitive action is then allowed or refused by the run's mode: ``ask`` the person at the
terminal, ``yes`` (allow all), or ``deny`` (refuse all). A refused action is not executed; its
reason goes back to the model as the step's result, and the step's record keeps the decision.
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import tomllib
from pydantic import BaseModel, ConfigDict, ValidationError, field_validator

from core.actions import Action
from envs import keys
from envs.base import ElementInfo, Env, EnvError, EnvGone
from envs.urls import ascii_domains, domain_allowed, normalize_url

DEFAULT_TAP_TEXT = r"pay|buy|delete|send|confirm|transfer"
#: Keys that neither type nor paste into the focused field: the named ones, but the space bar and
#: insert (shift+insert pastes).
MOVING_KEYS = keys.KEY_NAMES - {"space", "insert"}

#: Keys that press the focused element (a button, a link, a checkbox) as a tap on it would.
PRESSING_KEYS = frozenset({"enter", "space"})

Mode = Literal["ask", "yes", "deny"]


@dataclass(frozen=True)
class GateContext:
    goal: str
    step: int
    screen: tuple[int, int]
    extras: dict[str, Any] = field(default_factory=dict)  # the observation's extras (app, url...)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""
    #: The rule that found the action sensitive; None when no rule applied.
    rule: str | None = None
    #: Who decided a sensitive action: "user", "--yes", "--deny-sensitive", "no terminal".
    by: str | None = None


class SafetyGate(ABC):
    @abstractmethod
    def review(self, action: Action, context: GateContext) -> Verdict:
        """Decide whether ``action`` may run."""


class PassThroughGate(SafetyGate):
    def review(self, action: Action, context: GateContext) -> Verdict:
        return Verdict(allowed=True)


class GateRules(BaseModel):
    """Which actions are sensitive. Every rule can be switched off."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    password_fields: bool = True
    #: A case-insensitive regular expression searched in the pressed element's text; None: off.
    tap_text: str | None = DEFAULT_TAP_TEXT
    #: Packages (or app labels) whose ``open_app`` is sensitive.
    open_apps: list[str] = []
    #: Domains (and their subdomains) that ``navigate`` may reach freely; None: any.
    allowed_domains: list[str] | None = None

    @field_validator("allowed_domains")
    @classmethod
    def _domains(cls, domains: list[str] | None) -> list[str] | None:
        if domains is not None:
            ascii_domains(domains)
        return domains

    @field_validator("tap_text")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            # OverflowError: a repetition count past what re takes, as "a{99999999999}"
            except (re.error, OverflowError) as exc:
                raise ValueError(f"tap_text is not a regular expression: {exc}") from None
        return pattern


def comparable(text: str) -> str:
    """``text`` as ``tap_text`` is matched against it: compatibility forms as their letters
    (fullwidth "Ｄｅｌｅｔｅ"), without accents and the characters that show nothing (a soft
    hyphen, a zero-width space, bidi controls), and with other letters than ASCII case-folded
    ("ß" as "ss", so a button set in capitals, "ABSCHLIESSEN", still reads as "abschließen";
    ASCII is left to re.IGNORECASE, so a pattern's escapes such as ``\\W`` keep their sense)."""
    folded = "".join(c if c.isascii() else c.casefold()
                     for c in unicodedata.normalize("NFKD", text))
    return "".join(c for c in unicodedata.normalize("NFKD", folded)
                   if unicodedata.category(c) not in ("Mn", "Cf"))


#: A word: a run of letters.
_WORD = re.compile(r"[^\W\d_]+")


def latin_lookalikes(text: str) -> str:
    """``text`` with the words set in look-alike letters read as the ASCII ones they show: a
    word that mixes ASCII letters with others ("Dеlete" with a Cyrillic "е", "Pɑy" with a Latin
    alpha), or one whose every letter looks like an ASCII one ("Рау" in Cyrillic). Other words
    of other scripts stay as they are: "Браузер" is no "Бpayзep" to its reader."""
    if text.isascii():
        return text

    def read(match: re.Match[str]) -> str:
        word = match.group(0)
        looks = [c if c.isascii() else _ascii_lookalike(c) for c in word]
        if any(c.isascii() for c in word) or all(looks):
            return "".join(look or c for look, c in zip(looks, word))
        return word

    return _WORD.sub(read, text)


@functools.lru_cache(maxsize=4096)
def _ascii_lookalike(letter: str) -> str | None:
    """The ASCII letter that ``letter`` looks like, by Unicode's table of confusables (UTS #39),
    or a small capital's letter ("ᴅ"); None when it looks like none."""
    from confusable_homoglyphs import confusables  # reads its 900 KB table on first use

    found = confusables.is_confusable(letter, greedy=True, preferred_aliases=[]) or []
    look = next((h["c"] for entry in found for h in entry["homoglyphs"]
                 if h["c"].isascii() and h["c"].isalpha()), None)
    small_capital = unicodedata.name(letter, "").removeprefix("LATIN LETTER SMALL CAPITAL ")
    if look is None and len(small_capital) == 1:
        look = small_capital.lower()
    return look


def load_rules(path: str | Path) -> GateRules:
    """Rules from a ``.json`` or ``.toml`` file; a clear ValueError when it is not valid."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        return GateRules.model_validate(data)
    except (OSError, ValueError, ValidationError) as exc:
        detail = str(exc).replace("\n", "; ")
        raise ValueError(f"cannot read the gate rules in {path}: {detail}") from None


@dataclass(frozen=True)
class Sensitive:
    rule: Literal["password_field", "tap_text", "open_app", "navigation"]
    reason: str


class ConfirmationGate(SafetyGate):
    """Applies ``rules`` to each action, looking up elements in ``env``. ``ask`` asks the person
    (a question in; True to allow, False to refuse, None when nobody can be asked), and is needed
    for mode ``ask``. ``hide`` masks the run's secrets in a text the gate quotes, before it is
    cut short: a value cut in two would no longer be found and masked afterwards."""

    def __init__(self, rules: GateRules, env: Env, mode: Mode = "ask",
                 ask: Callable[[str], bool | None] | None = None,
                 hide: Callable[[str], str] = str) -> None:
        if mode == "ask" and ask is None:
            raise ValueError("mode 'ask' needs a way to ask")
        self.rules = rules
        self.env = env
        self.mode = mode
        self.ask = ask
        self.hide = hide
        self._tap_text = re.compile(comparable(rules.tap_text), re.IGNORECASE) \
            if rules.tap_text else None

    def review(self, action: Action, context: GateContext) -> Verdict:
        hit = self.sensitive(action)
        if hit is None:
            return Verdict(allowed=True)
        if self.mode == "yes":
            return Verdict(True, hit.reason, hit.rule, by="--yes")
        if self.mode == "deny":
            return Verdict(False, f"{hit.reason}; this run refuses sensitive actions "
                           "(--deny-sensitive)", hit.rule, by="--deny-sensitive")
        assert self.ask is not None
        # The action is masked too (a value the model wrote, read off a screen): the console's own
        # masking misses a value that rich wraps onto two lines of the question.
        answer = self.ask(f"The agent wants to {self.hide(describe(action))}: {hit.reason}. "
                          "Allow it?")
        if answer is None:
            return Verdict(False, f"{hit.reason}; there is no terminal to confirm it on (run "
                           "with --yes to allow sensitive actions)", hit.rule, by="no terminal")
        if answer:
            return Verdict(True, hit.reason, hit.rule, by="user")
        return Verdict(False, f"{hit.reason}; the user refused it", hit.rule, by="user")

    def sensitive(self, action: Action) -> Sensitive | None:
        """The first rule that finds ``action`` sensitive, or None."""
        rules = self.rules
        looked_up: list[ElementInfo | None] = []  # the focused element, looked up at most once

        def focused_element() -> ElementInfo | None:
            if not looked_up:
                looked_up.append(_inspect(self.env.focused_element))
            return looked_up[0]

        if rules.password_fields and _may_type(action):
            focused = focused_element()
            if focused is not None and focused.opaque:
                return Sensitive("password_field", "it types into an element the env cannot "
                                 "inspect (it may be a password field)")
            if focused is not None and focused.password:
                return Sensitive("password_field", "it types into a password field")
        point = self.env.press_point(action) if self._tap_text is not None else None
        if point is not None:
            element = _inspect(self.env.element_at, *point)
            if element is not None and element.opaque:
                return Sensitive("tap_text", "it presses an element the env cannot inspect "
                                 "(its text is unknown)")
            if element is not None and (said := self._said(element)):
                return Sensitive("tap_text", f"it presses {said[0]}, which {said[1]}")
        elif self._tap_text is not None and _may_press_focused(action, focused_element):
            # Enter or the space bar presses the focused button as a tap would: a model that
            # moves the focus to "Delete" (Tab, the d-pad) and presses Enter must be asked too.
            focused = focused_element()
            if focused is not None and focused.opaque:
                return Sensitive("tap_text", "it presses the focused element from the keyboard, "
                                 "and the env cannot inspect it (its text is unknown)")
            if focused is not None and (said := self._said(focused)):
                return Sensitive("tap_text", f"it presses the focused {said[0]} from the "
                                 f"keyboard, which {said[1]}")
        if action.kind == "open_app" and rules.open_apps:
            listed = self._listed_app(action.app)
            if listed is not None:
                return Sensitive("open_app", f"it opens {self.hide(action.app)!r}, which is "
                                 f"{listed!r}, a listed app")
        if action.kind == "navigate" and rules.allowed_domains is not None:
            url = normalize_url(action.url)
            if not domain_allowed(url, rules.allowed_domains):
                return Sensitive("navigation", f"it opens {self.hide(url)[:200]}, off the "
                                 f"allowed domains ({', '.join(rules.allowed_domains)})")
        return None

    def _said(self, element: ElementInfo) -> tuple[str, str] | None:
        """Where ``tap_text`` finds a pressed element, as the reason says it (its name, and
        what matched), or None: in its text, or in what a read-only field holds, unquoted."""
        name = repr(self.hide(element.text)[:80])
        if found := self._names(element.text):
            return name, f"matches {found.group(0)!r}"
        if element.held and (found := self._names(element.held)):
            return (f"the read-only field {name}",
                    f"holds text (not shown here) that matches {self.hide(found.group(0))!r}")
        return None

    def _names(self, text: str) -> re.Match[str] | None:
        """Where ``tap_text`` finds a pressed element's ``text``, as a reader sees its words: in
        its letters, and in the ASCII ones that its letters of other scripts look like (a rule in
        Cyrillic still matches the Cyrillic word)."""
        assert self._tap_text is not None
        return (self._tap_text.search(comparable(text))
                or self._tap_text.search(comparable(latin_lookalikes(text))))  # "В" before "в"

    def _listed_app(self, app: str) -> str | None:
        """The entry of ``open_apps`` that ``open_app(app)`` would open, or None.

        The env says what it would open (``Env.resolve_app``: android resolves a package's last
        segment the way its ``open_app`` does); an env that cannot tell, or an app opened by its
        label, is compared by name (``_same_app``)."""
        target = self.env.resolve_app(app)
        names = [app] if target is None else [n for n in (target.package, target.label) if n]
        return next((entry for entry in self.rules.open_apps
                     if any(_same_app(name, entry) for name in names or [app])), None)


def _may_type(action: Action) -> bool:
    """Whether ``action`` may put text into the focused field: ``type``, or a key other than the
    editing and moving keys (a character, ctrl+v, a key code the env reads itself)."""
    if action.kind == "type":
        return True
    names = [action.key] if action.kind == "key" else action.keys if action.kind == "hotkey" else []
    for name in names:
        try:
            if keys.canonical(name) not in MOVING_KEYS:
                return True
        except ValueError:  # a name only the env knows (adb's KEYCODE_A): it may type
            return True
    return False


def _may_press_focused(action: Action, focused: Callable[[], ElementInfo | None]) -> bool:
    """Whether ``action`` may press the focused element (``focused()``) from the keyboard, as a
    tap on it would: the phone's ``enter``, a ``type`` whose text breaks a line (each line break
    is an Enter) or, where the focus is on no text field, holds a space (the space bar), Enter or
    the space bar alone or in a hotkey, and a key name only the env knows (adb's
    ``KEYCODE_DPAD_CENTER`` or ``23`` presses the focused view)."""
    if action.kind == "enter":
        return True
    if action.kind == "type":
        if "\n" in action.text or "\r" in action.text:
            return True
        return " " in action.text and (element := focused()) is not None and not element.field
    names = [action.key] if action.kind == "key" else action.keys if action.kind == "hotkey" else []
    for name in names:
        try:
            if keys.canonical(name) in PRESSING_KEYS:
                return True
        except ValueError:  # a name only the env knows: it may press
            return True
    return False


def _inspect(look: Callable[..., Any], *args: Any) -> Any:
    """The env's answer about an element, or an element it could not inspect where looking
    failed (a UI dump that a moving screen made fail): the rules then treat it as unknown. An
    env that is gone (``EnvGone``) ends the run as the action itself would have: the step is
    no refusal by the gate."""
    try:
        return look(*args)
    except EnvGone:
        raise
    except EnvError:
        return ElementInfo("", opaque=True)


def describe(action: Action) -> str:
    fields = ", ".join(f"{k}={v!r}" for k, v in action.model_dump().items() if k != "kind")
    return f"{action.kind}({fields})"


_PACKAGE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")


def _app_keys(name: str) -> set[str]:
    """What a name of an app comes to when case and punctuation are ignored: the name itself
    and, for a package name, its last segment (``com.example.bank``: ``bank``), which android's
    ``open_app`` also opens it by."""
    name = name.strip()
    keys = {_squash(name)}
    if _PACKAGE.fullmatch(name):
        keys.add(_squash(name.rsplit(".", 1)[1]))
    return keys - {""}


def _squash(name: str) -> str:
    return "".join(c for c in name.casefold() if c.isalnum())


def _same_app(name: str, entry: str) -> bool:
    """Whether ``name`` (what an ``open_app`` opens) may be the listed ``entry``. Two package
    names must be the same package; otherwise a label or a package's last segment counts, with
    case and punctuation ignored (a listed ``com.example.bank`` matches ``bank``, ``BANK`` and
    ``Bank!``, a listed ``Bank`` matches ``com.example.bank``)."""
    name, entry = name.strip(), entry.strip()
    if _PACKAGE.fullmatch(name) and _PACKAGE.fullmatch(entry):
        return name.casefold() == entry.casefold()
    return bool(_app_keys(name) & _app_keys(entry))
