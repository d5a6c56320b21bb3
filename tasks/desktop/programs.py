"""What the desktop tasks share: a folder per episode, the X programs they start on the episode's
display, and their windows' places on the screen (read with xdotool, as a harness reads a phone's
UI tree over adb)."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from abc import abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from core.actions import Click
from core.results import Score
from envs.base import Env, EnvError
from envs.processes import DIES_WITH_PARENT, stop
from envs.temp_folders import TempFolder
from tasks.base import SolutionStuck, Task, nothing_else_changed

#: How long a program may take to show its window, and a solution to wait for an effect.
WINDOW_TIMEOUT_S = 20.0
EFFECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Window:
    """A top-level window's place on the screen, in screen pixels."""

    id: str
    x: int
    y: int
    width: int
    height: int

    def click(self, dx: int, dy: int) -> Click:
        """A click at (``dx``, ``dy``) from the window's top-left corner."""
        return Click(x=self.x + dx, y=self.y + dy)

    def click_centre(self) -> Click:
        return self.click(self.width // 2, self.height // 2)


def x_client_env(env: Env) -> dict[str, str]:
    """``DISPLAY`` and ``XAUTHORITY`` of the env's display, for the programs a task starts."""
    display = getattr(env, "display", None)
    if not display:
        raise EnvError(f"the {env.name} env has no X display; desktop tasks need the desktop env")
    xauthority = getattr(env, "xauthority", None)
    return {"DISPLAY": display, **({"XAUTHORITY": xauthority} if xauthority else {})}


def xdotool(env: Env, *args: str) -> str:
    try:
        done = subprocess.run(["xdotool", *args], env={**os.environ, **x_client_env(env)},
                              capture_output=True, text=True, timeout=10, check=False)
    except FileNotFoundError:
        raise EnvError("xdotool is not installed: install it with `apt-get install xdotool`") \
            from None
    return done.stdout


def find_window(env: Env, window_class: str, timeout_s: float = WINDOW_TIMEOUT_S) -> Window:
    """The largest visible window of ``window_class`` (a program may map small helper windows)."""
    deadline = time.monotonic() + timeout_s
    while True:
        windows = [_geometry(env, wid) for wid in
                   xdotool(env, "search", "--onlyvisible", "--class", window_class).split()]
        windows = [w for w in windows if w is not None]
        if windows:
            return max(windows, key=lambda w: w.width * w.height)
        if time.monotonic() >= deadline:
            raise EnvError(f"no {window_class} window appeared within {timeout_s:g}s")
        time.sleep(0.1)


def _geometry(env: Env, wid: str) -> Window | None:
    fields = dict(line.split("=", 1) for line in
                  xdotool(env, "getwindowgeometry", "--shell", wid).split() if "=" in line)
    try:
        return Window(wid, int(fields["X"]), int(fields["Y"]), int(fields["WIDTH"]),
                      int(fields["HEIGHT"]))
    except (KeyError, ValueError):  # the window went away meanwhile
        return None


def wait_until(probe: Callable[[], object], what: str,
               timeout_s: float = EFFECT_TIMEOUT_S) -> None:
    """Let a solution wait for its last action's effect (a file written, a result shown)."""
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() >= deadline:
            raise SolutionStuck(f"{what} did not happen within {timeout_s:g}s")
        time.sleep(0.05)


class DesktopTask(Task):
    """A task on the desktop env whose programs work in a fresh folder of their own.

    ``initialize`` makes the folder and calls ``prepare`` (write the episode's files) and
    ``start`` (launch the programs); ``tear_down`` stops them and removes the folder. The
    programs run with the folder as working directory and ``HOME``, so no config or session of
    one episode reaches another, and without the user's D-Bus session (a GTK program would
    otherwise hand its window to an instance on another display).

    ``verdict`` judges the files in ``asked()``, and the answer. Every other file and folder
    must end as ``prepare`` left it (bytes and mode; the programs' own hidden ones, such as
    ``.config``, aside): ``check`` fails an episode that changed, added or removed one,
    whatever the verdict.
    """

    env = "desktop"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.folder: Path | None = None
        self._folder: TempFolder | None = None
        self._processes: list[subprocess.Popen] = []
        self._prepared: dict[str, tuple] | None = None

    def initialize(self, env: Env) -> None:
        self.tear_down(env)  # a repeated initialize starts over
        self._folder = TempFolder("vlagent-desktop-")
        self.populate(Path(self._folder.name))
        self.start(env)

    def populate(self, folder: Path) -> None:
        """Work in ``folder``: write the episode's files there and note what they are."""
        self.folder = folder
        self.prepare(folder)
        self._prepared = _contents(folder)

    def prepare(self, folder: Path) -> None:
        """Write the episode's files into ``folder``."""

    def asked(self) -> frozenset[str]:
        """The files (relative to the folder) the goal asks the agent to write."""
        return frozenset()

    @abstractmethod
    def verdict(self, env: Env, answer: str | None) -> Score:
        """The score the files in ``asked()`` (or the answer, or the screen) earn."""

    def check(self, env: Env, answer: str | None) -> Score:
        assert self.folder is not None and self._prepared is not None, "initialize first"
        score = self.verdict(env, answer)
        now = _contents(self.folder)
        return nothing_else_changed(score, sorted(
            path for path in self._prepared.keys() | now.keys()
            if path not in self.asked() and self._prepared.get(path) != now.get(path)))

    def start(self, env: Env) -> None:
        """Launch the episode's programs with ``launch``."""

    def launch(self, env: Env, argv: list[str], window_class: str) -> Window:
        """Start ``argv`` on the env's display and wait for its window."""
        assert self.folder is not None, "initialize makes the folder first"
        config = self.folder / ".config"
        child_env = {k: v for k, v in os.environ.items() if k != "DBUS_SESSION_BUS_ADDRESS"}
        child_env.update(x_client_env(env), HOME=str(self.folder),
                         XDG_CONFIG_HOME=str(config), XDG_DATA_HOME=str(self.folder / ".local"),
                         XDG_CACHE_HOME=str(self.folder / ".cache"),
                         GSETTINGS_BACKEND="memory", NO_AT_BRIDGE="1")
        if shutil.which(argv[0]) is None:
            raise EnvError(f"{argv[0]} is not installed (see the Makefile's SYSDEPS)")
        self._processes.append(subprocess.Popen(
            argv, cwd=self.folder, env=child_env, stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=DIES_WITH_PARENT))
        return find_window(env, window_class)

    def path(self, name: str) -> Path:
        assert self.folder is not None, "initialize makes the folder first"
        return self.folder / name

    def read(self, name: str) -> str | None:
        """The text of the episode's file ``name``, or None when it does not exist."""
        try:
            return self.path(name).read_text(encoding="utf-8")
        except (FileNotFoundError, IsADirectoryError, UnicodeDecodeError):
            return None

    def tear_down(self, env: Env) -> None:
        for process in self._processes:
            stop(process)
        self._processes = []
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = self.folder = None


def _contents(folder: Path) -> dict[str, tuple]:
    """Each file, folder and link under ``folder`` but the hidden ones (the programs' own
    settings and caches: ``HOME`` is the folder), by relative path: its kind and mode, and a
    file's digest or a link's target."""
    found: dict[str, tuple] = {}
    for top, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        for name in [*folders, *(name for name in files if not name.startswith("."))]:
            path = Path(top, name)
            where = str(path.relative_to(folder))
            try:
                mode = path.lstat().st_mode
                if path.is_symlink():
                    found[where] = ("link", os.readlink(path))
                elif path.is_dir():
                    found[where] = ("folder", mode)
                else:
                    found[where] = ("file", mode, _digest(path))
            except FileNotFoundError:  # removed while the folder was read: gone
                continue
    return found


def _digest(path: Path) -> str:
    """The file's SHA-256 (a file the agent made may be large)."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as exc:  # unreadable (made so by the agent): that is a change too
        return f"unreadable: {exc.strerror}"
    return digest.hexdigest()
