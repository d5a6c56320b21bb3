"""Where a bench finds its tasks: the task registry by default (tasks/registry.py's contract)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from tasks.base import Task


class Catalog(Protocol):
    def find(self, pattern: str | None, suite: str) -> list[type["Task"]]:
        """The task classes of ``suite`` whose names match the glob ``pattern``, sorted by name."""
        ...

    def get(self, name: str, seed: int) -> "Task":
        """The task ``name`` with its params drawn from ``seed``."""
        ...

    def suites(self) -> list[str]:
        """The suites that hold tasks, sorted."""
        ...


class RegistryCatalog:
    """The bundled tasks (a plain class, so a job runner holding it pickles to any worker)."""

    def find(self, pattern: str | None, suite: str) -> list[type["Task"]]:
        from tasks.registry import find_tasks

        return find_tasks(pattern, suite=suite)

    def get(self, name: str, seed: int) -> "Task":
        from tasks.registry import get_task

        return get_task(name, seed=seed)

    def suites(self) -> list[str]:
        from tasks.registry import suites

        return suites()
