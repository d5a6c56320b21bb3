"""Files replaced whole: a kill, a full disk or an error while writing leaves the old file (or
none), never half of the new one."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import TextIO


@contextlib.contextmanager
def replacing(path: Path, durable: bool = False) -> Iterator[TextIO]:
    """A text file to write ``path``'s new content to. It is renamed over ``path`` when the block
    ends; whatever fails first (the block, the disk, Ctrl-C) removes it and leaves ``path``
    alone. ``durable``: fsynced before the rename, so a power cut keeps one of the two whole.

    A link is written through, to the file it names, which keeps its permissions; what is no
    file (``/dev/stdout``, a pipe) is written as it is, since nothing can be renamed over it."""
    target = Path(path).resolve()
    if target.exists() and not target.is_file():
        with open(target, "w", encoding="utf-8") as f:
            yield f
        return
    # A name of its own: two writers of one file (view while a run ends) do not share it.
    tmp = target.with_name(f"{target.name}.{secrets.token_hex(4)}.tmp")
    try:
        with open(tmp, "x", encoding="utf-8") as f:
            if target.exists():
                shutil.copymode(target, tmp)
            yield f
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def replace_text(path: Path, text: str, durable: bool = False) -> None:
    """``path`` replaced whole by ``text`` (see :func:`replacing`)."""
    with replacing(path, durable) as f:
        f.write(text)
