"""Frames cut short on the way from the phone: a still frame is an EnvError at observe, not an
observation whose pixels fail later wherever they are first read; a raw screencap frame is taken
as PNG that once, and raw frames (no PNG to encode and decode) go on after it."""

from __future__ import annotations

import io
import json
import struct
from typing import Callable

import pytest
from PIL import Image

from envs.android import AndroidEnv
from envs.base import EnvError
from tests.adb_fakes import FakeAdbDevice, fake_android_env


def _frame(png: bytes) -> bytes:
    header = {"version": "v1", "still": True, "package": "launcher", "activity": "Main"}
    return json.dumps(header).encode() + b"\n" + png


def _png() -> bytes:
    image = Image.effect_noise((1080, 2400), 64).convert("RGB")  # an RGB PNG, as chromium's
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_still_frame_cut_short_fails_observe_with_a_clear_error():
    env = fake_android_env(FakeAdbDevice())
    env.still_frames = True
    png = _png()
    env.exec_out = lambda command: _frame(png)
    assert env.observe().image.getpixel((5, 5)) == Image.open(io.BytesIO(png)).getpixel((5, 5))
    env._last_frame = (None, None, b"")
    env.exec_out = lambda command: _frame(png[: len(png) // 2])
    with pytest.raises(EnvError, match="gave no frame"):
        env.observe()


def _raw(image: Image.Image) -> bytes:
    return struct.pack("<4I", image.width, image.height, 1, 1) + image.convert("RGBA").tobytes()


def _png_of(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _capturing(raw: bool, answer: Callable[[str], bytes]) -> tuple[AndroidEnv, list[str]]:
    """An env whose real capture reads the frames ``answer`` gives each exec: command; and the
    commands it sent."""
    env = fake_android_env(FakeAdbDevice())
    del env.capture  # the real capture, not the fake's blank screen
    env._raw_screencap = raw
    asked: list[str] = []

    def exec_out(command: str) -> bytes:
        asked.append(command)
        return answer(command)

    env.exec_out = exec_out
    return env, asked


def test_a_raw_frame_cut_short_is_taken_as_png_once():
    first, second = (Image.effect_noise((60, 40), 64 + n).convert("RGB") for n in range(2))
    raw = [_raw(first)[:-100], _raw(second)]
    png = _png_of(first)
    env, asked = _capturing(True, lambda c: png if c == "screencap -p" else raw.pop(0))
    assert env.capture().tobytes() == first.tobytes()
    assert env.capture().tobytes() == second.tobytes()
    assert asked == ["screencap", "screencap -p", "screencap"]


def test_a_pixel_format_not_converted_switches_to_png_for_good():
    image = Image.effect_noise((60, 40), 64).convert("RGB")
    png = _png_of(image)
    rgb565 = struct.pack("<4I", 60, 40, 4, 1) + bytes(60 * 40 * 2)
    env, asked = _capturing(True, lambda c: png if c == "screencap -p" else rgb565)
    for _ in range(2):
        assert env.capture().tobytes() == image.tobytes()
    assert asked == ["screencap", "screencap -p", "screencap -p"]


# What screencap writes to stderr before the frame on a phone with two displays (Android 14+:
# a foldable's cover screen); exec: sends it in the same stream. Phones word the advice after
# the first line differently, or leave it out.
WARNINGS = [
    b"[Warning] Multiple displays were found, but no display id was specified! Defaulting to "
    b"the first display found, however this default is not guaranteed to be consistent across "
    b"captures. A display id should be specified.\nA display ID can be specified with the "
    b"[-d display-id] option.\nSee \"dumpsys SurfaceFlinger --display-id\" for valid display "
    b"IDs.\n",
    b"[Warning] Multiple displays were found, but no display id was specified!\n",
]


@pytest.mark.parametrize("warning", WARNINGS)
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "png"])
def test_a_frame_after_screencaps_warning_of_two_displays_is_read(warning, raw):
    image = Image.effect_noise((60, 40), 64).convert("RGB")
    frames = {"screencap": warning + _raw(image), "screencap -p": warning + _png_of(image)}
    env, asked = _capturing(raw, frames.__getitem__)
    for _ in range(2):
        assert env.capture().tobytes() == image.tobytes()
    assert asked == ["screencap" if raw else "screencap -p"] * 2  # raw frames go on being raw
