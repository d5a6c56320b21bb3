"""A run's settings, as the CLI (or a script) gives them, and the error for settings that cannot
make a run."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.geometry import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS

ENV_KINDS = ("android", "desktop", "browser")
MODEL_HELP = "PATH (a local Qwen2-VL checkpoint), scripted, replay:FILE or human"


class RunError(ValueError):
    """Settings that cannot make a run; the message says what to change."""


@dataclass
class RunSpec:
    goal: str | None
    model: str
    env: str = "android"
    device: str | None = None  # an adb serial, "virtual", or None for the only device
    task: str | None = None
    seed: int = 0  # the task's params are drawn from it
    params: dict[str, Any] | None = None  # the task's params as given (a replay's), not drawn
    dialect: str | None = None  # None: qwen2vl, or a replayed trajectory's own dialect
    max_steps: int = 30
    max_time_s: float | None = None
    max_parse_errors: int = 2
    history_images: int = 2
    max_prompt_tokens: int | None = None  # drop old screenshots until the prompt fits
    out: Path = Path("runs")
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    url: str = "about:blank"  # the browser env's start page
    processor: str | None = None  # count prompt tokens with this checkpoint's processor
    max_new_tokens: int = 256
    temperature: float = 0.0
