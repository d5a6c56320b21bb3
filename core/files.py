"""Files replaced whole: a kill, a full disk or an error while writing leaves the old file (or
none), never half of the new one."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


@contextlib.contextmanager
def replacing(path: Path, durable: bool = False) -> Iterator[TextIO]:
    """A text file to write ``path``'s new content to. It is renamed over ``path`` when the block
    ends; whatever fails first (the block, the disk, Ctrl-C) removes it and leaves ``path``
    alone. ``durable``: fsynced before the rename, so a power cut keeps one of the two whole."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace_text(path: Path, text: str, durable: bool = False) -> None:
    """``path`` replaced whole by ``text`` (see :func:`replacing`)."""
    with replacing(path, durable) as f:
        f.write(text)
