"""Shared test fixtures and the rule for system-package tests.

Tests that need chromium, Xvfb, xdotool, adb or the desktop tasks' X programs run in CI and never skip there. Outside CI (``CI``
unset) they skip with a message that says what to install.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

# The Makefile runs test files in parallel workers, one per CPU. Torch's default of a thread per
# core in each would put two threads on every core, and each of a model's thousands of small
# parallel regions then waits for a thread that is not running: a tiny model's `model generate`
# once took over two minutes in CI. So each worker, and every process it starts, runs torch on
# one thread (tests of the multi-threaded paths set their own count).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

# A shell without job control starts a background job (`make test &` in a script) with Ctrl-C
# ignored, and every process under it inherits that: the tests that send SIGINT to a run, a
# bench or a virtual phone would see it ignored. The suite tests Ctrl-C as a terminal delivers it.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

SYSTEM_TOOLS = {
    "chromium": ("chromium", "chromium"),
    "xvfb": ("Xvfb", "xvfb"),
    "xdotool": ("xdotool", "xdotool"),
    "adb": ("adb", "adb"),
    # The programs of the desktop suite (tasks/desktop).
    "xterm": ("xterm", "xterm"),
    "xcalc": ("xcalc", "x11-apps"),
    "mousepad": ("mousepad", "mousepad"),
}


def require_tool(name: str) -> str:
    """Return the tool's path; outside CI skip when it is missing, in CI fail loudly."""
    command, package = SYSTEM_TOOLS[name]
    path = shutil.which(command) or (
        "/usr/bin/chromium" if name == "chromium" and os.path.exists("/usr/bin/chromium") else None
    )
    if path:
        return path
    message = f"{command} is missing: install it with `apt-get install {package}` (or `make test`)"
    if os.environ.get("CI"):
        pytest.fail(f"CI must run this test, but {message}")
    pytest.skip(message)  # only outside CI: under CI=true the line above fails instead


@pytest.fixture(scope="module")
def playwright():
    """One started Playwright per test module, for the browser envs it holds to share (its
    sync API allows one per thread)."""
    require_tool("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as instance:
        yield instance


@contextlib.contextmanager
def chromium_tab(width: int = 1280, height: int = 720) -> Iterator[Any]:
    """A page of a fresh headless chromium with this viewport, for tests that drive a web page
    themselves (the record page)."""
    require_tool("chromium")
    from playwright.sync_api import sync_playwright

    from envs.chromium import launch_chromium

    with sync_playwright() as playwright:
        browser = launch_chromium(playwright)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


@pytest.fixture(scope="module")
def virtual_phone():
    """A virtual phone attached to a private adb server, one per test module: (phone, adb)."""
    require_tool("adb")
    require_tool("chromium")
    from envs.virtual_phone.adb_host import connected_phone

    with connected_phone() as (phone, adb):
        yield phone, adb


@pytest.fixture(scope="session")
def desktop_programs():
    """Xvfb, xdotool and the X programs the desktop tasks start."""
    for tool in ("xvfb", "xdotool", "xterm", "xcalc", "mousepad"):
        require_tool(tool)


@pytest.fixture
def private_display(monkeypatch):
    """A private 320x240 Xvfb and one Xlib connection to it: (xvfb, client).

    The client stays open until the end, as Xvfb resets its keymap when its last client leaves.
    ``DISPLAY``/``XAUTHORITY`` are restored afterwards (DesktopEnv points this process at its
    display), an unset one to unset."""
    from Xlib.display import Display

    from envs.xvfb import Xvfb

    require_tool("xvfb")
    for key in ("DISPLAY", "XAUTHORITY"):
        # Recorded for monkeypatch to restore, left as it was (an unset one stays unset).
        value = os.environ.get(key)
        monkeypatch.setenv(key, value if value is not None else "")
        if value is None:
            monkeypatch.delenv(key)
    with Xvfb(320, 240) as xvfb:
        # python-xlib reads the cookie from here.
        monkeypatch.setenv("XAUTHORITY", xvfb.xauthority)
        client = Display(xvfb.display)
        try:
            yield xvfb, client
        finally:
            client.close()


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A tiny random Qwen2-VL checkpoint (seed 0), built once; tests must not write into it."""
    from runtime.tiny_checkpoint import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def tiny_processor(tiny_checkpoint):
    from model import Qwen2VLProcessor

    return Qwen2VLProcessor.from_pretrained(tiny_checkpoint)


@pytest.fixture(scope="session")
def tiny_qwen25_checkpoint(tmp_path_factory):
    """A tiny random Qwen2.5-VL checkpoint (seed 0: window attention, one full-attention block)."""
    from runtime.tiny_checkpoint import make_tiny_checkpoint

    return make_tiny_checkpoint(tmp_path_factory.mktemp("tiny25"), model_type="qwen2_5_vl")


@pytest.fixture(scope="session")
def hf_tokenizer(tiny_checkpoint):
    """transformers' tokenizer of the tiny checkpoint, loaded once; tests must not change it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tiny_checkpoint)


def copy_checkpoint(src, dst, file: str = "config.json",
                    change: Callable[[dict], dict] | None = None) -> Path:
    """A copy of the checkpoint folder ``src`` at ``dst``; with ``change``, its ``file`` (JSON) is
    rewritten as ``change(loaded)``: ``change`` returns the dict to write."""
    path = Path(shutil.copytree(src, dst))
    if change is not None:
        target = path / file
        target.write_text(json.dumps(change(json.loads(target.read_text()))))
    return path
