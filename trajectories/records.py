"""What a trajectory directory holds (DESIGN.md §2): the records and the file layout.

    meta.json       the episode: goal, task, env, model, dialect, start time, final status
    steps.jsonl     one line per finished step (StepRecord)
    images/step_000.png ...
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from core.results import ActionResult, Score

META_FILE = "meta.json"
STEPS_FILE = "steps.jsonl"
IMAGES_DIR = "images"

#: ``limit``: a resource limit other than steps or time stopped the run (the reason says which).
Status = Literal[
    "running", "success", "failure", "answered", "max_steps", "timeout", "limit", "interrupted",
    "error",
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
    #: The text is an earlier step's reply, nothing added (``actions.dialects.base.TextPart``).
    #: Recordings made before this field have it false throughout; export then searches.
    reply: bool = False


class RecordedMessage(BaseModel):
    role: Literal["system", "user", "assistant"]
    content: list[RecordedPart]


class RecordedPrompt(BaseModel):
    """The exact prompt of a step, enough for export to rebuild it token for token."""

    messages: list[RecordedMessage]
    continue_final_message: bool = False


class GateRecord(BaseModel):
    """The safety gate's decision on a step's action that a rule found sensitive."""

    decision: Literal["allowed", "denied"]
    rule: str  # password_field, tap_text, open_app, navigation
    reason: str
    by: str  # user, --yes, --deny-sensitive, no terminal


class StepRecord(BaseModel):
    model_config = ConfigDict(extra="allow")

    step: int
    image: str  # screenshot file, relative to the trajectory directory
    screen: tuple[int, int]  # width, height of that screenshot
    prompt_tokens: int | None = None  # None when the policy has no processor to count with
    prompt: RecordedPrompt
    response: str  # the policy's raw text
    #: A secret's value in ``response`` was replaced by its placeholder: the recorded reply is
    #: not the model's text (export does not train it; replay with the secret restores it).
    response_masked: bool = False
    thought: str = ""
    action: dict[str, Any] | None = None  # the parsed action's JSON; None on a parse error
    parse_error: str | None = None
    result: ActionResult | None = None  # None when nothing was executed
    gate: GateRecord | None = None  # None when no safety rule applied to the action
    timings: Timings = Field(default_factory=Timings)
    usage: dict[str, Any] = Field(default_factory=dict)  # what the policy reports (token counts)
    extras: dict[str, Any] = Field(default_factory=dict)  # the observation's extras


class Meta(BaseModel):
    model_config = ConfigDict(extra="allow")

    goal: str
    task: str | None = None
    #: A task's seed and params, so a replay sets the task up as the run did.
    seed: int | None = None
    params: dict[str, Any] | None = None
    env: str
    device: str | None = None
    #: The env's settings that a replay starts from (runtime.episode.env_meta): "new" for a
    #: private Xvfb; the browser's start url, viewport (CSS pixels), scale and allowed domains.
    display: str | None = None
    url: str | None = None
    viewport: list[int] | None = None
    scale: float | None = None
    allowed_domains: list[str] | None = None
    model: str
    dialect: str
    action_kinds: list[str]
    min_pixels: int
    max_pixels: int
    #: The loop's settings that shape later prompts and when it gives up, so a replay repeats
    #: them (None in recordings made before they were kept).
    max_parse_errors: int | None = None
    history: dict[str, Any] | None = None  # agent.history.HistoryPolicy's fields
    #: The safety gate's rules (agent.safety.GateRules' fields), so a replay asks about, or
    #: refuses, what the run did (None in recordings made before they were kept).
    gate_rules: dict[str, Any] | None = None
    started_at: str  # ISO 8601, UTC
    finished_at: str | None = None
    status: Status = "running"
    reason: str = ""
    steps: int = 0
    check: Score | None = None
