"""The agent: loop, policies, trajectory recording and export, safety gate.

``from agent import Agent`` is the entry point; it loads on first use so that importing a CLI
command module stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from agent.loop import Agent, AgentConfig, EpisodeResult

__all__ = ["Agent", "AgentConfig", "EpisodeResult"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        import agent.loop

        return getattr(agent.loop, name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
