"""A run's settings, as the CLI (or a script) gives them, and the error for settings that cannot
make a run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

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
    max_screen_pixels: int | None = None  # a larger screenshot ends the run
    #: The safety gate's answer to a sensitive action: ask (at the terminal), yes or deny.
    #: None: yes for --model scripted (a task's own solution, not model output), else ask.
    confirm: str | None = None
    gate_rules: Path | None = None  # a JSON or TOML file of GateRules; None: the defaults
    #: name -> value; a goal's <secret:NAME> is typed as the value. Never printed (repr=False).
    secrets: dict[str, str] = field(default_factory=dict, repr=False)
