"""Where a scripted phone step's time goes, from observe to act, on the virtual phone.

Runs scripted episodes of a phone task through the composition root (runtime.episode.run: a fresh
virtual phone, a private adb server, AndroidEnv, the scripted policy, the recorder) with timers
wrapped around the env's calls and the phone's own chromium screenshot, and prints the median per
step of:

- observe->act: from the start of ``observe()`` to the end of ``execute()`` (steps 1.., so the
  first step's reset is left out);
- observe: the whole ``observe()``. On the virtual phone that is one ``vphone frame`` round trip
  (the phone waits until its page is still, then sends one PNG, or none when unchanged, with the
  foreground app: envs/still_frames.py), all of it under "settle". With ``--generic`` (the path a
  real phone takes) it is
  - screenshot: each ``capture()`` (adb ``screencap``: the phone's chromium PNG, converted to raw
    RGBA on the phone, 10 MB over the ADB transport, decoded on the host), times the captures;
  - chromium png: the part of the screenshot spent in chromium's ``Page.captureScreenshot``;
  - extras: ``dumpsys window`` for the foreground app;
  - settle: the rest (the 50 ms polls between frames, comparing frames, converting);
- between: observe's end to act's start (recording the screenshot PNG, the prompt, and the
  scripted policy reading the layout with ``uiautomator dump``);
- act: ``execute()`` (``input tap`` / ``input text`` over adb).

    .venv/bin/python bench/phone_step.py [--task phone/book-flight] [--episodes 2]
        [--generic [--screencap png]]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rich.console import Console  # noqa: E402

from runtime.build import open_env  # noqa: E402
from runtime.episode import run  # noqa: E402
from runtime.settings import RunSpec  # noqa: E402


class StepClock:
    """Per-step timings from wrappers around one env instance's methods."""

    def __init__(self) -> None:
        self.steps: list[dict[str, float]] = []
        self.current: dict[str, float] = defaultdict(float)
        self.observe_started: float | None = None
        self.png_ms: list[float] = []  # chromium screenshots, appended from the phone's thread

    def wrap(self, obj, name: str, key: str) -> None:
        original = getattr(obj, name)

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.current[key] += (time.perf_counter() - started) * 1000
                self.current[key + "_n"] += 1

        setattr(obj, name, timed)

    def instrument(self, env) -> None:
        self.wrap(env, "capture", "screenshot")
        self.wrap(env, "extras", "extras")
        self.wrap(env, "ui_tree", "uiautomator")
        observe, execute = env.observe, env.execute

        def timed_observe():
            self.observe_started = time.perf_counter()
            self.current["png_from"] = len(self.png_ms)
            result = observe()
            self.current["observe"] = (time.perf_counter() - self.observe_started) * 1000
            self.current["observe_end"] = time.perf_counter()
            return result

        def timed_execute(action):
            started = time.perf_counter()
            result = execute(action)
            end = time.perf_counter()
            step = dict(self.current)
            step["act"] = (end - started) * 1000
            if self.observe_started is not None:
                step["observe_to_act"] = (end - self.observe_started) * 1000
                step["between"] = (started - step["observe_end"]) * 1000
                step["chromium_png"] = sum(self.png_ms[int(step["png_from"]):])
            step["kind"] = action.kind  # type: ignore[assignment]
            self.steps.append(step)
            self.current = defaultdict(float)
            self.observe_started = None
            return result

        env.observe, env.execute = timed_observe, timed_execute


@contextlib.contextmanager
def chromium_timer(clock: StepClock):
    """Time the virtual phone's chromium screenshot (a class attribute, restored afterwards)."""
    from envs.virtual_phone.display import PhoneDisplay

    original = PhoneDisplay.png

    async def png(self):
        started = time.perf_counter()
        try:
            return await original(self)
        finally:
            clock.png_ms.append((time.perf_counter() - started) * 1000)

    PhoneDisplay.png = png
    try:
        yield
    finally:
        PhoneDisplay.png = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--task", default="phone/book-flight")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--screencap", choices=("raw", "png"), default="raw",
                        help="png: the phone's PNG as is (AndroidEnv(screencap='png'))")
    parser.add_argument("--generic", action="store_true",
                        help="compare screencap frames as on a real phone, not `vphone frame` "
                             "(AndroidEnv(still_frames=False))")
    args = parser.parse_args()

    clock = StepClock()

    @contextlib.contextmanager
    def instrumented(spec, console):
        with open_env(spec, console) as (env, device):
            if args.screencap == "png":
                env._raw_screencap = False  # what AndroidEnv(screencap="png") sets
            if args.generic:
                env.still_frames = False  # what AndroidEnv(still_frames=False) sets
            clock.instrument(env)
            yield env, device

    with tempfile.TemporaryDirectory() as out, chromium_timer(clock):
        for episode in range(args.episodes):
            spec = RunSpec(goal=None, model="scripted", env="android", device="virtual",
                           task=args.task, out=Path(out))
            outcome = run(spec, Console(quiet=True), env_factory=instrumented)
            check = outcome.result.check
            print(f"episode {episode}: {outcome.result.status}, {outcome.result.steps} steps, "
                  f"check {'passed' if check and check.success else 'failed'}")

    # Step 0's observe is the reset's; the loop times steps 1.. from a plain observe().
    steps = [s for s in clock.steps if "observe_to_act" in s and s.get("observe", 0) > 0]
    for s in steps:
        s["settle"] = s["observe"] - s.get("screenshot", 0.0) - s.get("extras", 0.0)
        s["screenshot_each"] = s.get("screenshot", 0.0) / max(s.get("screenshot_n", 0), 1)
    path = "generic" if args.generic else "still frames"
    print(f"\n{len(steps)} steps of {args.task} ({args.episodes} episodes, {path}, "
          f"{args.screencap} screencap); median ms per step:")
    rows = [
        ("observe->act", "observe_to_act"),
        ("  observe", "observe"),
        ("    screenshot (all captures)", "screenshot"),
        ("      of which chromium png", "chromium_png"),
        ("      captures per observe", "screenshot_n"),
        ("      one capture", "screenshot_each"),
        ("    extras (dumpsys window)", "extras"),
        ("    settle (polls, compare; still frames: all)", "settle"),
        ("  between (record, policy)", "between"),
        ("    of which uiautomator dump", "uiautomator"),
        ("  act", "act"),
    ]
    for label, key in rows:
        values = [s.get(key, 0.0) for s in steps]
        print(f"{label:34s} {statistics.median(values):9.1f}")


if __name__ == "__main__":
    main()
