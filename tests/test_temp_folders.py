"""The temporary folders of a process killed with SIGKILL go at the next start; a live process's
folders stay (envs/temp_folders.py)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from envs.temp_folders import TempFolder
from tests.conftest import require_tool

ROOT = Path(__file__).resolve().parents[1]
PREFIX = "vlagent-test-"


@pytest.fixture
def temp_root(tmp_path, monkeypatch) -> Path:
    """A temporary folder of the test's own, here and in the children it starts."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    return tmp_path


def owner(code: str) -> tuple[subprocess.Popen, Path]:
    """A child process that runs ``code`` (which prints a folder's path) and then waits."""
    child = subprocess.Popen(
        [sys.executable, "-c", f"{code}\nimport sys; sys.stdin.read()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    folder = Path(child.stdout.readline().strip())
    assert folder.is_dir(), folder
    return child, folder


def kill(child: subprocess.Popen) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=10)


MAKE = f"from envs.temp_folders import TempFolder; t = TempFolder({PREFIX!r}); print(t.name, flush=True)"


def test_a_killed_owners_folder_goes_when_the_next_is_made(temp_root):
    child, folder = owner(MAKE)
    (folder / "inside").mkdir()
    (folder / "inside" / "file").write_text("x")
    kill(child)
    assert folder.exists()
    with TempFolder(PREFIX) as mine:
        assert sorted(p.name for p in temp_root.iterdir()) == sorted(
            [Path(mine).name, Path(mine).name + ".lock"])


def test_a_live_owners_folder_stays(temp_root):
    child, folder = owner(MAKE)
    try:
        (folder / "file").write_text("x")
        with TempFolder(PREFIX):
            assert (folder / "file").read_text() == "x"
    finally:
        child.stdin.close()  # it ends normally and removes its folder on the way out
        assert child.wait(timeout=10) == 0
    assert not folder.exists() and not Path(f"{folder}.lock").exists()


def test_a_folder_without_a_lock_and_other_prefixes_stay(temp_root):
    unlocked = Path(tempfile.mkdtemp(prefix=PREFIX, dir=temp_root))
    child, other = owner(MAKE.replace(PREFIX, "vlagent-other-"))
    kill(child)
    with TempFolder(PREFIX):
        assert unlocked.is_dir() and other.is_dir()


def test_cleanup_removes_the_folder_and_its_lock(temp_root):
    folder = TempFolder(PREFIX)
    path = Path(folder.name)
    assert path.is_dir() and oct(path.stat().st_mode & 0o777) == "0o700"
    (path / "file").write_text("x")
    folder.cleanup()
    assert list(temp_root.iterdir()) == []
    path.mkdir()  # written again after the removal (an exiting chromium)
    folder.cleanup()
    assert list(temp_root.iterdir()) == []


def test_the_display_of_a_killed_process_goes_when_the_next_starts(temp_root):
    require_tool("xvfb")
    from envs.xvfb import Xvfb

    child, folder = owner("from envs.xvfb import Xvfb; x = Xvfb(); "
                          "import os; print(os.path.dirname(x.xauthority), flush=True)")
    kill(child)
    assert (folder / "Xauthority").exists()
    with Xvfb() as display:
        assert not folder.exists()
        assert Path(display.xauthority).parent.parent == temp_root
    assert os.listdir(temp_root) == []


@pytest.mark.parametrize("make", [
    pytest.param("from envs.chromium import chromium_temp; t = chromium_temp(); "
                 "print(t.name, flush=True)", id="chromium"),
    pytest.param("from envs.virtual_phone.adb_host import PrivateAdbServer; "
                 "a = PrivateAdbServer(); print(a.home.name, flush=True)", id="adb"),
])
def test_the_folders_of_chromium_and_adb_of_a_killed_process_go(temp_root, make):
    if "adb" in make:
        require_tool("adb")
    child, folder = owner(make)
    kill(child)
    child, second = owner(make)  # the same kind of folder, made again
    try:
        assert not folder.exists() and second.is_dir()
    finally:
        child.stdin.close()
        child.wait(timeout=10)
    assert os.listdir(temp_root) == []


def test_a_sweep_between_making_a_lock_and_taking_it_leaves_the_new_folder_locked(
        temp_root, monkeypatch):
    """Another process's sweep took the new lock before its maker did, and removed the lock
    file: the folder had none, so nothing would remove it after a SIGKILL."""
    import envs.temp_folders as temp_folders

    made = tempfile.mkstemp

    def made_then_swept(**kwargs):
        lock = made(**kwargs)
        monkeypatch.setattr(tempfile, "mkstemp", made)
        temp_folders.sweep(PREFIX)  # the other process's, in the window before the flock
        return lock

    monkeypatch.setattr(tempfile, "mkstemp", made_then_swept)
    with TempFolder(PREFIX) as name:
        assert Path(f"{name}.lock").is_file()
        child, _ = owner(f"from envs.temp_folders import sweep; sweep({PREFIX!r}); "
                         "print('/', flush=True)")
        child.stdin.close()
        assert child.wait(timeout=10) == 0
        assert Path(name).is_dir() and Path(f"{name}.lock").is_file()
    assert os.listdir(temp_root) == []


@pytest.fixture
def short_temp_root(monkeypatch) -> Iterator[Path]:
    """A temporary folder of the test's own with a short path: chromium's singleton socket
    in it must fit a unix socket's path (pytest's own folders are too deep for that)."""
    root = Path(tempfile.mkdtemp(prefix="vt-"))
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    monkeypatch.setenv("TMPDIR", str(root))
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_a_killed_phones_browser_profile_goes_with_its_folder(short_temp_root):
    """Playwright made the phone's chromium profile (1.3 MB) in the temporary folder itself,
    where nothing removed it after a SIGKILL of the process group; it is in the chromium
    folder now. Playwright's driver still makes an empty playwright-artifacts-* folder."""
    import time

    from tests.proc_table import command, descendants

    require_tool("chromium")
    temp_root = short_temp_root
    child = subprocess.Popen(
        [sys.executable, "-c", "from envs.virtual_phone import VirtualPhone; "
         "VirtualPhone(port=0).start(); print('/', flush=True); import sys; sys.stdin.read()"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        start_new_session=True)
    assert child.stdout.readline().strip() == "/"
    group = [child.pid, *descendants(child.pid)]
    os.killpg(child.pid, signal.SIGKILL)
    child.wait(timeout=10)
    deadline = time.monotonic() + 20
    while any(command(pid) for pid in group) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in group:  # a process of its own group that outlived it (never so far)
        if command(pid):
            os.kill(pid, signal.SIGKILL)
    with TempFolder("vphone-"), TempFolder("vlagent-chromium-"):
        pass
    left = list(temp_root.iterdir())
    assert all(p.name.startswith("playwright-artifacts-") and not any(p.iterdir())
               for p in left), left
