"""Export trajectories as SFT data in the formats Qwen2-VL fine-tuning tools read.

The trained tokens of a sample are exactly text the model wrote: a step's reply. The runtime's
feedback (qwen2vl's ``*RESULT*: ...``), screenshots, the system prompt and the user turn never
are. docs/export.md says how each trainer reads the formats below.

- ``qwen2vl``: chat messages whose image parts are ``{"type": "image", "image": PATH}`` (with the
  recorded min/max_pixels, so images are resized as the model saw them). Every assistant message
  carries ``"loss": true|false``. Where the model continued one assistant turn (the qwen2vl
  dialect), the turn is split into consecutive assistant messages: the replies (``loss`` true)
  and the runtime's text between them (``loss`` false); joined, they are the turn as the model
  saw it.
- ``llamafactory``: LLaMA-Factory's ShareGPT ``messages`` with one ``<image>`` placeholder per
  image and the ``images`` list in the same order. The runtime's text inside a continued turn is
  an ``observation`` message, which LLaMA-Factory never trains.

Granularity ``step`` gives one sample per step whose reply parsed: that step's exact prompt, then
its reply, the only trained text (LLaMA-Factory needs ``mask_history: true`` for that, since the
history's replies are assistant turns too). ``episode`` gives one sample per episode: the final
step's prompt and reply, with every parsed reply shown as a model turn trained.

Replies that did not parse are never trained. A LLaMA-Factory episode sample would have to train
one (it has no per-turn flag), so such episodes are left out of that export and counted.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, get_args

from trajectories.reader import Trajectory, TrajectoryError, load
from trajectories.records import Meta, Status, StepRecord

Format = Literal["qwen2vl", "llamafactory"]
Granularity = Literal["step", "episode"]
FORMATS: tuple[str, ...] = ("qwen2vl", "llamafactory")
GRANULARITIES: tuple[str, ...] = ("step", "episode")
STATUSES: tuple[str, ...] = get_args(Status)
LLAMAFACTORY_IMAGE = "<image>"
_IMAGE_MARK = "\ue000"  # stands for an image while a turn's text is split (private use area)


class ExportError(ValueError):
    pass


@dataclass
class ExportSummary:
    samples: int
    episodes: int
    skipped_steps: int  # replies that did not parse
    images: int = 0
    duplicates: int = 0  # samples --dedupe dropped
    untrainable_episodes: int = 0  # llamafactory episode samples that would train a bad reply
    skipped: list[str] = field(default_factory=list)  # "DIR: why" for trajectories left out
    tokens: list[int] = field(default_factory=list)  # recorded tokens of each sample, when known


@dataclass
class Segment:
    """A message, or a piece of a continued assistant turn. Parts are text or an image file."""

    role: Literal["system", "user", "assistant"]
    parts: list[str | Path]
    loss: bool = False
    runtime: bool = False  # text the runtime wrote inside an assistant turn (not the model)


def effective_status(meta: Meta) -> str:
    """The episode's status, where a task check that ran overrules the agent's own claim."""
    if meta.check is not None:
        if meta.check.success:
            return "success"
        if meta.status in ("success", "answered"):
            return "failure"
    return meta.status


def segments(trajectory: Trajectory, step: StepRecord, episode: bool) -> list[Segment]:
    """The step's prompt and reply as segments with loss flags.

    Earlier replies inside the prompt are found in order; in an ``episode`` sample those that
    parsed are trained, in a step sample none is.
    """
    index = next(i for i, s in enumerate(trajectory.steps) if s is step)
    history = trajectory.steps[:index]
    pending = [(s.response.strip(), episode and s.action is not None) for s in history]
    out: list[Segment] = []
    for message in step.prompt.messages:
        parts: list[str | Path] = []
        for part in message.content:
            parts.append(_image(trajectory, part.image, step) if part.type == "image"
                         else part.text or "")
        if message.role == "assistant":
            out += _split_replies(parts, pending)
        else:
            out.append(Segment(message.role, parts))
    out.append(Segment("assistant", [step.response], loss=True))
    return out


def _split_replies(parts: list[str | Path], pending: list[tuple[str, bool]]) -> list[Segment]:
    """Cut an assistant turn of the prompt into the model's replies and the runtime's text."""
    images = [p for p in parts if isinstance(p, Path)]
    text = "".join(_IMAGE_MARK if isinstance(p, Path) else p for p in parts)
    pieces: list[tuple[str, bool, bool]] = []  # text, is a reply, trained
    cursor = 0
    while pending:
        reply, trained = pending[0]
        at = text.find(reply, cursor) if reply else -1
        if at < 0:
            break  # not shown in this turn (a later turn, or the history window dropped it)
        pending.pop(0)
        pieces += [(text[cursor:at], False, False), (reply, True, trained)]
        cursor = at + len(reply)
    pieces.append((text[cursor:], False, False))
    out: list[Segment] = []
    image_iter = iter(images)
    for piece, is_reply, trained in pieces:
        if not piece:
            continue
        seg_parts: list[str | Path] = []
        for i, chunk in enumerate(piece.split(_IMAGE_MARK)):
            if i:
                seg_parts.append(next(image_iter))
            if chunk:
                seg_parts.append(chunk)
        out.append(Segment("assistant", seg_parts, loss=trained, runtime=not is_reply))
    return out


def samples(
    trajectory: Trajectory,
    format: Format,
    granularity: Granularity,
    image_path: Callable[[Path], str] = str,
) -> Iterator[dict[str, Any]]:
    """The SFT samples of one trajectory."""
    for step, segs in sample_segments(trajectory, granularity):
        yield render(trajectory, step, segs, format, image_path)


def sample_segments(
    trajectory: Trajectory, granularity: Granularity
) -> Iterator[tuple[StepRecord, list[Segment]]]:
    usable = [s for s in trajectory.steps if s.action is not None]
    if granularity == "episode":
        usable = usable[-1:] if usable and usable[-1] is trajectory.steps[-1] else []
    for step in usable:
        yield step, segments(trajectory, step, episode=granularity == "episode")


def render(
    trajectory: Trajectory,
    step: StepRecord,
    segs: list[Segment],
    format: Format,
    image_path: Callable[[Path], str] = str,
) -> dict[str, Any]:
    if format == "qwen2vl":
        return _qwen2vl(trajectory.meta, segs, image_path)
    return _llamafactory(trajectory, step, segs, image_path)


def trains_unparsed_reply(trajectory: Trajectory, segs: list[Segment]) -> bool:
    """Whether a model turn of the sample holds a reply that did not parse (LLaMA-Factory
    trains every assistant turn of an episode sample)."""
    return any(s.role == "assistant" and not s.runtime and not s.loss for s in segs)


def export(
    directories: Iterable[str | Path],
    format: Format,
    granularity: Granularity,
    out: str | Path,
    statuses: Iterable[str] | None = ("success",),
    relative: bool = False,
    strict: bool = False,
    dedupe: bool = False,
) -> ExportSummary:
    """Write the samples of every trajectory to ``out`` (JSON Lines; a JSON array for ``.json``).

    ``statuses`` keeps only episodes that ended so, a passed task check counting as ``success``
    and a failed one as ``failure`` (None keeps all). A trajectory that cannot be read is left
    out and named in ``summary.skipped`` unless ``strict``. ``dedupe`` drops samples identical
    to an earlier one (same text, same image bytes). ``relative`` writes image paths relative to
    the output file's folder. Exporting no sample at all is an ExportError.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; the formats are {', '.join(FORMATS)}")
    if granularity not in GRANULARITIES:
        raise ExportError(f"unknown granularity {granularity!r}; use step or episode")
    keep = set(statuses) if statuses is not None else None
    if keep is not None and (unknown := sorted(keep - set(STATUSES))):
        raise ExportError(f"unknown status {', '.join(map(repr, unknown))}; use "
                          f"{', '.join(s for s in STATUSES if s != 'running')} or running")
    out = Path(out)
    base = out.resolve().parent

    def image_path(path: Path) -> str:
        path = path.resolve()
        return os.path.relpath(path, base) if relative else str(path)

    summary = ExportSummary(samples=0, episodes=0, skipped_steps=0)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for directory in directories:
        try:
            trajectory = load(directory)
            if keep is not None and effective_status(trajectory.meta) not in keep:
                continue
            made = []
            for step, segs in sample_segments(trajectory, granularity):
                if (format == "llamafactory" and granularity == "episode"
                        and trains_unparsed_reply(trajectory, segs)):
                    summary.untrainable_episodes += 1
                    continue
                made.append((step, segs, render(trajectory, step, segs, format, image_path)))
        except (TrajectoryError, ExportError) as exc:
            if strict:
                raise
            summary.skipped.append(str(exc))
            continue
        summary.episodes += 1
        summary.skipped_steps += sum(s.action is None for s in trajectory.steps)
        for step, segs, row in made:
            if dedupe:
                key = _fingerprint(segs)
                if key in seen:
                    summary.duplicates += 1
                    continue
                seen.add(key)
            rows.append(row)
            summary.images += sum(isinstance(p, Path) for s in segs for p in s.parts)
            if step.prompt_tokens is not None:
                summary.tokens.append(step.prompt_tokens + _reply_tokens(step))
    summary.samples = len(rows)
    if not rows:
        why = "; ".join(summary.skipped) or (
            "no episode has the status " + " or ".join(sorted(keep)) if keep else
            "no step has a parsed reply")
        raise ExportError(f"nothing to export: {why} (--status widens the filter)")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        if out.suffix == ".json":
            json.dump(rows, f, ensure_ascii=False, indent=1)
        else:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, out)
    return summary


