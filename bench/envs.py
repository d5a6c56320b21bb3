"""Latency of each environment: capture, observe (with settling) and act.

    python bench/envs.py                 # every env
    python bench/envs.py --env browser   # one env; --env may repeat

Each entry of ENVS opens an env on a private, self-contained screen and says which actions to
time. To add an env (android, say), add a factory to ENVS.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.actions import Action, Click, Move  # noqa: E402
from envs.base import Env  # noqa: E402


@dataclass
class Target:
    env: Env
    #: Cheap, harmless actions to time, cycled through; each gets its own figure.
    actions: dict[str, Callable[[int], Action]]


def _pointer_actions(width: int, height: int) -> dict[str, Callable[[int], Action]]:
    # Alternate between two points so every action really moves the pointer.
    def point(i: int) -> tuple[int, int]:
        return (width // 3, height // 3) if i % 2 else (2 * width // 3, 2 * height // 3)

    return {
        "move": lambda i: Move(x=point(i)[0], y=point(i)[1]),
        "click": lambda i: Click(x=point(i)[0], y=point(i)[1]),
    }


_PAGE = (
    "data:text/html,<title>bench</title><body style='font:16px sans-serif'>"
    + "<p>Lorem ipsum dolor sit amet, consectetur adipiscing elit.</p>" * 30
    + "</body>"
)


@contextlib.contextmanager
def desktop() -> Iterator[Target]:
    """A 1280x800x24 private Xvfb (an empty screen: capture cost does not depend on content)."""
    from envs.desktop import DesktopEnv
    from envs.xvfb import Xvfb

    with Xvfb(1280, 800, 24) as display, DesktopEnv(display.display, display.xauthority) as env:
        yield Target(env, _pointer_actions(1280, 800))


@contextlib.contextmanager
def browser() -> Iterator[Target]:
    """Headless chromium, 1280x800 viewport at scale 1, on a page of text."""
    from envs.browser import BrowserEnv

    with BrowserEnv(viewport=(1280, 800), start_url=_PAGE) as env:
        yield Target(env, _pointer_actions(1280, 800))


@contextlib.contextmanager
def android(screencap: str = "raw", still_frames: bool = True) -> Iterator[Target]:
    """The virtual phone (1080x2400) through a private adb server, on its home screen;
    ``still_frames=False``: observe compares screencaps, as on a real phone."""
    from core.actions import Tap
    from envs.android import AndroidEnv
    from envs.virtual_phone.adb_host import connected_phone

    with connected_phone() as (phone, adb), AndroidEnv(
        serial=phone.serial, adb_port=adb.port, screencap=screencap, still_frames=still_frames
    ) as env:
        # Taps on an empty part of the home screen: real input events that change nothing.
        yield Target(env, {"tap": lambda i: Tap(x=300 + 400 * (i % 2), y=2200)})


ENVS: dict[str, Callable[[], contextlib.AbstractContextManager[Target]]] = {
    "desktop": desktop,
    "browser": browser,
    "android": android,
    "android-png": lambda: android("png"),
    "android-compared": lambda: android(still_frames=False),
    "android-png-compared": lambda: android("png", still_frames=False),
}


def _ms(samples: list[float]) -> str:
    ordered = sorted(samples)
    p90 = ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))]
    return f"median {statistics.median(ordered):7.1f} ms  p90 {p90:7.1f} ms"


def bench(name: str, runs: int) -> None:
    with ENVS[name]() as target:
        env = target.env
        env.observe()  # warm up
        capture = []
        for _ in range(runs):
            start = time.perf_counter()
            env.capture()
            capture.append((time.perf_counter() - start) * 1000)
        observe = []
        for _ in range(runs):
            start = time.perf_counter()
            obs = env.observe()
            observe.append((time.perf_counter() - start) * 1000)
        w, h = obs.size
        print(f"{name}: {w}x{h}, {runs} runs each")
        print(f"  capture          {_ms(capture)}")
        poll_ms = env.settle.poll_interval_s * 1000
        print(f"  observe          {_ms(observe)}  (settle poll {poll_ms:g} ms)")
        for label, make in target.actions.items():
            act = []
            for i in range(runs):
                result = env.execute(make(i))
                if not result.ok:
                    raise SystemExit(f"{name}: {label} failed: {result.message}")
                act.append(result.elapsed_ms)
            print(f"  act {label:<12} {_ms(act)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", action="append", choices=sorted(ENVS),
                        help="env to measure (repeatable; default: all)")
    parser.add_argument("--runs", type=int, default=50, help="samples per figure (default 50)")
    args = parser.parse_args()
    for name in args.env or list(ENVS):
        bench(name, args.runs)


if __name__ == "__main__":
    main()
