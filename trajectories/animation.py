"""An animated GIF of a trajectory: each step's screenshot with its action drawn on it."""

from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw

from trajectories.progress import Track, untracked
from trajectories.reader import check_outside, load

GIF_WIDTH = 480  # frames are scaled to this width; a 30-step phone episode stays a few MB
FRAME_MS = 1200
MARK = (255, 45, 85)


def write_gif(directory: str | Path, out: str | Path | None = None,
              frame_ms: int = FRAME_MS, track: Track = untracked) -> Path:
    """Write ``directory``'s episode as a GIF (default: episode.gif inside it)."""
    path = Path(out) if out is not None else Path(directory) / "episode.gif"
    check_outside(path, directory, "--gif")
    trajectory = load(directory)
    frames = []
    for step in track(trajectory.steps, "drawing the frames"):
        shot = trajectory.path(step.image)
        if not shot.is_file():
            continue
        try:
            with Image.open(shot) as image:
                frame = image.convert("RGB")
        # Damaged (a copy cut short) or over PIL's pixel limit: left out like a missing one.
        except (OSError, Image.DecompressionBombError):
            continue
        scale = GIF_WIDTH / frame.width
        frame = frame.resize((GIF_WIDTH, round(frame.height * scale)), Image.Resampling.BILINEAR)
        _draw(frame, step.action, scale, f"{step.step}: {_caption(step.action, step.parse_error)}")
        frames.append(frame)
    if not frames:
        raise ValueError(f"{directory} has no screenshot to animate")
    frames[0].save(path, save_all=True, append_images=track(frames[1:], "writing the GIF"),
                   duration=frame_ms, loop=0)
    return path


def _caption(action: dict | None, parse_error: str | None) -> str:
    if action is None:
        return "parse error" if parse_error else "-"
    shown = {k: v for k, v in action.items() if k not in ("kind", "x", "y", "x2", "y2")
             and v not in (None, "", [])}
    return action["kind"] + (f" {shown}" if shown else "")


def _draw(frame: Image.Image, action: dict | None, scale: float, caption: str) -> None:
    draw = ImageDraw.Draw(frame)
    r = max(6, frame.width // 30)
    if action is not None and action.get("x") is not None and action.get("y") is not None:
        x, y = action["x"] * scale, action["y"] * scale
        if action.get("x2") is not None:
            x2, y2 = action["x2"] * scale, action["y2"] * scale
            draw.line([(x, y), (x2, y2)], fill=MARK, width=max(2, r // 3))
            draw.ellipse([x2 - r / 2, y2 - r / 2, x2 + r / 2, y2 + r / 2], fill=MARK)
        draw.ellipse([x - r, y - r, x + r, y + r], outline=MARK, width=max(2, r // 3))
    box = draw.textbbox((0, 0), caption)
    draw.rectangle([0, 0, frame.width, box[3] + 8], fill=(0, 0, 0))
    draw.text((4, 4), caption, fill=(255, 214, 10))
