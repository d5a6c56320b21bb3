"""What the browser env's wait for cross-origin frames costs on a page's first observe.

    python bench/frame_wait.py            # 10 loads per page and way
    python bench/frame_wait.py --runs 20

Before its first capture of a page, the env lets each frame of another origin that is in view
draw once (envs/browser.py, ``_frames_drawn``). Each page is loaded fresh and observed once, so
every figure includes that wait. "every frame" times the same pages with the viewport check
switched off (each cross-origin frame waited for, as at ac2d2b2): an offscreen frame does not
draw, so each costs the full ``FRAME_DRAW_WAIT_MS``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from envs.browser import BrowserEnv  # noqa: E402

FRAME = "<body style='margin:0'><button style='width:120px;height:40px'>Buy</button></body>"


def page(frames: int, offscreen: bool) -> str:
    """``frames`` iframes of other origins (one each), below the first screen or at its top."""
    spacer = "<div style='height:3000px'></div>" if offscreen else ""
    return "<body style='margin:0'>" + spacer + "".join(
        f"<iframe src='http://ads{i}.test/a.html' style='width:300px;height:150px'></iframe>"
        for i in range(frames)) + "</body>"


PAGES = {
    "no frames": page(0, False),
    "3 cross-origin frames in view": page(3, False),
    "3 cross-origin frames below the screen": page(3, True),
}


def first_observe_ms(env: BrowserEnv, html: str) -> float:
    def fulfil(route) -> None:
        host = route.request.url.split("/")[2]
        route.fulfill(content_type="text/html", body=html if host == "shop.test" else FRAME)

    env.page.route("http://*.test/**", fulfil)
    try:
        env.page.goto("http://shop.test/")
        start = time.perf_counter()
        env.observe()
        return (time.perf_counter() - start) * 1000
    finally:
        env.page.unroute("http://*.test/**", fulfil)
        env.page.goto("about:blank")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    print(f"first observe after a load, median of {runs} (ms), 1280x800 @1x")
    print(f"{'page':42} {'frames in view':>15} {'every frame':>12}")
    with BrowserEnv(viewport=(1280, 800)) as env:
        for name, html in PAGES.items():
            figures = []
            for every in (False, True):
                if every:  # the viewport check off: every cross-origin frame is waited for
                    env._in_view = lambda frame: True
                else:
                    vars(env).pop("_in_view", None)
                figures.append(statistics.median(first_observe_ms(env, html)
                                                 for _ in range(runs)))
            print(f"{name:42} {figures[0]:15.1f} {figures[1]:12.1f}")


if __name__ == "__main__":
    main()
