"""summary.json: success per task, tag and suite, mean steps, latency per phase, and errors."""

from __future__ import annotations

from collections import defaultdict
from typing import Iterable

import numpy as np
from pydantic import BaseModel

from runtime.bench.jobs import PHASES, EpisodeResult


class Rate(BaseModel):
    episodes: int
    successes: int
    failures: int
    errors: int  # runtime failures, apart from the task's own failures
    success_rate: float  # successes / episodes (an error counts as no success)
    mean_reward: float
    mean_steps: float

    @classmethod
    def of(cls, results: list[EpisodeResult]) -> "Rate":
        n = len(results)
        successes = sum(r.outcome == "success" for r in results)
        errors = sum(r.outcome == "error" for r in results)
        return cls(
            episodes=n, successes=successes, failures=n - successes - errors, errors=errors,
            success_rate=round(successes / n, 4) if n else 0.0,
            mean_reward=round(sum(r.score.reward if r.score else 0.0 for r in results) / n, 4)
            if n else 0.0,
            mean_steps=round(sum(r.steps for r in results) / n, 2) if n else 0.0,
        )


class Latency(BaseModel):
    samples: int
    p50_ms: float
    p95_ms: float


class Summary(BaseModel):
    planned: int  # the run's jobs; more than episodes while it is unfinished
    overall: Rate
    suites: dict[str, Rate]
    tasks: dict[str, Rate]
    tags: dict[str, Rate]
    latency: dict[str, Latency]  # per phase, over every recorded step
    episode: Latency | None  # whole episodes, env start-up included
    errors: dict[str, str]  # episode key -> the runtime error

    @classmethod
    def of(cls, results: list[EpisodeResult], planned: int | None = None) -> "Summary":
        results = sorted(results, key=lambda r: (r.task, r.seed))
        return cls(
            planned=planned if planned is not None else len(results),
            overall=Rate.of(results),
            suites=_rates(results, lambda r: [r.suite]),
            tasks=_rates(results, lambda r: [r.task]),
            tags=_rates(results, lambda r: r.tags),
            latency={p: lat for p in PHASES
                     if (lat := _latency(v for r in results for v in r.timings.get(p, [])))},
            episode=_latency(r.wall_s * 1000 for r in results if r.wall_s is not None),
            errors={r.key: r.error or "" for r in results if r.outcome == "error"},
        )


def _rates(results: list[EpisodeResult], groups) -> dict[str, Rate]:
    by: dict[str, list[EpisodeResult]] = defaultdict(list)
    for r in results:
        for g in groups(r):
            by[g].append(r)
    return {k: Rate.of(v) for k, v in sorted(by.items())}


def _latency(values: Iterable[float]) -> Latency | None:
    data = np.asarray(list(values), dtype=float)
    if data.size == 0:
        return None
    p50, p95 = np.percentile(data, [50, 95])
    return Latency(samples=int(data.size), p50_ms=round(float(p50), 1),
                   p95_ms=round(float(p95), 1))
