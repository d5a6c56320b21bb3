"""A still frame cut short (the phone went away mid-transfer) is an EnvError at observe, not an
observation whose pixels fail later wherever they are first read."""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

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
