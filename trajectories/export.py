"""Export trajectories as SFT data in the formats Qwen2-VL fine-tuning tools read.

- ``qwen2vl``: chat messages whose image parts are ``{"type": "image", "image": PATH}``, as the
  Qwen2-VL processor and qwen-vl-utils read them (with the recorded min/max_pixels, so the images
  are resized as the model saw them).
- ``llamafactory``: LLaMA-Factory's ShareGPT-style ``messages`` with one ``<image>`` placeholder per
  image in the text, and the ``images`` list in the same order.

Granularity ``step`` gives one sample per step whose reply parsed: that step's exact prompt, then
the reply as the assistant's answer. ``episode`` gives one sample per episode: the final step's
prompt, which holds the whole conversation so far as the model saw it, and its reply.

Replies that did not parse are left out: they are not examples to learn from. Trainers learn
every assistant turn whole, so an episode sample in the qwen2vl dialect (one continued assistant
turn) also teaches the runtime's ``*RESULT*`` text; step samples teach the replies alone.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal

from trajectories.reader import Trajectory, load
from trajectories.records import RecordedPart, StepRecord

Format = Literal["qwen2vl", "llamafactory"]
Granularity = Literal["step", "episode"]
FORMATS: tuple[str, ...] = ("qwen2vl", "llamafactory")
GRANULARITIES: tuple[str, ...] = ("step", "episode")
LLAMAFACTORY_IMAGE = "<image>"


class ExportError(ValueError):
    pass


@dataclass
class ExportSummary:
    samples: int
    episodes: int
    skipped_steps: int  # replies that did not parse


def samples(
    trajectory: Trajectory,
    format: Format,
    granularity: Granularity,
    image_path: Callable[[Path], str] = str,
) -> Iterator[dict[str, Any]]:
    """The SFT samples of one trajectory."""
    usable = [s for s in trajectory.steps if s.action is not None]
    if granularity == "episode":
        usable = usable[-1:] if usable and usable[-1] is trajectory.steps[-1] else []
    for step in usable:
        if format == "qwen2vl":
            yield _qwen2vl(trajectory, step, image_path)
        else:
            yield _llamafactory(trajectory, step, image_path)


def export(
    directories: Iterable[str | Path],
    format: Format,
    granularity: Granularity,
    out: str | Path,
    statuses: Iterable[str] | None = None,
    relative: bool = False,
) -> ExportSummary:
    """Write the samples of every trajectory to ``out`` (JSON Lines; a JSON array for ``.json``).

    ``statuses`` keeps only episodes that ended so (e.g. ``success``). ``relative`` writes image
    paths relative to the output file's folder instead of absolute ones.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; the formats are {', '.join(FORMATS)}")
    if granularity not in GRANULARITIES:
        raise ExportError(f"unknown granularity {granularity!r}; use step or episode")
    out = Path(out)
    keep = set(statuses) if statuses else None
    base = out.resolve().parent

    def image_path(path: Path) -> str:
        path = path.resolve()
        return os.path.relpath(path, base) if relative else str(path)

    rows: list[dict[str, Any]] = []
    episodes = skipped = 0
    for directory in directories:
        trajectory = load(directory)
        if keep is not None and trajectory.meta.status not in keep:
            continue
        episodes += 1
        skipped += sum(s.action is None for s in trajectory.steps)
        rows.extend(samples(trajectory, format, granularity, image_path))
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        if out.suffix == ".json":
            json.dump(rows, f, ensure_ascii=False, indent=1)
        else:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return ExportSummary(samples=len(rows), episodes=episodes, skipped_steps=skipped)


def _image(trajectory: Trajectory, part: RecordedPart, step: StepRecord) -> Path:
    path = trajectory.path(part.image or "")
    if not path.is_file():
        raise ExportError(f"{trajectory.directory}: step {step.step} refers to a missing image "
                          f"{part.image}")
    return path


def _qwen2vl(
    trajectory: Trajectory, step: StepRecord, image_path: Callable[[Path], str]
) -> dict[str, Any]:
    meta = trajectory.meta
    messages = []
    for message in step.prompt.messages:
        content = []
        for part in message.content:
            if part.type == "image":
                content.append({
                    "type": "image",
                    "image": image_path(_image(trajectory, part, step)),
                    "min_pixels": meta.min_pixels,
                    "max_pixels": meta.max_pixels,
                })
            else:
                content.append({"type": "text", "text": part.text or ""})
        messages.append({"role": message.role, "content": content})
    answer = {"type": "text", "text": step.response}
    if step.prompt.continue_final_message:
        messages[-1]["content"].append(answer)  # the model continued this assistant turn
    else:
        messages.append({"role": "assistant", "content": [answer]})
    return {"messages": messages}


def _llamafactory(
    trajectory: Trajectory, step: StepRecord, image_path: Callable[[Path], str]
) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    images: list[str] = []
    for message in step.prompt.messages:
        text = []
        for part in message.content:
            if part.type == "image":
                images.append(image_path(_image(trajectory, part, step)))
                text.append(LLAMAFACTORY_IMAGE)
            else:
                if LLAMAFACTORY_IMAGE in (part.text or ""):
                    raise ExportError(
                        f"{trajectory.directory}: step {step.step}'s prompt text contains "
                        f"{LLAMAFACTORY_IMAGE!r}, which LLaMA-Factory would read as an image"
                    )
                text.append(part.text or "")
        messages.append({"role": message.role, "content": "".join(text)})
    if LLAMAFACTORY_IMAGE in step.response:
        raise ExportError(f"{trajectory.directory}: step {step.step}'s reply contains "
                          f"{LLAMAFACTORY_IMAGE!r}")
    if step.prompt.continue_final_message:
        messages[-1]["content"] += step.response
    else:
        messages.append({"role": "assistant", "content": step.response})
    return {"messages": messages, "images": images}
