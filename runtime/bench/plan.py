"""What a bench run is: its settings, the jobs they make (tasks x seeds), and a shard of them."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, field_validator

from model.config import check_temperature
from runtime.bench.catalog import Catalog
from runtime.bench.jobs import EpisodeJob
from runtime.settings import RunError

if TYPE_CHECKING:
    from tasks.base import Task


class BenchSettings(BaseModel):
    """Everything that decides a run's jobs; stored in --out so a resume cannot mix settings."""

    model_config = ConfigDict(frozen=True)

    suite: str
    tasks: tuple[str, ...] = ()  # fnmatch globs over task names: a task matching any; (): all
    tags: tuple[str, ...] = ()  # only the tasks carrying every one of these ("scripted")
    episodes: int = 1
    seed: int = 0
    model: str
    dialect: str | None = None
    max_steps: int | None = None
    device: str | None = "virtual"
    shard: tuple[int, int] = (1, 1)  # (i, n): the i-th of n slices, 1-based
    max_new_tokens: int = 256
    temperature: float = 0.0
    max_pixels: int | None = None
    dtype: str | None = None  # a checkpoint's: bf16, fp16, fp32; None: bf16 on cuda, else fp32
    compile: bool = False  # a checkpoint's decode step through torch.compile
    #: The model's files as the run started (runtime.bench.fingerprint); None: unknown (scripted,
    #: or a run stored before fingerprints were kept), which matches any.
    model_fingerprint: str | None = None

    @field_validator("temperature")
    @classmethod
    def _samplable(cls, temperature: float) -> float:
        """Before --out is written: every episode would fail, and a resume repeat it."""
        check_temperature(temperature)
        return temperature

    @field_validator("tasks", mode="before")
    @classmethod
    def _one_glob(cls, tasks: object) -> object:
        """None or one glob: what runs stored before several were taken."""
        return () if tasks is None else (tasks,) if isinstance(tasks, str) else tasks

    @field_validator("tasks", "tags")
    @classmethod
    def _as_a_set(cls, values: tuple[str, ...]) -> tuple[str, ...]:
        """Globs and tags select tasks as sets: in any order, or repeated, the same run (and so
        the same resume)."""
        return tuple(sorted(set(values)))


#: The settings that choose which episodes run. The others (model, dialect, budgets...) decide
#: how each one runs, so results merged from several runs must agree on those.
SELECTION_FIELDS = frozenset({"suite", "tasks", "tags", "episodes", "seed", "shard"})


def differing_fields(a: BenchSettings, b: BenchSettings) -> list[str]:
    """The settings in which two runs differ (an unknown fingerprint, None, matches any)."""
    unknown = None in (a.model_fingerprint, b.model_fingerprint)
    return sorted(k for k in BenchSettings.model_fields if getattr(a, k) != getattr(b, k)
                  and not (k == "model_fingerprint" and unknown))


def differing_run_fields(a: BenchSettings, b: BenchSettings) -> list[str]:
    """The settings outside the selection in which two runs differ."""
    return [k for k in differing_fields(a, b) if k not in SELECTION_FIELDS]


def parse_shard(text: str) -> tuple[int, int]:
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if match is None or not 1 <= int(match.group(1)) <= int(match.group(2)):
        raise RunError(f"--shard takes i/n with 1 <= i <= n, e.g. 1/4; got {text!r}")
    return int(match.group(1)), int(match.group(2))


def matching_tasks(settings: BenchSettings, catalog: Catalog) -> list[type["Task"]]:
    """The suite's tasks whose names match any of the ``tasks`` globs, each once (a task two
    globs match is still one task), sorted by name. A glob that matches none is refused: a
    typo would leave its tasks out of the run unsaid."""
    found: dict[str, type["Task"]] = {}
    for pattern in settings.tasks or (None,):
        classes = catalog.find(pattern, settings.suite)
        if not classes:
            known = catalog.suites()
            if settings.suite not in known:
                raise RunError(f"no suite {settings.suite!r}; the suites are "
                               f"{', '.join(known)}")
            raise RunError(f"no tasks matching {pattern!r} in the suite {settings.suite!r}")
        found.update((cls.name, cls) for cls in classes)
    return [found[name] for name in sorted(found)]


def selected_tasks(settings: BenchSettings, catalog: Catalog) -> list[type["Task"]]:
    """The run's tasks, every shard's: those ``matching_tasks`` finds that carry its tags."""
    wanted = frozenset(settings.tags)
    classes = [cls for cls in matching_tasks(settings, catalog) if wanted <= cls.tags]
    if not classes:  # matching_tasks found some: the tags left none
        what = (f"tasks matching {' or '.join(map(repr, settings.tasks))} in" if settings.tasks
                else "tasks in")
        raise RunError(f"no {what} the suite {settings.suite!r} tagged {', '.join(sorted(wanted))}")
    return classes


def check_runnable(settings: BenchSettings, catalog: Catalog) -> None:
    """A RunError where the run cannot run its tasks, known before any episode: with
    ``--model scripted``, tasks without a solution (as errors they would fail the run, and
    every resume of it), counted over every shard's. A merge plans such a run all the same,
    to count what it left."""
    if settings.model != "scripted":
        return
    classes = selected_tasks(settings, catalog)
    unsolved = [cls.name for cls in classes if not cls.has_solution]
    if unsolved:
        raise RunError(f"{len(unsolved)} of the {len(classes)} tasks have no scripted solution, "
                       f"so --model scripted cannot run them ({', '.join(unsolved[:3])}"
                       f"{', ...' if len(unsolved) > 3 else ''}): --tag scripted keeps the "
                       "tasks that have one")


def plan_jobs(settings: BenchSettings, catalog: Catalog) -> list[EpisodeJob]:
    """The run's jobs in a fixed order (task name, then seed), cut to its shard.

    Shard i of n takes every n-th job from the (i-1)-th, so the slices are disjoint, cover the
    suite together, and each gets a mix of tasks.
    """
    classes = selected_tasks(settings, catalog)
    jobs = [
        EpisodeJob(suite=settings.suite, task=cls.name, seed=seed, model=settings.model,
                   dialect=settings.dialect, max_steps=settings.max_steps, device=settings.device,
                   max_new_tokens=settings.max_new_tokens, temperature=settings.temperature,
                   max_pixels=settings.max_pixels, dtype=settings.dtype,
                   compile=settings.compile)
        for cls in classes
        for seed in range(settings.seed, settings.seed + settings.episodes)
    ]
    index, count = settings.shard
    return jobs[index - 1::count]
