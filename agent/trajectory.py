"""What a trajectory directory holds, and how to read one back (DESIGN.md §2).

    meta.json       the episode: goal, task, env, model, dialect, start time, final status
    steps.jsonl     one line per finished step (StepRecord)
    images/step_000.png ...

A run killed at any moment leaves a readable prefix: ``load`` ignores a final line that was cut off
mid-write, and every line it keeps refers to an image that was written before it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

META_FILE = "meta.json"
STEPS_FILE = "steps.jsonl"
IMAGES_DIR = "images"

Status = Literal[
    "running", "success", "failure", "answered", "max_steps", "timeout", "interrupted", "error"
]


def image_name(step: int) -> str:
    """The screenshot file of ``step``, relative to the trajectory directory."""
    return f"{IMAGES_DIR}/step_{step:03d}.png"


class Timings(BaseModel):
    """Milliseconds spent in each phase of a step."""

    observe_ms: float = 0.0
    prompt_ms: float = 0.0  # building the prompt and counting its tokens
    model_ms: float = 0.0
    parse_ms: float = 0.0
    act_ms: float = 0.0


class RecordedPart(BaseModel):
    """A prompt part: text, or an image named by its file in the trajectory directory."""

    type: Literal["text", "image"]
    text: str | None = None
    image: str | None = None


class RecordedMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: list[RecordedPart]


class RecordedPrompt(BaseModel):
    """The exact prompt of a step, enough for export to rebuild it token for token."""

    messages: list[RecordedMessage]
    continue_final_message: bool = False


class ActionOutcome(BaseModel):
    ok: bool
    message: str = ""


class StepRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    step: int
    image: str  # screenshot file, relative to the trajectory directory
    screen: tuple[int, int]  # width, height of that screenshot
    prompt_tokens: int | None = None  # None when the policy has no processor to count with
    prompt: RecordedPrompt
    response: str  # the policy's raw text
    thought: str = ""
    action: dict[str, Any] | None = None  # the parsed action's JSON; None on a parse error
    parse_error: str | None = None
    result: ActionOutcome | None = None  # None when nothing was executed
    timings: Timings = Field(default_factory=Timings)
    usage: dict[str, Any] = Field(default_factory=dict)  # what the policy reports (token counts)
    extras: dict[str, Any] = Field(default_factory=dict)  # the observation's extras


class CheckRecord(BaseModel):
    success: bool
    detail: str = ""


class Meta(BaseModel):
    model_config = ConfigDict(extra="allow")

    goal: str
    task: str | None = None
    env: str
    device: str | None = None
    model: str
    dialect: str
    action_kinds: list[str]
    min_pixels: int
    max_pixels: int
    started_at: str  # ISO 8601, UTC
    finished_at: str | None = None
    status: Status = "running"
    reason: str = ""
    steps: int = 0
    check: CheckRecord | None = None


class TrajectoryError(ValueError):
    """A directory that is not a readable trajectory."""


class Trajectory(BaseModel):
    directory: Path
    meta: Meta
    steps: list[StepRecord]

    def path(self, relative: str) -> Path:
        return self.directory / relative


def load(directory: str | Path) -> Trajectory:
    """Read a trajectory directory, ignoring a last line that a kill cut short."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not meta_path.is_file():
        raise TrajectoryError(f"{directory} is not a trajectory directory: it has no {META_FILE}")
    try:
        meta = Meta.model_validate_json(meta_path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise TrajectoryError(f"{meta_path} is not valid: {exc}") from None
    steps: list[StepRecord] = []
    steps_path = directory / STEPS_FILE
    text = steps_path.read_text(encoding="utf-8") if steps_path.exists() else ""
    lines = text.split("\n")
    # Every complete line ends with a newline, so the last element is "" or a torn line.
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            steps.append(StepRecord.model_validate(json.loads(line)))
        except ValueError as exc:
            raise TrajectoryError(f"{steps_path}:{number} is not a valid step: {exc}") from None
    return Trajectory(directory=directory, meta=meta, steps=steps)
