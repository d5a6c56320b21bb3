"""The bundled tasks by name, and finding the one a free-text goal means."""

from __future__ import annotations

import re

from tasks.base import Task
from tasks.phone import PHONE_TASKS

TASKS: dict[str, type[Task]] = {cls.name: cls for cls in PHONE_TASKS}

_STOPWORDS = frozenset(
    "a an and the to for of on in at from with it my me please that this is be".split()
)


class UnknownTask(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def task_names() -> list[str]:
    return sorted(TASKS)


def get_task(name: str) -> Task:
    try:
        return TASKS[name]()
    except KeyError:
        raise UnknownTask(f"unknown task {name!r}; the tasks are: {', '.join(task_names())}") \
            from None


def _words(text: str) -> set[str]:
    words = {w for w in re.findall(r"[a-z0-9]+", text.lower()) if w not in _STOPWORDS}
    # Plural and singular meet: "flights" matches "flight".
    return words | {w[:-1] for w in words if len(w) > 3 and w.endswith("s")}


def match_task(goal: str, env: str | None = None) -> Task | None:
    """The bundled task whose goal the free text ``goal`` means, or None.

    A task matches when most of the goal's words appear in its goal, name or keywords (so "book a
    flight" finds phone/book-flight); the best-scoring match wins.
    """
    asked = _words(goal)
    if not asked:
        return None
    best, best_score = None, 0.0
    for name, cls in TASKS.items():
        if env is not None and cls.env != env:
            continue
        vocabulary = _words(" ".join([cls.goal, name.replace("/", " ").replace("-", " "),
                                      *cls.keywords]))
        score = len(asked & vocabulary) / len(asked)
        if score > best_score:
            best, best_score = cls, score
    return best() if best is not None and best_score >= 0.6 else None
