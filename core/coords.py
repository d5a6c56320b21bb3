"""Coordinate spaces: how a model writes a screen position, and the conversion to pixels.

A space gives each screen axis an *extent* N in model units: 1000 for the relative space of
Qwen2-VL, UI-TARS v1 and OS-Atlas, and the smart-resized width or height for Qwen2.5-VL's pixels.
The rule, the same for every space and axis (screen side S pixels):

- A model value v must be a finite number with ``0 <= v <= N``. Anything else is a
  ``CoordinateError``, never a silent clamp. ``v == N`` is allowed on purpose: models trained on
  labels made with ``round(p / S * N)`` write N for the last pixels of a long side (for example
  pixel 2399 of 2400 gives round(999.58) = 1000).
- The pixel is ``floor(v * S / N + 0.5)`` (round half up), and v near N that would give S lands on
  the last pixel, S - 1.
- From pixels back to model units: ``v = p * N / S``. ``render_int`` writes what the released
  models write: integers, the one of the two nearest whose pixel is closest (N itself only where
  it is closer, for the last pixels of a long side). That lands within one pixel wherever a unit
  spans at most 3 pixels, and within half a unit otherwise; one unit can be 2.4 pixels on a
  2400-pixel side. ``render_length`` writes a distance (a scroll's) the same way.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Literal

from core.geometry import Screen

Axis = Literal["x", "y"]
Number = int | float


class CoordinateError(ValueError):
    """A coordinate the model wrote is not a number inside its space."""


class CoordSpace(ABC):
    name: str
    description: str

    @abstractmethod
    def extent(self, screen: Screen) -> tuple[float, float]:
        """Model units spanning the screen's (width, height)."""

    def _axis(self, axis: Axis, screen: Screen) -> tuple[float, int]:
        n_x, n_y = self.extent(screen)
        return (n_x, screen.width) if axis == "x" else (n_y, screen.height)

    def to_pixel(self, value: Number, axis: Axis, screen: Screen) -> int:
        """One model value on ``axis`` as a screen pixel, or CoordinateError."""
        n, side = self._axis(axis, screen)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CoordinateError(f"{axis}={value!r} is not a number")
        if not _finite(value) or not 0 <= value <= n:
            raise CoordinateError(
                f"{axis}={_show(value)} is outside the screen: {axis} must be between 0 and "
                f"{n:g} ({self.description})"
            )
        return min(math.floor(value * side / n + 0.5), side - 1)

    def to_screen(self, x: Number, y: Number, screen: Screen) -> tuple[int, int]:
        return self.to_pixel(x, "x", screen), self.to_pixel(y, "y", screen)

    def from_screen(self, px: int, py: int, screen: Screen) -> tuple[float, float]:
        n_x, n_y = self.extent(screen)
        return px * n_x / screen.width, py * n_y / screen.height

    def render_int(self, px: int, py: int, screen: Screen) -> tuple[int, int]:
        """Integers a model would write for pixel (px, py), as close to it as they get."""
        vx, vy = self.from_screen(px, py, screen)
        n_x, n_y = self.extent(screen)
        return (_nearest_int(vx, n_x, lambda v: self.to_pixel(v, "x", screen), px),
                _nearest_int(vy, n_y, lambda v: self.to_pixel(v, "y", screen), py))

    def length_to_pixels(self, value: Number, axis: Axis, screen: Screen) -> int:
        """A distance along ``axis`` (such as a scroll amount) in screen pixels, at least 1."""
        n, side = self._axis(axis, screen)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise CoordinateError(f"distance {value!r} is not a number")
        if not _finite(value) or not 0 < value <= 1e9:
            raise CoordinateError(f"distance {_show(value)} must be a positive number, at most 1e9")
        return max(1, math.floor(value * side / n + 0.5))

    def render_length(self, pixels: int, axis: Axis, screen: Screen) -> int:
        """The whole number of units a model would write for a distance of ``pixels`` (at
        least 1), of the two nearest the one whose distance is closest."""
        n, side = self._axis(axis, screen)
        low = max(1, math.floor(pixels * n / side))
        return min((low, low + 1),
                   key=lambda v: abs(self.length_to_pixels(v, axis, screen) - pixels))


def _finite(value: Number) -> bool:
    return isinstance(value, int) or math.isfinite(value)  # ints of any size are exact


def _show(value: Number) -> str:
    text = f"{value:g}" if isinstance(value, float) else str(value)
    return text if len(text) <= 20 else text[:17] + "..."


def _nearest_int(value: float, extent: float, back, target: int) -> int:
    low = min(math.floor(value), math.floor(extent) - 1)
    candidates = [v for v in (low, low + 1) if 0 <= v <= extent]
    return min(candidates, key=lambda v: (abs(back(v) - target), v >= extent, abs(v - value)))


@dataclass(frozen=True)
class ScaledSpace(CoordSpace):
    """Both axes span ``scale`` units whatever the screen size."""

    name: str
    scale: float
    description: str

    def extent(self, screen: Screen) -> tuple[float, float]:
        return self.scale, self.scale


@dataclass(frozen=True)
class ResizedPixelSpace(CoordSpace):
    """Pixels of the image after the processor's smart_resize (Qwen2.5-VL)."""

    name: str = "resized_pixels"
    description: str = "pixels of the resized screenshot"

    def extent(self, screen: Screen) -> tuple[float, float]:
        h, w = screen.resized_size()
        return w, h


RELATIVE_1000 = ScaledSpace(
    "relative_1000", 1000, "relative coordinates from 0 to 1000; (0,0) is the top-left corner"
)
RESIZED_PIXELS = ResizedPixelSpace()
