"""Reading a trajectory directory back.

A run killed at any moment leaves a readable prefix: ``load`` ignores a final line that was cut off
mid-write, and every line it keeps refers to an image that was written before it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from pydantic import BaseModel, ValidationError

from core.actions import parse_action
from trajectories.records import IMAGES_DIR, META_FILE, STEPS_FILE, Meta, StepRecord


class TrajectoryError(ValueError):
    """A directory that is not a readable trajectory."""


class Trajectory(BaseModel):
    directory: Path
    meta: Meta
    steps: list[StepRecord]

    def path(self, relative: str) -> Path:
        """The file ``relative`` names, which must lie inside the trajectory folder: view embeds
        it in a page made to be shared, and export hands it to a trainer, so a trajectory that
        was sent to us must not reach other files (an absolute name, ``..``, a link)."""
        path = self.directory / relative
        if not path.resolve().is_relative_to(self.directory.resolve()):
            raise TrajectoryError(f"{self.directory}: the image {relative!r} is outside the "
                                  "trajectory folder; its files must be inside it")
        return path


def check_outside(out: str | Path, directory: str | Path, option: str = "--out") -> None:
    """A TrajectoryError when ``out`` is one of the files the trajectory in ``directory`` is
    made of (its meta, its steps, a screenshot): writing there would destroy the record that
    the output is made from."""
    out, directory = Path(out).resolve(), Path(directory).resolve()
    if out in (directory / META_FILE, directory / STEPS_FILE) or (
            directory / IMAGES_DIR in out.parents) or _same_file_as_part(out, directory):
        raise TrajectoryError(f"{option} {out} is part of the trajectory in {directory}, which "
                              "writing it would destroy; choose a file outside its "
                              f"{META_FILE}, {STEPS_FILE} and {IMAGES_DIR}/")


def _same_file_as_part(out: Path, directory: Path) -> bool:
    """Whether ``out`` is another name (a hard link) of a file the trajectory is made of."""
    try:
        found = out.stat()
    except OSError:
        return False  # nothing there yet: a new file
    parts = [directory / META_FILE, directory / STEPS_FILE, *(directory / IMAGES_DIR).glob("*")]
    for part in parts:
        try:
            same = part.stat()
        except OSError:
            continue
        if (same.st_dev, same.st_ino) == (found.st_dev, found.st_ino):
            return True
    return False


def trajectory_folder(path: str | Path) -> Path | None:
    """The trajectory ``path`` names: a folder, or the steps.jsonl of one (beside its
    meta.json), which is read as the folder is (a torn last line skipped, each reply's ending
    and masked secrets kept); None for any other path."""
    path = Path(path)
    if path.name == STEPS_FILE and path.is_file() and (path.parent / META_FILE).is_file():
        return path.parent
    return path if path.is_dir() else None


def load_meta(directory: str | Path) -> Meta:
    """A trajectory directory's meta.json alone (its steps unread)."""
    directory = Path(directory)
    meta_path = directory / META_FILE
    if not _is_file(meta_path):
        what = "is no file" if meta_path.exists() else "is missing"
        hint = ""
        # A folder of runs, or a bench's (its episodes under trajectories/): say how to name them.
        for depth in ("*", "*/*") if directory.is_dir() else ():
            inside = {path.parent.parent for path in directory.glob(f"{depth}/{META_FILE}")}
            if inside:
                count = sum(1 for folder in inside for _ in folder.glob(f"*/{META_FILE}"))
                hint = (f"; it holds {count} trajectory folder(s): name them, as "
                        f"{' '.join(f'{shlex.quote(str(folder))}/*' for folder in sorted(inside))}")
                break
        raise TrajectoryError(f"{directory} is not a trajectory directory: its {META_FILE} "
                              f"{what}{hint}")
    text = _read(meta_path)
    try:
        return Meta.model_validate_json(text.decode("utf-8"))
    except ValueError as exc:
        raise TrajectoryError(f"{meta_path} is not valid ({_why(exc)}); fix or remove "
                              f"that trajectory") from None


def load(directory: str | Path) -> Trajectory:
    """Read a trajectory directory, ignoring a last line that a kill cut short."""
    directory = Path(directory)
    meta = load_meta(directory)
    steps: list[StepRecord] = []
    steps_path = directory / STEPS_FILE
    data = _read(steps_path) if steps_path.exists() else b""
    # The recorder ends every line with a newline, so a last line without one was cut short by
    # a kill (it may end inside a character) and is left out, unless it is a whole step: a file
    # written by another tool may just lack the last newline.
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        what = "step"
        try:
            step = StepRecord.model_validate(json.loads(line.decode("utf-8")))
            what = "action"
            if step.action is not None:
                parse_action(step.action)  # view and export read its fields
            steps.append(step)
        except ValueError as exc:
            if number == len(lines):
                break  # the torn line
            raise TrajectoryError(f"{steps_path}:{number} holds an invalid {what} "
                                  f"({_why(exc)}); fix or delete that line") from None
    return Trajectory(directory=directory, meta=meta, steps=steps)


# A folder or file without read permission (recorded by another user under umask 077), or a
# folder in a file's place, is a TrajectoryError too: every command reports it in one line.
def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError as exc:
        raise TrajectoryError(f"cannot read {path.parent}: {exc.strerror or exc}") from None


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise TrajectoryError(f"cannot read {path}: {exc.strerror or exc}") from None


def _why(exc: ValueError) -> str:
    """The first problem, on one line (pydantic's own message spans several)."""
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        more = f" and {exc.error_count() - 1} more" if exc.error_count() > 1 else ""
        return f"{where + ': ' if where else ''}{first['msg']}{more}"
    return str(exc).splitlines()[0]
