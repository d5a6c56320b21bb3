"""A self-contained HTML page of a trajectory: every screenshot with its action drawn on it.

The screenshots are embedded as data URIs (scaled down JPEGs), so the page opens from anywhere,
even after the trajectory directory is gone. Each screenshot carries an SVG overlay in the
screenshot's own pixel coordinates: a ring for a tap or click, an arrow for a swipe, drag or scroll,
and a label for typed text and keys. Beside it: the thought, the raw reply, the parse error or the
result, and the timings of each phase.
"""

from __future__ import annotations

import base64
import io
import json
from html import escape
from pathlib import Path
from typing import Any

from PIL import Image

from core.files import replace_text
from trajectories.progress import Track, untracked
from trajectories.reader import Trajectory, check_outside, load
from trajectories.records import StepRecord

VIEW_FILE = "view.html"
THUMB_WIDTH = 720  # readable when enlarged; keeps a 30-step page to a few MB

_POINT_KINDS = {"tap", "click", "double_click", "right_click", "move", "long_press"}
_LINE_KINDS = {"swipe", "drag"}


def write_view(directory: str | Path, out: str | Path | None = None,
               track: Track = untracked) -> Path:
    """Render ``directory``'s trajectory to ``out`` (default: view.html inside it)."""
    path = Path(out) if out is not None else Path(directory) / VIEW_FILE
    check_outside(path, directory)
    trajectory = load(directory)
    replace_text(path, render(trajectory, track))
    return path


def render(trajectory: Trajectory, track: Track = untracked) -> str:
    meta = trajectory.meta
    check = ""
    if meta.check is not None:
        verdict = "passed" if meta.check.success else "failed"
        check = (f"<dt>check</dt><dd class='check {verdict}'>{verdict}: "
                 f"{escape(meta.check.reason)}</dd>")
    rows = [
        ("goal", meta.goal), ("task", meta.task or "-"), ("env", meta.env),
        ("model", meta.model), ("dialect", meta.dialect), ("started", meta.started_at),
        ("steps", str(len(trajectory.steps))),
    ]
    header = "".join(f"<dt>{k}</dt><dd>{escape(v)}</dd>" for k, v in rows)
    status = f"<dt>status</dt><dd class='status {meta.status}'>{escape(meta.status)}" \
             f"{': ' + escape(meta.reason) if meta.reason else ''}</dd>"
    steps = "\n".join(_step(trajectory, s) for s in track(trajectory.steps, "drawing the steps"))
    return _PAGE.format(
        title=escape(f"{meta.goal} ({meta.status})"),
        header=header + status + check,
        steps=steps or "<p class='empty'>No step was recorded.</p>",
    )


def _step(trajectory: Trajectory, step: StepRecord) -> str:
    width, height = step.screen
    image_path = trajectory.path(step.image)
    if image_path.is_file():
        try:
            img = f"<img alt='step {step.step} screenshot' src='{_data_uri(image_path)}'>"
        # Cut short or overwritten (a copy that stopped), or over PIL's pixel limit: this one
        # only.
        except (OSError, Image.DecompressionBombError) as exc:
            img = (f"<div class='missing'>unreadable {escape(step.image)}: "
                   f"{escape(str(exc))}</div>")
    else:
        img = f"<div class='missing'>missing {escape(step.image)}</div>"
    overlay = _overlay(step.action, width, height)
    t = step.timings
    timings = " · ".join(
        f"{name} {value:.0f} ms" for name, value in
        (("observe", t.observe_ms), ("prompt", t.prompt_ms), ("model", t.model_ms),
         ("parse", t.parse_ms), ("act", t.act_ms))
    )
    tokens = f" · {step.prompt_tokens} prompt tokens" if step.prompt_tokens is not None else ""
    details = [f"<h2>Step {step.step}</h2>",
               f"<p class='meta'>{width}×{height}{tokens}<br>{timings}</p>"]
    if step.thought:
        details.append(f"<p class='thought'>{escape(step.thought)}</p>")
    if step.action is not None:
        action = {"kind": step.action["kind"], **step.action}  # kind first, as one reads it
        details.append(f"<p class='action'><code>{escape(json.dumps(action, ensure_ascii=False))}"
                       f"</code></p>")
    if step.parse_error:
        details.append(f"<p class='error'>parse error: {escape(step.parse_error)}</p>")
    if step.result is not None:
        cls = "result ok" if step.result.ok else "result error"
        details.append(f"<p class='{cls}'>{'✓' if step.result.ok else '✗'} "
                       f"{escape(step.result.message)}</p>")
    details.append(f"<details><summary>raw reply</summary><pre class='raw'>"
                   f"{escape(step.response)}</pre></details>")
    return (f"<section class='step' id='step-{step.step}'>"
            f"<div class='shot' title='click to enlarge' "
            f"style='aspect-ratio: {width} / {height}'>{img}"
            f"<svg viewBox='0 0 {width} {height}' preserveAspectRatio='none'>{overlay}</svg></div>"
            f"<div class='details'>{''.join(details)}</div></section>")


