"""One benchmark episode as a job, and its result as one JSON line.

A job names everything its episode needs (task, seed, model, dialect, budget), so it can run in any
process or on any machine; the result carries the task's params and goal as drawn there, the
score read from the env, and a runtime error apart from the task's outcome.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from core.results import Score

#: success: the task's check passed; failure: it did not (or the agent gave up); error: the
#: runtime failed (the env crashed, the policy broke), so the episode says nothing about the task.
Outcome = Literal["success", "failure", "error"]
PHASES = ("observe", "prompt", "model", "parse", "act")


class EpisodeJob(BaseModel):
    model_config = ConfigDict(frozen=True)

    suite: str
    task: str  # a registry name, "phone/book-flight"
    seed: int
    model: str  # as --model takes it: PATH, scripted, replay:FILE
    dialect: str | None = None
    max_steps: int | None = None  # None: the task's own step budget
    device: str | None = "virtual"  # android: each job starts its own virtual phone
    max_new_tokens: int = 256
    temperature: float = 0.0
    max_pixels: int | None = None
    dtype: str | None = None
    compile: bool = False

    @property
    def key(self) -> str:
        """What identifies the episode within a run (resume skips the keys already written)."""
        return f"{self.task}@{self.seed}"


#: A count, a time: never negative, never NaN or infinite (no run writes one).
Amount = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class EpisodeResult(BaseModel):
    key: str
    suite: str
    task: str
    seed: int = Field(ge=0)
    tags: list[str] = Field(default_factory=list)
    params: dict = Field(default_factory=dict)
    goal: str = ""
    model: str
    dialect: str | None = None
    outcome: Outcome
    score: Score | None = None  # None when the check could not run (a runtime error)
    status: str  # how the episode ended: success, failure, answered, max_steps, timeout, limit, error
    reason: str = ""
    error: str | None = None  # the runtime failure, when outcome is "error"
    answer: str | None = None
    steps: int = Field(0, ge=0)
    #: Summed over steps; None when nothing counted them.
    prompt_tokens: int | None = Field(None, ge=0)
    generated_tokens: int | None = Field(None, ge=0)
    #: Milliseconds per step for each phase (observe, prompt, model, parse, act).
    timings: dict[str, list[Amount]] = Field(default_factory=dict)
    #: The whole episode, env start-up and shutdown included; None where the process running
    #: it died, so nobody measured it.
    wall_s: Amount | None = None
    trajectory: str | None = None  # the trajectory directory, relative to the run's --out

    @model_validator(mode="after")
    def _key_is_the_episode(self) -> "EpisodeResult":
        # Resume and merge go by the key: one naming another episode would stand in for it.
        if self.key != f"{self.task}@{self.seed}":
            raise ValueError(f"its key {self.key!r} is not its task@seed, "
                             f"{self.task}@{self.seed}")
        return self


def job_fields(job: EpisodeJob) -> dict:
    """What a result line says of its job."""
    return dict(key=job.key, suite=job.suite, task=job.task, seed=job.seed, model=job.model,
                dialect=job.dialect)


def error_result(job: EpisodeJob, error: str, **known) -> EpisodeResult:
    """The line of an episode the runtime failed around (``known``: what it learned first)."""
    return EpisodeResult(**job_fields(job), outcome="error", status="error", error=error,
                         **known)
