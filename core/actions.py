"""The typed actions the runtime can perform.

Every action is a pydantic model with a literal ``kind``; ``Action`` is their discriminated union.
Coordinates are always absolute pixels of the screenshot the model saw. Dialects convert from
whatever convention the model wrote before they build one of these.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationInfo,
    model_validator,
)

Direction = Literal["up", "down", "left", "right"]


def _not_a_bool(value: Any) -> Any:
    # pydantic reads true as 1 in an int field: a click at x=true landed at x=1.
    if isinstance(value, bool):
        raise ValueError("a number is needed, not true or false")
    return value


#: A number field: an int or float as pydantic reads one, but never a bool.
Int = Annotated[int, BeforeValidator(_not_a_bool)]
Float = Annotated[float, BeforeValidator(_not_a_bool)]

#: White-space characters that name a key of their own. An action holds the name instead: every
#: dialect writes a name and reads it back, where a bare " " in a list of keys reads as no key.
WHITE_SPACE_KEYS = {" ": "space", "\n": "enter", "\r": "enter", "\t": "tab"}


def _named(key: Any) -> Any:
    return WHITE_SPACE_KEYS.get(key, key) if isinstance(key, str) else key


#: A key as a model wrote it (``enter``, ``Control``, ``a``); a white-space character as its name.
KeyName = Annotated[str, BeforeValidator(_named), Field(min_length=1)]


class _Base(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def points(self) -> list[tuple[int, int]]:
        """The screen points this action touches, for validation and drawing."""
        return []

    @model_validator(mode="after")
    def _on_screen(self, info: ValidationInfo) -> "_Base":
        # Validation with context={"screen": (w, h)} rejects points outside the screenshot.
        screen = (info.context or {}).get("screen") if info is not None else None
        if screen is not None:
            check_on_screen(self, screen)
        return self


class _Point(_Base):
    x: Int
    y: Int

    def points(self) -> list[tuple[int, int]]:
        return [(self.x, self.y)]


class _Segment(_Base):
    x: Int
    y: Int
    x2: Int
    y2: Int

    def points(self) -> list[tuple[int, int]]:
        return [(self.x, self.y), (self.x2, self.y2)]


# Phone
class Tap(_Point):
    kind: Literal["tap"] = "tap"


class LongPress(_Point):
    kind: Literal["long_press"] = "long_press"
    duration_ms: Int = Field(1000, ge=1, le=60_000)


class Swipe(_Segment):
    kind: Literal["swipe"] = "swipe"
    duration_ms: Int = Field(300, ge=1, le=60_000)


#: The most characters one ``type`` action carries: a phone types a few dozen a second, so a
#: model's runaway text would keep the device busy for minutes; longer is a parse error.
MAX_TYPED_CHARS = 2000


class Type(_Base):
    kind: Literal["type"] = "type"
    text: str = Field(max_length=MAX_TYPED_CHARS)


class Key(_Base):
    """A single named key, such as ``enter``, ``backspace``, ``volume_up`` or ``a``."""

    kind: Literal["key"] = "key"
    key: KeyName


class Home(_Base):
    kind: Literal["home"] = "home"


class Back(_Base):
    kind: Literal["back"] = "back"


class Enter(_Base):
    kind: Literal["enter"] = "enter"


class OpenApp(_Base):
    """Open an app by package name or by its label on the home screen."""

    kind: Literal["open_app"] = "open_app"
    app: str = Field(min_length=1)


# Desktop and browser
class Click(_Point):
    kind: Literal["click"] = "click"


class DoubleClick(_Point):
    kind: Literal["double_click"] = "double_click"


class RightClick(_Point):
    kind: Literal["right_click"] = "right_click"


class Move(_Point):
    kind: Literal["move"] = "move"


class Drag(_Segment):
    kind: Literal["drag"] = "drag"


class Scroll(_Base):
    """Scroll the content under (x, y), or the screen's centre when no point is given.

    ``direction`` is where the view moves: ``down`` reveals what is below. ``amount`` is in
    screenshot pixels; ``None`` goes about half the screen along ``direction`` (half its width
    for left and right, half its height for up and down).
    """

    kind: Literal["scroll"] = "scroll"
    direction: Direction
    x: Int | None = None
    y: Int | None = None
    amount: Int | None = Field(None, ge=1)

    @model_validator(mode="after")
    def _both_or_neither(self) -> "Scroll":
        if (self.x is None) != (self.y is None):
            raise ValueError("scroll needs both x and y, or neither")
        return self

    def points(self) -> list[tuple[int, int]]:
        return [] if self.x is None or self.y is None else [(self.x, self.y)]


class Hotkey(_Base):
    """Keys pressed together, such as ``["ctrl", "c"]``."""

    kind: Literal["hotkey"] = "hotkey"
    keys: list[KeyName] = Field(min_length=1)


class Navigate(_Base):
    kind: Literal["navigate"] = "navigate"
    url: str = Field(min_length=1)


# Everywhere
class Wait(_Base):
    kind: Literal["wait"] = "wait"
    seconds: Float = Field(1.0, gt=0, le=60)


class Answer(_Base):
    kind: Literal["answer"] = "answer"
    text: str


class Terminate(_Base):
    kind: Literal["terminate"] = "terminate"
    status: Literal["success", "failure"]
    message: str = ""


#: Every action type, in one place: the union and the kind table are both built from it.
ACTION_TYPES: tuple[type[_Base], ...] = (
    Tap, LongPress, Swipe, Type, Key, Home, Back, Enter, OpenApp,
    Click, DoubleClick, RightClick, Move, Drag, Scroll, Hotkey, Navigate,
    Wait, Answer, Terminate,
)

Action = Annotated[Union[ACTION_TYPES], Field(discriminator="kind")]  # type: ignore[valid-type]

ACTION_ADAPTER: TypeAdapter[Action] = TypeAdapter(Action)

#: kind -> action class.
ACTION_CLASSES: dict[str, type[_Base]] = {
    cls.model_fields["kind"].default: cls for cls in ACTION_TYPES
}


def check_on_screen(action: _Base, screen: tuple[int, int]) -> None:
    """Raise ValueError when any point of ``action`` lies outside a ``screen`` of (w, h) pixels."""
    width, height = screen
    for x, y in action.points():
        if not (0 <= x < width and 0 <= y < height):
            raise ValueError(
                f"point ({x}, {y}) is outside the {width}x{height} screen"
            )


def parse_action(data: dict[str, Any] | str, screen: tuple[int, int] | None = None) -> Action:
    """Build an Action from a dict or JSON text; with ``screen``, points must lie on it."""
    context = {"screen": screen} if screen is not None else None
    if isinstance(data, str):
        return ACTION_ADAPTER.validate_json(data, context=context)
    return ACTION_ADAPTER.validate_python(data, context=context)


def action_json_schema() -> dict[str, Any]:
    """The JSON schema of the Action union, for docs and for tool definitions."""
    return ACTION_ADAPTER.json_schema()
