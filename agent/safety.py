"""The safety gate: every parsed action passes through it before the env executes it.

For now the only gate is ``PassThroughGate``, which allows everything. The interface is what a later
issue's rules (blocked apps or domains, confirmation before a purchase, secrets) plug into: a gate
sees the action, the goal and the observation, and either allows the action or blocks it with a
reason that is fed back to the model instead of executing.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

from core.actions import Action


@dataclass(frozen=True)
class GateContext:
    goal: str
    step: int
    screen: tuple[int, int]
    extras: dict[str, Any] = field(default_factory=dict)  # the observation's extras (app, url...)


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str = ""


class SafetyGate(ABC):
    @abstractmethod
    def review(self, action: Action, context: GateContext) -> Verdict:
        """Decide whether ``action`` may run."""


class PassThroughGate(SafetyGate):
    def review(self, action: Action, context: GateContext) -> Verdict:
        return Verdict(allowed=True)