def _overlay(action: dict[str, Any] | None, width: int, height: int) -> str:
    """SVG marks for ``action`` in screenshot pixels."""
    if action is None:
        return ""
    kind = action["kind"]
    r = max(width, height) * 0.02
    stroke = f"stroke-width='{r / 3:.1f}'"
    if kind in _POINT_KINDS:
        x, y = action["x"], action["y"]
        ring = (f"<circle class='mark {kind}' cx='{x}' cy='{y}' r='{r:.1f}' {stroke}/>"
                f"<circle class='dot' cx='{x}' cy='{y}' r='{r / 4:.1f}'/>")
        return ring + _label(kind.replace("_", " "), x + r * 1.3, y, r)
    if kind in _LINE_KINDS:
        return _arrow(kind, action["x"], action["y"], action["x2"], action["y2"], r)
    if kind == "scroll":
        x = action["x"] if action.get("x") is not None else width // 2
        y = action["y"] if action.get("y") is not None else height // 2
        dx, dy = {"up": (0, -1), "down": (0, 1), "left": (-1, 0), "right": (1, 0)}[
            action["direction"]]
        length = min(width, height) * 0.25
        return _arrow("scroll", x, y, x + dx * length, y + dy * length, r)
    text = {
        "type": lambda a: f"type “{a['text']}”",
        "key": lambda a: f"key {a['key']}",
        "hotkey": lambda a: "hotkey " + "+".join(a["keys"]),
        "open_app": lambda a: f"open {a['app']}",
        "navigate": lambda a: f"go to {a['url']}",
        "wait": lambda a: f"wait {a['seconds']:g}s",
        "answer": lambda a: f"answer: {a['text']}",
        "terminate": lambda a: f"terminate: {a['status']}",
    }.get(kind, lambda a: kind)(action)
    return _label(text, width * 0.04, height * 0.06, r, cls=f"banner {kind}", room=width * 0.92)


def _arrow(kind: str, x1: float, y1: float, x2: float, y2: float, r: float) -> str:
    return (f"<line class='mark {kind}' x1='{x1}' y1='{y1}' x2='{x2}' y2='{y2}' "
            f"stroke-width='{r / 2.5:.1f}' marker-end='url(#arrowhead)'/>"
            f"<circle class='dot' cx='{x1}' cy='{y1}' r='{r / 2:.1f}'/>"
            + _label(kind, x1 + r, y1 - r, r))