def _reply_tokens(step: StepRecord) -> int:
    """The reply's token count as the policy reported it (0 when it did not)."""
    value = step.usage.get("completion_tokens", 0)
    return value if isinstance(value, int) else 0


def _fingerprint(segs: list[Segment]) -> str:
    digest = hashlib.sha256()
    for seg in segs:
        digest.update(f"\0{seg.role}{seg.loss}".encode())
        for part in seg.parts:
            digest.update(part.read_bytes() if isinstance(part, Path) else part.encode())
    return digest.hexdigest()


def _image(trajectory: Trajectory, name: str | None, step: StepRecord) -> Path:
    path = trajectory.path(name or "")
    if not path.is_file():
        raise ExportError(f"{trajectory.directory}: step {step.step} refers to a missing image "
                          f"{name}")
    return path


def _qwen2vl(meta: Meta, segs: list[Segment], image_path: Callable[[Path], str]) -> dict:
    messages = []
    for seg in segs:
        content = [
            {"type": "image", "image": image_path(p), "min_pixels": meta.min_pixels,
             "max_pixels": meta.max_pixels} if isinstance(p, Path) else {"type": "text", "text": p}
            for p in seg.parts
        ]
        message: dict[str, Any] = {"role": seg.role, "content": content}
        if seg.role == "assistant":
            message["loss"] = seg.loss
        messages.append(message)
    return {"messages": messages}


def _llamafactory(
    trajectory: Trajectory, step: StepRecord, segs: list[Segment],
    image_path: Callable[[Path], str],
) -> dict[str, Any]:
    messages: list[dict[str, str]] = []
    images: list[str] = []
    for seg in segs:
        text = []
        for part in seg.parts:
            if isinstance(part, Path):
                images.append(image_path(part))
                text.append(LLAMAFACTORY_IMAGE)
            elif LLAMAFACTORY_IMAGE in part:
                raise ExportError(
                    f"{trajectory.directory}: step {step.step}'s prompt or reply contains "
                    f"{LLAMAFACTORY_IMAGE!r}, which LLaMA-Factory would read as an image")
            else:
                text.append(part)
        role = "observation" if seg.runtime else seg.role
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "".join(text)
        else:
            messages.append({"role": role, "content": "".join(text)})
    return {"messages": messages, "images": images}
