"""``bench --merge``: one run from the results of several (the shards of a suite, run on
different machines), itself a source that a later merge can take."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ValidationError

from core.files import replace_text
from runtime.bench.catalog import Catalog, RegistryCatalog
from runtime.bench.jobs import EpisodeResult
from runtime.bench.plan import BenchSettings, differing_run_fields, plan_jobs
from runtime.bench.results import RESULTS_FILE, ResultsWriter, existing_run, read_results
from runtime.bench.runner import SETTINGS_FILE, load_settings, write_summary
from runtime.bench.summary import Summary
from runtime.settings import RunError

MERGE_FILE = "merge.json"


class MergedRuns(BaseModel):
    """What a merge keeps of its sources, so that merging it again checks and counts as merging
    them did: how they ran (None: no source said) and the episodes they planned."""

    settings: BenchSettings | None
    planned: tuple[str, ...]


def merge(sources: list[Path], out: Path, catalog: Catalog | None = None) -> Summary:
    """results.jsonl, summary.json, the reports and merge.json in ``out``, the reports linking
    to the sources' trajectories. For an episode in two sources, an outcome of the task wins
    over a runtime error (which says nothing about the task: a resume runs it again), and
    otherwise the later source. The summary counts as planned every episode the sources
    planned, so an unfinished shard shows as unfinished.
    Sources may select different episodes, but must have run them alike (same model, dialect,
    budgets): a success rate over episodes run two ways measures neither."""
    catalog = catalog or RegistryCatalog()
    by_key: dict[str, EpisodeResult] = {}
    planned: set[str] = set()
    # Each source against every earlier one, not the first alone: an unknown fingerprint
    # matches any, so two that differ may stand behind one that is unknown.
    seen: list[tuple[Path, BenchSettings]] = []
    # The first source to name a model and dialect, by its settings or a result line.
    named: tuple[Path, BenchSettings | EpisodeResult] | None = None
    for source in map(_run_folder, sources):
        found = read_results(source)
        settings, planned_here = _plan_of(source, catalog)
        # A shard with no result yet (or no job: more shards than jobs) is still a run: its
        # planned episodes count as unfinished. A folder that is neither is a mistake.
        if not found and settings is None and not planned_here:
            raise RunError(f"{source} holds no bench results (no results.jsonl lines)")
        if settings is not None:
            for earlier_source, earlier in seen:
                _refuse_other_setups(source, earlier_source, differing_run_fields(
                    earlier, settings), earlier, settings)
            seen.append((source, settings))
        # Each line names its model and dialect too: a source that kept no settings (a folder
        # of results alone) is held to those, and the others to its lines.
        for item in [*([settings] if settings is not None else []), *found]:
            if named is None:
                named = (source, item)
            _refuse_other_setups(source, named[0], [
                k for k in ("model", "dialect") if getattr(item, k) != getattr(named[1], k)
            ], named[1], item)
        planned |= planned_here
        for r in found:
            if r.trajectory:
                r = r.model_copy(update={"trajectory": os.path.relpath(
                    source.resolve() / r.trajectory, out.resolve())})
            if r.outcome != "error" or by_key.get(r.key, r).outcome == "error":
                by_key[r.key] = r
    results = sorted(by_key.values(), key=lambda r: (r.task, r.seed))
    if (out / RESULTS_FILE).exists():
        raise RunError(f"{out} holds results already; merge into a new folder")
    out.mkdir(parents=True, exist_ok=True)  # only once the sources read well
    planned |= by_key.keys()
    # The settings with a fingerprint where any has one: the others match it.
    known = [s for _, s in seen if s.model_fingerprint] or [s for _, s in seen]
    record = MergedRuns(settings=known[0] if known else None, planned=tuple(sorted(planned)))
    replace_text(out / MERGE_FILE, record.model_dump_json(indent=2), durable=True)
    with ResultsWriter(out / RESULTS_FILE) as writer:
        for r in results:
            writer.append(r)
    return write_summary(out, results, planned=len(planned))


def _run_folder(source: Path | str) -> Path:
    """The run folder ``source`` names: itself, or the folder of the results.jsonl it names
    (whose settings are checked too, and its trajectories found beside it)."""
    source = existing_run(source)
    if source.is_file():
        if source.name != RESULTS_FILE:
            raise RunError(f"{source} is a file; --merge takes a bench run's folder")
        return source.parent
    return source


def _plan_of(source: Path, catalog: Catalog) -> tuple[BenchSettings | None, set[str]]:
    """How a source ran and the episodes it planned: a run's from its settings, a merge's from
    what it recorded; (None, no episode) for a folder of results alone."""
    if (source / SETTINGS_FILE).is_file():
        settings = load_settings(source)  # a garbled file is an error, not a run without a plan
        try:
            return settings, {job.key for job in plan_jobs(settings, catalog)}
        except RunError:  # its suite's tasks are not installed here: its results alone count
            return settings, set()
    merged = source / MERGE_FILE
    if merged.is_file():
        try:
            record = MergedRuns.model_validate_json(merged.read_bytes())
        except ValidationError as exc:
            raise RunError(f"{merged} does not hold what a merge records "
                           f"({exc.errors()[0]['msg']})") from None
        return record.settings, set(record.planned)
    return None, set()


def _refuse_other_setups(source: Path, earlier: Path, changed: list[str],
                         was: BenchSettings | EpisodeResult,
                         now: BenchSettings | EpisodeResult) -> None:
    if changed:
        pairs = ", ".join(f"{k} {getattr(was, k)!r} against {getattr(now, k)!r}"
                          for k in changed)
        raise RunError(f"{source} ran its episodes with other settings than {earlier} "
                       f"({pairs}); merge only runs of one model and setup")
