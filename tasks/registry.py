"""The bundled tasks by name, glob, suite or tag; it fills itself.

Every concrete ``Task`` subclass with a ``name``, defined in a module of the ``tasks`` package, is
registered: adding a task means adding a class, nothing else.
"""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
import pkgutil
import re
from functools import cache
from typing import Any, Iterable

import tasks
from tasks.base import Task

_STOPWORDS = frozenset(
    "a an and the to for of on in at from with it my me please that this is be".split()
)


class UnknownTask(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


@cache
def _registry() -> dict[str, type[Task]]:
    for module in pkgutil.walk_packages(tasks.__path__, prefix="tasks."):
        importlib.import_module(module.name)
    found: dict[str, type[Task]] = {}
    pending = list(Task.__subclasses__())
    while pending:
        cls = pending.pop()
        pending.extend(cls.__subclasses__())
        if not cls.__module__.startswith("tasks.") or inspect.isabstract(cls) \
                or "name" not in vars(cls):
            continue
        if cls.name in found and found[cls.name] is not cls:
            raise RuntimeError(f"two tasks are called {cls.name!r}: {found[cls.name].__module__}."
                               f"{found[cls.name].__qualname__} and {cls.__module__}."
                               f"{cls.__qualname__}")
        found[cls.name] = cls
    return dict(sorted(found.items()))


def task_names() -> list[str]:
    return list(_registry())


def suites() -> list[str]:
    return sorted({name.split("/", 1)[0] for name in _registry()})


def get_task(name: str, seed: int = 0, params: dict[str, Any] | None = None) -> Task:
    """The task ``name`` with its params drawn from ``seed`` (or given)."""
    try:
        cls = _registry()[name]
    except KeyError:
        close = difflib.get_close_matches(name, task_names(), n=3)
        raise UnknownTask(
            f"unknown task {name!r}; " + (f"did you mean {' or '.join(close)}? " if close else "")
            + f"the tasks are: {', '.join(task_names())}") from None
    return cls(seed=seed, params=params)


def find_tasks(
    pattern: str | None = None, *, suite: str | None = None, tags: Iterable[str] = ()
) -> list[type[Task]]:
    """The task classes matching an exact name or an fnmatch glob ("phone/*flight*"), a suite,
    and every one of ``tags``; sorted by name."""
    wanted = frozenset(tags)
    return [
        cls for name, cls in _registry().items()
        if (pattern is None or fnmatch.fnmatchcase(name, pattern))
        and (suite is None or name.split("/", 1)[0] == suite)
        and wanted <= cls.tags
    ]


def _words(text: str) -> set[str]:
    words = {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOPWORDS}
    # Plural and singular meet: "flights" matches "flight".
    return words | {w[:-1] for w in words if len(w) > 3 and w.endswith("s")}


def match_task(goal: str, env: str | None = None) -> Task | None:
    """The bundled task (seed 0) whose goal the free text ``goal`` means, or None.

    A task matches when most of the goal's words appear in its goal template, name, tags or
    keywords (so "book a flight" finds phone/book-flight); the best-scoring match wins, and on a
    tie a task of ``env`` (a phone task when no env is given) beats one of another env, such as
    MiniWoB's book-flight page.
    """
    asked = _words(goal)
    if not asked:
        return None
    preferred = env or "android"
    best, best_rank = None, (0.0, False)
    for name, cls in _registry().items():
        if env is not None and cls.env != env:
            continue
        template = re.sub(r"\{[^}]*\}", " ", cls.goal_template)
        vocabulary = _words(" ".join([template, name.replace("/", " ").replace("-", " "),
                                      *cls.tags, *cls.keywords]))
        rank = (len(asked & vocabulary) / len(asked), cls.env == preferred)
        if rank > best_rank:
            best, best_rank = cls, rank
    return best() if best is not None and best_rank[0] >= 0.6 else None
