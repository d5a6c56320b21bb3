"""Small helpers for tests that check real screens: find a colour, wait for a condition; and seeded
noise pictures to send a model."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
from PIL import Image

T = TypeVar("T")


@dataclass(frozen=True)
class Box:
    left: int
    top: int
    right: int  # inclusive
    bottom: int  # inclusive

    @property
    def centre(self) -> tuple[int, int]:
        return (self.left + self.right) // 2, (self.top + self.bottom) // 2

    @property
    def size(self) -> tuple[int, int]:
        return self.right - self.left + 1, self.bottom - self.top + 1


def noise_image(width: int, height: int, seed: int) -> Image.Image:
    """A ``width`` x ``height`` RGB picture of uniform random bytes from ``default_rng(seed)``."""
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def find_color(image: Image.Image, rgb: tuple[int, int, int]) -> Box:
    """The bounding box of the pixels of exactly ``rgb``; AssertionError when there are none."""
    mask = np.all(np.asarray(image.convert("RGB")) == rgb, axis=-1)
    ys, xs = np.nonzero(mask)
    assert xs.size, f"no pixel of colour {rgb} on the {image.size[0]}x{image.size[1]} screen"
    return Box(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max()))


def wait_until(
    probe: Callable[[], T], timeout_s: float = 10.0, interval_s: float = 0.02,
    what: str = "condition",
) -> T:
    """Poll ``probe`` until it returns something truthy; return that, or fail after the timeout."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout_s:g}s (last value {value!r})")
        time.sleep(interval_s)


def wait_for_value(probe: Callable[[], T], expected: T, timeout_s: float = 5.0) -> None:
    """Poll ``probe`` until it returns ``expected``; the failure shows the last value seen."""
    last: list[T] = []

    def matches() -> bool:
        last[:] = [probe()]
        return last[0] == expected

    try:
        wait_until(matches, timeout_s)
    except AssertionError:
        raise AssertionError(f"expected {expected!r}, last saw {last[0]!r}") from None
