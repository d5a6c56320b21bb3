"""What an action did, and what a task's check concluded: records every layer passes along."""

from __future__ import annotations

from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator


class ActionResult(BaseModel):
    """The outcome of executing one action: ok or not, a message for the model, and its cost."""

    model_config = ConfigDict(frozen=True)

    ok: bool
    message: str = ""
    elapsed_ms: float = 0.0

    @property
    def error(self) -> str | None:
        return None if self.ok else self.message


class Score(BaseModel):
    """A task's verdict, read from the environment's state (never from the agent's claim).

    ``reward`` is in [0, 1]; partial credit means part of the task was done. Without one it is
    1 for a success and 0 otherwise.
    """

    model_config = ConfigDict(frozen=True)

    success: bool
    reward: float = Field(ge=0.0, le=1.0)
    # "detail" is what trajectories recorded before the field was called reason.
    reason: str = Field("", validation_alias=AliasChoices("reason", "detail"))

    @model_validator(mode="before")
    @classmethod
    def _default_reward(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("reward") is None:
            return {**data, "reward": 1.0 if data.get("success") else 0.0}
        return data
