"""``bench --compare A B``: two runs side by side, and the episodes whose outcome changed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from runtime.bench.jobs import EpisodeResult
from runtime.bench.results import existing_run, read_results
from runtime.bench.summary import Rate, Summary
from runtime.settings import RunError


@dataclass
class Comparison:
    tasks: dict[str, tuple[Rate | None, Rate | None]]  # per task: run A's rate, run B's
    overall: tuple[Rate, Rate]
    changed: list[tuple[str, str, str]]  # episode key, outcome in A, outcome in B
    shared: int  # the episodes (task@seed) both runs hold, which ``changed`` is drawn from
    #: The episodes only A holds, and only B: left out of the rates where the runs share some.
    only: tuple[int, int]


def compare(a: Path, b: Path) -> Comparison:
    runs: list[list[EpisodeResult]] = []
    for path in (a, b):
        results = read_results(existing_run(path))
        if not results:
            raise RunError(f"{path} holds no bench results (no results.jsonl lines)")
        runs.append(results)
    outcomes_a = {r.key: r.outcome for r in runs[0]}
    outcomes_b = {r.key: r.outcome for r in runs[1]}
    both = outcomes_a.keys() & outcomes_b.keys()
    shared = sorted(both)
    if both:  # like with like: the rates of the episodes both ran (same tasks, same seeds)
        runs = [[r for r in run if r.key in both] for run in runs]
    sa, sb = Summary.of(runs[0]), Summary.of(runs[1])
    changed = [(key, outcomes_a[key], outcomes_b[key]) for key in shared
               if outcomes_a[key] != outcomes_b[key]]
    names = sorted(sa.tasks.keys() | sb.tasks.keys())
    return Comparison({n: (sa.tasks.get(n), sb.tasks.get(n)) for n in names},
                      (sa.overall, sb.overall), changed, len(shared),
                      (len(outcomes_a) - len(shared), len(outcomes_b) - len(shared)))
