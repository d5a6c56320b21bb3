"""A run's settings, as the CLI (or a script) gives them, and the error for settings that cannot
make a run."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.history import HistoryPolicy
from core.geometry import parse_size

ENV_KINDS = ("android", "desktop", "browser")
MODEL_HELP = ("PATH (a local Qwen2-VL checkpoint), http(s)://HOST:PORT/v1 (an OpenAI-compatible "
              "endpoint, with --served-model), scripted, replay:FILE or human")
API_KEY_ENV = "VLAGENT_API_KEY"  # the endpoint's key is read from here, never from the command line


def is_endpoint(model: str) -> bool:
    return model.startswith(("http://", "https://"))


class RunError(ValueError):
    """Settings that cannot make a run; the message says what to change."""


def make_out_folder(out: Path, holds: str) -> None:
    """Make the folder ``--out`` names (and its parents), or say in a RunError why it cannot be:
    ``holds`` says what a run writes there."""
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file; {holds}: name a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a file where a parent folder should be, no permission
        raise RunError(f"--out {out} cannot be made: {exc.strerror or exc}") from None


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
    max_steps: int | None = None  # None: the task's own budget, else AgentConfig's (30)
    max_time_s: float | None = None
    max_parse_errors: int = 2
    history_images: int = HistoryPolicy.images
    history_block: int = HistoryPolicy.block  # past screenshots turn into text this many at a time
    max_prompt_tokens: int | None = None  # drop old screenshots until the prompt fits
    out: Path = Path("runs")
    # The screenshots' resize budget; None: the checkpoint's (runtime.build.resize_budget)
    min_pixels: int | None = None
    max_pixels: int | None = None
    url: str = "about:blank"  # the browser env's start page
    viewport: tuple[int, int] = (1280, 800)  # the browser's page size in CSS pixels
    scale: float = 1.0  # the browser's device scale factor (screenshots are viewport * scale)
    allowed_domains: tuple[str, ...] = ()  # the browser may only load these (and subdomains)
    adb_port: int | None = None  # None: $ANDROID_ADB_SERVER_PORT, else 5037
    display: str | None = None  # desktop: an X display, "new" for a private Xvfb, None: $DISPLAY
    processor: str | None = None  # count prompt tokens with this checkpoint's processor
    max_new_tokens: int = 256
    temperature: float = 0.0
    repetition_penalty: float | None = None  # None: the model's (generation_config.json's)
    compile: bool = False  # a local model: torch.compile its decode step
    dtype: str | None = None  # a local model's: bf16, fp16, fp32; None: bf16 on cuda, else fp32
    served_model: str | None = None  # the model name an OpenAI-compatible endpoint serves
    #: An endpoint's key; never printed (repr=False).
    api_key: str | None = field(default_factory=lambda: os.environ.get(API_KEY_ENV) or None,
                                repr=False)
    max_screen_pixels: int | None = None  # a larger screenshot ends the run
    #: The safety gate's answer to a sensitive action: ask (at the terminal), yes or deny.
    #: None: yes for --model scripted (a task's own solution, not model output), else ask.
    confirm: str | None = None
    #: A JSON or TOML file of GateRules, or their fields (a replay's, as recorded); None: the
    #: defaults.
    gate_rules: Path | dict[str, Any] | None = None
    #: name -> value; a goal's <secret:NAME> is typed as the value. Never printed (repr=False).
    secrets: dict[str, str] = field(default_factory=dict, repr=False)


def parse_viewport(text: str) -> tuple[int, int]:
    """``"1280x800"`` as (1280, 800)."""
    size = parse_size(text)
    if size is None:
        raise RunError(f"--viewport {text!r} is not WIDTHxHEIGHT in pixels, e.g. 1280x800")
    return size
