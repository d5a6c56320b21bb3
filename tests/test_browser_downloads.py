"""Downloads in the browser env: Playwright accepts them by default, into a temporary folder of
its own, so a page wrote files on this machine that nobody asked for (by itself as it loaded,
too), and the model was never told: a click on "Download report" read "clicked", and a navigate
to a file failed with Playwright's "Download is starting" though the file was saved."""

from __future__ import annotations

import glob
import os
import tempfile
from pathlib import Path

import pytest

from core.actions import Click, Key, Navigate
from tests.conftest import require_tool
from tests.local_server import serve_directory

REFUSED = 'a download of "{}" started, not saved (the browser env keeps no downloads)'


def saved_files() -> list[str]:
    """What Playwright saved for downloads (its artifacts folders in the temporary folder)."""
    return glob.glob(os.path.join(tempfile.gettempdir(), "playwright-artifacts-*", "*"))


@pytest.fixture
def site(tmp_path) -> Path:
    (tmp_path / "report.bin").write_bytes(bytes(range(256)) * 4)  # octet-stream: a download
    (tmp_path / "page.html").write_text(
        "<a href='report.bin' style='display:block;height:100px'>Download report</a>")
    (tmp_path / "auto.html").write_text(  # a download the page starts by itself
        "<p>loaded</p><script>const a = document.createElement('a'); a.href = 'report.bin'; "
        "a.download = 'on its own.bin'; document.body.append(a); a.click();</script>")
    return tmp_path


def test_no_download_is_saved_and_the_model_is_told_of_each(playwright, site) -> None:
    require_tool("chromium")
    from envs.browser import BrowserEnv

    before = saved_files()
    with serve_directory(site) as base, BrowserEnv(
            viewport=(400, 300), start_url=base + "page.html", playwright=playwright) as env:
        env.observe()
        clicked = env.execute(Click(x=50, y=50))
        env.observe()
        then = env.execute(Key(key="shift"))  # told with the click, or as what came before this
        assert clicked.ok and then.ok
        assert REFUSED.format("report.bin") in clicked.message + then.message
        result = env.execute(Navigate(url=base + "report.bin"))
        assert result.ok, result.message
        assert result.message.startswith(f"{base}report.bin is a download, not a page; the page "
                                          f"stays at {base}page.html")
        assert REFUSED.format("report.bin") in result.message.split("stays at")[1]
        opened = env.execute(Navigate(url=base + "auto.html"))
        env.observe()
        then = env.execute(Key(key="shift"))  # told with the load, or as what came before this
        assert opened.ok and then.ok
        assert REFUSED.format("on its own.bin") in opened.message + then.message
        assert saved_files() == before
