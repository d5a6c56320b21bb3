"""results.jsonl: one EpisodeResult per line, appended and fsynced line by line, so a killed run
leaves whole lines (a torn last line is dropped on reading; a whole one without its newline is
kept) and a resume skips what is there."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from pydantic import ValidationError

from core.files import replace_text
from runtime.bench.jobs import EpisodeResult
from runtime.settings import RunError

RESULTS_FILE = "results.jsonl"


def existing_run(path: Path | str) -> Path:
    """``path``, a run given to read (``--compare``, ``--merge``), which must exist: a missing
    one was said to hold no results, as if a run had written none."""
    path = Path(path)
    if not path.exists():
        raise RunError(f"{path} does not exist; name a bench run's folder (or its "
                       f"{RESULTS_FILE})")
    return path


def read_results(path: Path) -> list[EpisodeResult]:
    """The results in ``path`` (a run folder or its results.jsonl), the last line per key."""
    path = Path(path)
    if path.is_dir():
        path = path / RESULTS_FILE
    if not path.is_file():
        return []
    by_key: dict[str, EpisodeResult] = {}
    with open(path, "rb") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            if not line.endswith(b"\n"):
                # Cut off by a kill, unless it is whole: a file another tool wrote (an editor
                # that saves no final newline) may just lack the last one.
                if (whole := _whole(line)) is not None:
                    by_key[whole.key] = whole
                continue
            try:
                result = EpisodeResult.model_validate_json(line)
            except ValidationError as exc:
                error = exc.errors()[0]
                where = ".".join(map(str, error["loc"]))
                raise RunError(f"{path}:{number} is not an episode's result "
                               f"({where + ': ' if where else ''}{error['msg']}); move the "
                               "file away to run those episodes again") from None
            by_key[result.key] = result
    return list(by_key.values())


class ResultsWriter:
    """Appends to a run's results.jsonl, holding a lock on it until closed: two benches writing
    one --out would run the same episodes and replace each other's trajectories. The lock goes
    with the process (a kill, SIGKILL too), so a resume after a kill finds it free."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._file = open(self.path, "a", encoding="utf-8")
        try:
            fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._file.close()
            raise RunError(f"another bench is running in {self.path.parent}; wait for it to "
                           "end, or stop it, before running there") from None
        except OSError:
            pass  # a filesystem without locks (some NFS mounts): the run goes on unguarded
        _drop_torn_tail(self.path)

    def append(self, result: EpisodeResult) -> None:
        self._file.write(result.model_dump_json() + "\n")  # one write: a kill leaves whole lines
        self._file.flush()
        os.fsync(self._file.fileno())

    def drop_superseded(self) -> None:
        """Rewrite the file with one line per episode, its last: a resume appends the new line
        of an episode that ended in an error, and the error's line goes once the run has ended
        (replaced whole, so a kill meanwhile leaves the old file or the new one)."""
        results = read_results(self.path)
        lines = sum(1 for line in self.path.read_bytes().splitlines() if line.strip())
        if lines > len(results):
            replace_text(self.path, "".join(r.model_dump_json() + "\n" for r in results),
                         durable=True)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> "ResultsWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _whole(line: bytes) -> EpisodeResult | None:
    try:
        return EpisodeResult.model_validate_json(line)
    except ValidationError:
        return None


def _drop_torn_tail(path: Path) -> None:
    """End the last line, so the next append starts on a line of its own: with its newline if
    it is a whole result (``read_results`` keeps it), cut off if a kill tore it."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        tail = data.rfind(b"\n") + 1
        with open(path, "r+b") as f:
            if _whole(data[tail:]) is not None:
                f.seek(len(data))
                f.write(b"\n")
            else:
                f.truncate(tail)
