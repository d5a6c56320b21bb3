"""Files replaced whole (core/files.py), as view, export, bench's reports and meta.json write
them: the file a link names is the one replaced, its permissions stay, writers of one file do
not collide, and what is no file (a pipe, /dev/stdout) is written as it is."""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor

from core.files import replace_text


def test_a_link_is_written_through_and_stays_a_link(tmp_path):
    (tmp_path / "target.html").write_text("old")
    (tmp_path / "link.html").symlink_to("target.html")
    replace_text(tmp_path / "link.html", "new")
    assert (tmp_path / "link.html").is_symlink()
    assert (tmp_path / "target.html").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.html", "target.html"]


def test_the_replaced_file_keeps_its_permissions(tmp_path):
    private = tmp_path / "view.html"
    private.write_text("old")
    private.chmod(0o600)
    replace_text(private, "new")
    assert stat.S_IMODE(private.stat().st_mode) == 0o600 and private.read_text() == "new"


def test_writers_of_one_file_do_not_collide(tmp_path):
    """Each write has a temporary file of its own: with one shared name, the second rename
    found it gone (a view while the run wrote its own)."""
    path = tmp_path / "view.html"
    texts = [f"writer {i} " * 2000 for i in range(8)]

    def write(text: str) -> None:
        for _ in range(10):
            replace_text(path, text)

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(write, texts))
    assert path.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["view.html"]


def test_what_is_no_file_is_written_as_it_is(tmp_path):
    """``--out /dev/stdout`` (a pipe here): nothing can be renamed over it, and as root the
    rename would have replaced the device's name with a file."""
    pipe = tmp_path / "pipe"
    os.mkfifo(pipe)
    reader = os.open(pipe, os.O_RDONLY | os.O_NONBLOCK)  # so the writer's open does not wait
    try:
        replace_text(pipe, "through the pipe")
        assert os.read(reader, 100) == b"through the pipe"
    finally:
        os.close(reader)
    assert stat.S_ISFIFO(pipe.stat().st_mode)
    assert [p.name for p in tmp_path.iterdir()] == ["pipe"]