def _label(text: str, x: float, y: float, r: float, cls: str = "label",
           room: float | None = None) -> str:
    size = r * 1.4
    fit = ""
    # A long typed text or answer would run past the screenshot, over the step's details: one
    # longer than ``room`` (at about 0.6 em a character) is squeezed to that width, and cut
    # first where squeezing would make it unreadable. The action line shows it whole.
    if room is not None and len(text) * size * 0.6 > room:
        fits = int(room / (size * 0.6))
        if len(text) > fits * 3 // 2:
            text = text[:fits * 3 // 2 - 1] + "…"
        fit = f" textLength='{room:.1f}' lengthAdjust='spacingAndGlyphs'"
    return (f"<text class='{cls}' x='{x:.1f}' y='{y:.1f}' font-size='{size:.1f}' "
            f"stroke-width='{size / 6:.1f}'{fit}>{escape(text)}</text>")


def _data_uri(path: Path) -> str:
    with Image.open(path) as image:
        image = image.convert("RGB")
        if image.width > THUMB_WIDTH:
            image = image.resize((THUMB_WIDTH, round(image.height * THUMB_WIDTH / image.width)),
                                 Image.Resampling.BILINEAR)
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=82)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 0; background: #f4f4f6; color: #222; }}
/* A reply, thought, goal or URL thousands of characters long without a space wraps anywhere
   instead of making the page that wide. */
header dd, .details {{ overflow-wrap: anywhere; min-width: 0; }}
header {{ background: #1f2430; color: #eee; padding: 16px 24px; }}
header dl {{ display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 0; }}
header dt {{ color: #9aa3b5; }}
.status.success, .check.passed {{ color: #7ee787; }}
.status.failure, .status.error, .check.failed {{ color: #ff7b72; }}
main {{ padding: 16px 24px; display: flex; flex-direction: column; gap: 16px; }}
.step {{ display: flex; gap: 20px; background: #fff; border-radius: 8px; padding: 12px;
        box-shadow: 0 1px 3px #0002; }}
.shot {{ position: relative; flex: 0 0 auto; width: 300px; cursor: zoom-in; }}
.shot.zoomed {{ position: fixed; z-index: 10; top: 2vh; left: 50%; transform: translateX(-50%);
               height: 96vh; width: auto; max-width: 96vw; cursor: zoom-out;
               box-shadow: 0 0 0 100vmax #000c; }}
.shot img {{ display: block; width: 100%; border-radius: 6px; }}
.shot svg {{ position: absolute; inset: 0; width: 100%; height: 100%; overflow: visible; }}
.mark {{ fill: none; stroke: #ff2d55; }}
.dot {{ fill: #ff2d55; }}
.label, .banner {{ fill: #fff; stroke: #000; paint-order: stroke; font-weight: 600;
                   dominant-baseline: middle; }}
.banner {{ fill: #ffd60a; }}
.details {{ flex: 1; min-width: 0; }}
.details h2 {{ margin: 0 0 4px; font-size: 16px; }}
.meta {{ color: #666; margin: 0 0 8px; }}
.thought {{ font-style: italic; }}
.error {{ color: #b3261e; }}
.ok {{ color: #1a7f37; }}
pre.raw {{ white-space: pre-wrap; background: #f6f8fa; padding: 8px; border-radius: 4px; }}
</style></head>
<body>
<svg width="0" height="0" style="position:absolute"><defs>
<marker id="arrowhead" viewBox="0 0 10 10" refX="6" refY="5" markerWidth="4" markerHeight="4"
 orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" fill="#ff2d55"/></marker>
</defs></svg>
<header><dl>{header}</dl></header>
<main>
{steps}
</main>
<script>
// Click a screenshot to enlarge it (its marks scale with it); click again or press Escape.
for (const shot of document.querySelectorAll(".shot")) {{
  shot.addEventListener("click", () => {{
    const open = shot.classList.contains("zoomed");
    document.querySelectorAll(".shot.zoomed").forEach(s => s.classList.remove("zoomed"));
    if (!open) shot.classList.add("zoomed");
  }});
}}
document.addEventListener("keydown", e => {{
  if (e.key === "Escape") document.querySelectorAll(".shot.zoomed").forEach(
    s => s.classList.remove("zoomed"));
}});
</script>
</body></html>
"""
