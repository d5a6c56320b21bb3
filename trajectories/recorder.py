"""Write a trajectory directory as the episode runs, so that a kill at any moment loses nothing.

The order of writes is the guarantee: a step's screenshot is written and fsynced before its line,
each line is flushed and fsynced on its own, and meta.json is only ever replaced whole (written to
a temporary file, then renamed over the old one).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from PIL import Image
from pydantic import BaseModel
from pydantic_core import PydanticSerializationError

from core.files import replace_text
from core.results import Score
from core.text import well_formed
from trajectories.records import (
    IMAGES_DIR,
    META_FILE,
    STEPS_FILE,
    Meta,
    Status,
    StepRecord,
    image_name,
)


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def new_run_dir(root: str | Path, label: str) -> Path:
    """A fresh, empty directory under ``root``, made now, named by time and a slug of
    ``label``."""
    slug = "".join(c if c.isalnum() else "-" for c in label.lower()).strip("-")[:40] or "run"
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    base = Path(root) / f"{stamp}-{slug}"
    Path(root).mkdir(parents=True, exist_ok=True)
    candidate, n = base, 1
    while True:
        try:
            candidate.mkdir()  # made here, so two runs started in one second get two folders
            return candidate
        except FileExistsError:
            n += 1
            candidate = base.with_name(f"{base.name}-{n}")


class Recorder:
    """Owns one trajectory directory: ``start`` it, ``record`` each step, ``finish`` it."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.meta: Meta | None = None
        self._steps = None

    def start(self, meta: Meta) -> None:
        (self.directory / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        if (self.directory / STEPS_FILE).exists():
            raise FileExistsError(f"{self.directory} already holds a trajectory")
        self.meta = meta
        self._write_meta()
        self._steps = open(self.directory / STEPS_FILE, "a", encoding="utf-8")

    def set_goal(self, goal: str) -> None:
        """The goal as the episode's start state told it (a task may only know it then)."""
        if self.meta is not None:
            self.meta.goal = goal
            self._write_meta()

    def save_image(self, step: int, image: Image.Image, png: bytes | None = None) -> str:
        """Write the step's screenshot (durably) and return its name for the step's line.

        ``png``: the same screenshot already encoded (as the device sent it), written as is.
        """
        name = image_name(step)
        path = self.directory / name
        with _removed_on_failure(path), open(path, "wb") as f:
            if png is not None:
                f.write(png)
            else:
                # Level 1: a 1080x2400 screenshot encodes in tens of ms instead of hundreds.
                image.save(f, format="PNG", compress_level=1)
            f.flush()
            os.fsync(f.fileno())
        return name

    def record(self, step: StepRecord) -> None:
        """Append the step's line; its image must already be saved."""
        if self._steps is None or self.meta is None:
            raise RuntimeError("Recorder.start was not called")
        if not (self.directory / step.image).is_file():
            raise FileNotFoundError(f"step {step.step}'s image {step.image} was not saved first")
        # One write call per line, then flush and fsync: a kill leaves whole lines only (or a
        # torn last line, which the reader drops).
        self._steps.write(_json(step) + "\n")
        self._steps.flush()
        os.fsync(self._steps.fileno())

    def finish(self, status: Status, reason: str = "", check: Score | None = None) -> None:
        if self.meta is None:
            return
        if self._steps is not None:
            # A line a Ctrl-C left between its write and its flush reaches the disk now, before
            # the count: closing afterwards would add a line meta.json does not count.
            steps, self._steps = self._steps, None
            try:
                steps.flush()
                os.fsync(steps.fileno())
            finally:
                steps.close()
        # Counted from the file, not kept in a counter: a Ctrl-C can land between a line's fsync
        # and any bookkeeping after it, and meta.json must agree with steps.jsonl.
        self.meta.steps = self.steps_written()
        self.meta.status = status
        self.meta.reason = reason
        self.meta.check = check
        self.meta.finished_at = utc_now()
        self._write_meta()

    def steps_written(self) -> int:
        """Whole lines in steps.jsonl (a torn last line does not count)."""
        path = self.directory / STEPS_FILE
        if not path.is_file():
            return 0
        with open(path, "rb") as f:
            return sum(1 for line in f if line.endswith(b"\n"))

    def _write_meta(self) -> None:
        assert self.meta is not None
        write_meta(self.directory, self.meta)


def write_meta(directory: Path, meta: Meta) -> None:
    """``meta.json``, replaced whole (durably): a kill leaves the old one or the new one."""
    replace_text(directory / META_FILE, _json(meta, indent=2), durable=True)


def _json(record: BaseModel, indent: int | None = None) -> str:
    """``record`` as JSON. A lone surrogate cannot be written as UTF-8, yet ordinary runs meet
    one (chromium reports a page title that a script cut inside an emoji so; Python reads a
    goal's bytes that are not UTF-8 so): it becomes U+FFFD instead of losing the step or run."""
    try:
        return record.model_dump_json(indent=indent)
    except PydanticSerializationError:
        clean = type(record).model_validate(_well_formed(record.model_dump(mode="json")))
        return clean.model_dump_json(indent=indent)


def _well_formed(value: Any) -> Any:
    if isinstance(value, str):
        return well_formed(value)
    if isinstance(value, dict):
        return {_well_formed(k): _well_formed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_well_formed(v) for v in value]
    return value


@contextlib.contextmanager
def _removed_on_failure(path: Path) -> Iterator[None]:
    """Delete a file whose writing failed: on a full disk its part frees the room that
    meta.json needs to record how the episode ended."""
    try:
        yield
    except OSError:
        path.unlink(missing_ok=True)
        raise
