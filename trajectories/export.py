"""Export trajectories as SFT data in the formats Qwen2-VL fine-tuning tools read.

The trained tokens of a sample are exactly text the model wrote: a step's reply, and the end of
its turn only where the model wrote that (not where generation stopped it at a stop string:
``usage.stop``). The runtime's
feedback (qwen2vl's ``*RESULT*: ...``), screenshots, the system prompt and the user turn never
are. docs/export.md says how each trainer reads the formats below.

- ``qwen2vl``: chat messages whose image parts are ``{"type": "image", "image": PATH}`` (with the
  recorded min/max_pixels, so images are resized as the model saw them). Every assistant message
  carries ``"loss": true|false``. Where the model continued one assistant turn (the qwen2vl
  dialect), the turn is split into consecutive assistant messages: the trained replies (``loss``
  true) and the untrained text between them (``loss`` false: the runtime's, with past replies
  shown as context, in one message so that it tokenizes as at run time); joined, they are the
  turn as the model saw it. A reply that did not end the model's turn is followed by an empty
  ``loss`` false assistant message, so the ``<|im_end|>`` after it is not trained.
- ``llamafactory``: LLaMA-Factory's ShareGPT ``messages`` with one ``<image>`` placeholder per
  image and the ``images`` list in the same order. The runtime's text inside a continued turn is
  an ``observation`` message, which LLaMA-Factory never trains.

Granularity ``step`` gives one sample per step whose reply parsed: that step's exact prompt, then
its reply, the only trained text (LLaMA-Factory needs ``mask_history: true`` for that, since the
history's replies are assistant turns too). ``episode`` gives one sample per episode: the final
step's prompt and reply, with every parsed reply shown as a model turn trained.

Replies that did not parse are never trained, nor replies whose action the safety gate refused,
nor replies recorded with a secret's placeholder in place of its value (``response_masked``),
nor replies that spell a token that frames a chat (``<|im_end|>``: the trainer's tokenizer would
read it as one). A LLaMA-Factory episode sample would have to train such a reply (it has no
per-turn flag), so those episodes are left out of that export and counted.

The dialects mark the replies they show again in later prompts (``TextPart.reply``), so what the
model wrote is known, not searched for; recordings made before the marks are searched.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Literal, get_args

from PIL import Image

from core.files import replacing
from core.special_tokens import FRAMING_TOKENS, unframed
from trajectories.progress import Track, untracked
from trajectories.reader import Trajectory, TrajectoryError, check_outside, load
from trajectories.records import Meta, Status, StepRecord

Format = Literal["qwen2vl", "llamafactory"]
Granularity = Literal["step", "episode"]
FORMATS: tuple[str, ...] = ("qwen2vl", "llamafactory")
GRANULARITIES: tuple[str, ...] = ("step", "episode")
STATUSES: tuple[str, ...] = get_args(Status)
LLAMAFACTORY_IMAGE = "<image>"
#: The placeholders LLaMA-Factory's Qwen2-VL plugin expands: one in a prompt or reply's own text
#: would be read as a media item the sample does not have.
LLAMAFACTORY_PLACEHOLDERS = (LLAMAFACTORY_IMAGE, "<video>", "<audio>")


class ExportError(ValueError):
    pass


@dataclass
class ExportSummary:
    samples: int
    episodes: int
    skipped_steps: int  # replies that cannot be trained (``trainable``)
    images: int = 0
    duplicates: int = 0  # samples --dedupe dropped
    untrainable_episodes: int = 0  # llamafactory episode samples that would train a bad reply
    skipped: list[str] = field(default_factory=list)  # "DIR: why" for trajectories left out
    #: How many episodes of each status (``effective_status``) --status left out.
    filtered: Counter[str] = field(default_factory=Counter)
    tokens: list[int] = field(default_factory=list)  # recorded tokens of each sample, when known
    #: The (min_pixels, max_pixels) resize budgets the exported screenshots were seen at, and the
    #: largest screenshot's pixel count: LLaMA-Factory has one budget for a whole dataset and
    #: shrinks screenshots over ``image_max_pixels`` itself (docs/export.md).
    pixel_budgets: set[tuple[int, int]] = field(default_factory=set)
    largest_image: int = 0


@dataclass
class Segment:
    """A message, or a piece of a continued assistant turn. Parts are text or an image file."""

    role: Literal["system", "user", "assistant"]
    parts: list[str | Path]
    loss: bool = False
    runtime: bool = False  # text the runtime wrote inside an assistant turn (not the model)
    #: For a sample's reply: False where generation stopped it at a stop string (or an endpoint
    #: did not say why it stopped), so the ``<|im_end|>`` after it is not the model's to train.
    model_ended: bool = True


def effective_status(meta: Meta) -> str:
    """The episode's status: ``success`` where the agent ended claiming it (or answering) and a
    task check that ran agrees; a claim the check refutes is ``failure``. An episode the check
    passes but the agent did not end so (it said failure, ran out of steps) keeps its own
    status: its replies are no example of finishing the task."""
    claimed = meta.status in ("success", "answered")
    if meta.check is None or not claimed:
        return meta.status
    return "success" if meta.check.success else "failure"


def segments(trajectory: Trajectory, step: StepRecord, episode: bool) -> list[Segment]:
    """The step's prompt and reply as segments with loss flags.

    Earlier replies inside the prompt are taken in order; in an ``episode`` sample those that
    can be trained (``trainable``) are, in a step sample none is.
    """
    index = next(i for i, s in enumerate(trajectory.steps) if s is step)
    # A prompt shows a past reply stripped. Its tokens are the model's only where the strip
    # left its start alone, and the <|im_end|> after it only where it left the end alone.
    # Text as the model read it (agent.policies.base.hf_messages): spelled framing tokens out.
    pending = [Shown(unframed(s.response.strip()),
                     episode and trainable(s) and s.response == s.response.lstrip(),
                     ended_by_model(s) and s.response == s.response.rstrip())
               for s in trajectory.steps[:index]]
    messages = [(message.role, [
        _image(trajectory, part.image, step) if part.type == "image"
        else (unframed(part.text or ""), part.reply) for part in message.content])
        for message in step.prompt.messages]
    turns = [pieces for role, pieces in messages if role == "assistant"]
    marked = any(p.reply for m in step.prompt.messages for p in m.content)
    # The history shows the most recent past steps (agent.history), so the replies a prompt
    # shows are those of the last steps, not the first steps with the same text.
    if marked:
        shown = sum(isinstance(p, tuple) and p[1] for pieces in turns for p in pieces)
        pending = pending[max(0, len(pending) - shown):]
    else:
        pending, turns = _shown_suffix(turns, pending)
    found = iter(turns)
    out: list[Segment] = []
    for role, pieces in messages:
        if role == "assistant":
            out += _assistant_turn(trajectory, step, next(found), pending)
        else:
            out.append(Segment(role, [p if isinstance(p, Path) else p[0] for p in pieces]))
    out.append(Segment("assistant", [step.response], loss=True, model_ended=ended_by_model(step)))
    return out


def ended_by_model(step: StepRecord) -> bool:
    """Whether the model ended its turn after the step's reply: no stop string did (or may have,
    where an endpoint did not say), which the step records as ``usage.stop``."""
    return "stop" not in step.usage


#: A prompt part: an image file, or text and whether it is an earlier reply.
Piece = Path | tuple[str, bool]


@dataclass
class Shown:
    """An earlier reply that a prompt may show: its text, whether a sample trains it there, and
    whether the model ended its turn after it."""

    text: str
    trained: bool
    ended: bool


def _assistant_turn(trajectory: Trajectory, step: StepRecord, pieces: list[Piece],
                    pending: list[Shown]) -> list[Segment]:
    """An assistant turn of the prompt as the model's replies and the runtime's text between
    them. A reply is its own segment even when empty, so the turns keep their order."""
    out: list[Segment] = []
    runtime: list[str | Path] = []
    for piece in pieces:
        if isinstance(piece, Path) or not piece[1]:
            text = piece if isinstance(piece, Path) else piece[0]
            if text:
                runtime.append(text)
            continue
        if not pending or pending[0].text != piece[0]:
            raise ExportError(f"{trajectory.directory}: step {step.step}'s prompt shows a reply "
                              f"no earlier step wrote: {piece[0][:60]!r}")
        shown = pending.pop(0)
        if runtime:
            out.append(Segment("assistant", runtime, runtime=True))
            runtime = []
        out.append(Segment("assistant", [piece[0]] if piece[0] else [], loss=shown.trained,
                           model_ended=shown.ended))
    if runtime:
        out.append(Segment("assistant", runtime, runtime=True))
    return out


def trainable(step: StepRecord) -> bool:
    """Whether a step's reply may be trained: it parsed, the safety gate did not refuse its
    action (a person or the run's rules said no to it), the token limit did not cut it off (the
    trainer would close it with an end the model never wrote), and it spells none of the tokens
    that frame a chat. A trainer's tokenizer would read ``<|im_end|>`` in it as that special
    token, which the model never wrote as one (a local run drops those tokens from replies).
    Nor is a reply that held a secret's value: its record has the placeholder there instead."""
    return (step.action is not None
            and not step.response_masked
            and (step.gate is None or step.gate.decision != "denied")
            and not step.usage.get("truncated")
            and not any(t in step.response for t in FRAMING_TOKENS))


def _find_replies(pieces: list[Piece], waiting: list[str]) -> list[Piece]:
    """The pieces with the replies in ``waiting`` cut out and marked (and taken off it), for a
    recording made before prompts marked them: each reply is searched for in order, in one text
    part. The first place a reply's text appears is taken, so a reply that runtime text before
    it quotes is misplaced; recordings with marks do not search."""
    out: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, Path):
            out.append(piece)
            continue
        text, cursor = piece[0], 0
        while waiting and (at := text.find(waiting[0], cursor)) >= 0:
            out += [(text[cursor:at], False), (waiting[0], True)]
            cursor = at + len(waiting.pop(0))
        out.append((text[cursor:], False))
    return out


def _shown_suffix(turns: list[list[Piece]], pending: list[Shown]
                  ) -> tuple[list[Shown], list[list[Piece]]]:
    """For a recording without marks: the most past steps, counted back from the last, whose
    replies the assistant turns show in order, and the turns with those replies marked."""
    for first in range(len(pending)):
        waiting = [shown.text for shown in pending[first:]]
        found = [_find_replies(pieces, waiting) for pieces in turns]
        if not waiting:
            return pending[first:], found
    return [], turns  # the prompt shows no past reply


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
    usable = [s for s in trajectory.steps if trainable(s)]
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


def trains_unparsed_reply(segs: list[Segment]) -> bool:
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
    track: Track = untracked,
) -> ExportSummary:
    """Write the samples of every trajectory to ``out`` (JSON Lines; a JSON array for ``.json``).

    ``statuses`` keeps only episodes that ended so (``effective_status``; None keeps all). A
    trajectory that cannot be read is left out and named in ``summary.skipped`` unless
    ``strict``. ``dedupe`` drops samples identical to an earlier one (same text, same image
    bytes). ``relative`` writes image paths relative to the output file's folder. Exporting no
    sample at all is an ExportError.
    """
    if format not in FORMATS:
        raise ExportError(f"unknown format {format!r}; the formats are {', '.join(FORMATS)}")
    if granularity not in GRANULARITIES:
        raise ExportError(f"unknown granularity {granularity!r}; use step or episode")
    keep = set(statuses) if statuses is not None else None
    if keep is not None and (unknown := sorted(keep - set(STATUSES) - {"all"})):
        raise ExportError(f"unknown status {', '.join(map(repr, unknown))}; use "
                          f"{', '.join(s for s in STATUSES if s != 'running')}, running or all")
    if keep is not None and "all" in keep:
        keep = None
    # Through a symbolic link: the file written is the one the relative image paths start from.
    given, out = Path(out), Path(out).resolve()
    if out.is_dir():
        raise ExportError(f"--out {out} is a folder; give a file name, such as {out / 'sft.jsonl'}")
    # A folder named twice (`runs/a runs/a/`, a shell glob and the folder again) is one
    # episode, exported once.
    unique: dict[Path, Path] = {}
    for directory in directories:
        unique.setdefault(Path(directory).resolve(), Path(directory))
    directories = list(unique.values())
    for directory in directories:
        check_outside(out, directory)
    base = out.parent

    def image_path(path: Path) -> str:
        path = path.resolve()
        return os.path.relpath(path, base) if relative else str(path)

    summary = ExportSummary(samples=0, episodes=0, skipped_steps=0)
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    for directory in track(directories, "reading trajectories"):
        try:
            trajectory = load(directory)
            status = effective_status(trajectory.meta)
            if keep is not None and status not in keep:
                summary.filtered[status] += 1
                continue
            made = []
            for step, segs in sample_segments(trajectory, granularity):
                if (format == "llamafactory" and granularity == "episode"
                        and trains_unparsed_reply(segs)):
                    summary.untrainable_episodes += 1
                    continue
                made.append((step, segs, render(trajectory, step, segs, format, image_path)))
        except (TrajectoryError, ExportError) as exc:
            if strict:
                raise
            summary.skipped.append(str(exc))
            continue
        summary.episodes += 1
        summary.skipped_steps += sum(not trainable(s) for s in trajectory.steps)
        if made:
            summary.pixel_budgets.add((trajectory.meta.min_pixels, trajectory.meta.max_pixels))
            summary.largest_image = max(summary.largest_image,
                                        *(s.screen[0] * s.screen[1] for s in trajectory.steps))
        for step, segs, row in made:
            if dedupe:
                key = _fingerprint(segs, trajectory.meta)
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
        raise ExportError(f"nothing to export: {_why_nothing(summary, keep)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as f:  # a full disk, Ctrl-C: no half-written file is left beside --out
        if given.suffix.lower() == ".json":  # as LLaMA-Factory reads a file by its extension
            json.dump(rows, f, ensure_ascii=False, indent=1)
        else:
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return summary


def _why_nothing(summary: ExportSummary, keep: set[str] | None) -> str:
    why = list(summary.skipped)  # the trajectories that could not be read
    if not summary.episodes and keep and (summary.filtered or not why):
        found = ", ".join(f"{status} {n}" for status, n in sorted(summary.filtered.items()))
        why.append(f"no episode has the status {' or '.join(sorted(keep))} (--status widens "
                   f"the filter); the episodes' statuses: {found or 'none'}. An answer or a "
                   "claimed success that a task check judged counts as success or failure")
    if why:
        return "; ".join(why)
    if summary.untrainable_episodes:
        return (f"{summary.untrainable_episodes} episode(s) show a model turn that cannot be "
                "trained, which a LLaMA-Factory episode sample would train: a reply that did not "
                "parse, was refused or cut off, spells a chat token, or that later prompts show "
                "without the spaces or line breaks it began with (--granularity step or "
                "--format qwen2vl leave it out)")
    return ("no step has a reply that can be trained: one that parsed, was not refused by the "
            "safety gate, was not cut off by the token limit, held no secret's value and spells "
            "no chat token")


def _reply_tokens(step: StepRecord) -> int:
    """The reply's token count as the policy reported it, or as the run's tokenizer counted a
    reply no model generated (0 when neither did)."""
    value = step.usage.get("new_tokens", step.usage.get("reply_tokens", 0))
    return value if isinstance(value, int) else 0


def _fingerprint(segs: list[Segment], meta: Meta) -> str:
    digest = hashlib.sha256()
    # The pixel budget too: the same image bytes at another budget are other model inputs.
    digest.update(f"{meta.min_pixels},{meta.max_pixels}".encode())
    for seg in segs:
        digest.update(f"\0{seg.role}{seg.loss}{seg.model_ended}".encode())
        for part in seg.parts:
            if isinstance(part, Path):
                stat = part.stat()
                digest.update(b"\0image" + _file_digest(part, stat.st_mtime_ns, stat.st_size))
            else:
                digest.update(b"\0text" + part.encode())
    return digest.hexdigest()


@functools.lru_cache(maxsize=65_536)
def _file_digest(path: Path, mtime_ns: int, size: int) -> bytes:
    """The SHA-256 of the file at ``path``, read once per file as it is (its time and size): a
    history shows each screenshot in several prompts."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").digest()


def _image(trajectory: Trajectory, name: str | None, step: StepRecord) -> Path:
    path = trajectory.path(name or "")
    if not path.is_file():
        raise ExportError(f"{trajectory.directory}: step {step.step} refers to a missing image "
                          f"{name}")
    stat = path.stat()
    problem = _unreadable(path, stat.st_mtime_ns, stat.st_size)
    if problem is not None:
        raise ExportError(f"{trajectory.directory}: step {step.step} refers to an unreadable "
                          f"image {name} ({problem})")
    return path


@functools.lru_cache(maxsize=65_536)
def _unreadable(path: Path, mtime_ns: int, size: int) -> str | None:
    """Why a trainer could not open the image at ``path`` (a file cut short or overwritten), or
    None; ``verify`` reads every chunk without decoding the pixels (ms, not tens). Once per
    file as it is (its time and size): a history shows each screenshot in several prompts."""
    try:
        with Image.open(path) as image:
            image.verify()
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        return str(exc)
    return None


def _qwen2vl(meta: Meta, segs: list[Segment], image_path: Callable[[Path], str]) -> dict:
    messages = []
    for seg, after in zip(segs, [*segs[1:], None]):
        content = [
            {"type": "image", "image": image_path(p), "min_pixels": meta.min_pixels,
             "max_pixels": meta.max_pixels} if isinstance(p, Path) else {"type": "text", "text": p}
            for p in seg.parts
        ]
        if (seg.role == "assistant" and not seg.loss and messages
                and messages[-1]["role"] == "assistant" and not messages[-1]["loss"]):
            # Untrained text of one turn (the runtime's, and past replies shown as context) is
            # one message: a trainer tokenizes each message on its own, and the model read it
            # as one text ("*RETURN*: " and a past reply's first word made one token).
            messages[-1]["content"] += content
            continue
        message: dict[str, Any] = {"role": seg.role, "content": content}
        if seg.role == "assistant":
            message["loss"] = seg.loss
        messages.append(message)
        if seg.loss and not seg.model_ended and (after is None or after.role != "assistant"):
            # The turn goes on after the reply, untrained: the <|im_end|> that closes it is
            # the template's, not the model's (docs/export.md, step 4).
            messages.append({"role": "assistant", "loss": False, "content": []})
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
            elif found := [p for p in LLAMAFACTORY_PLACEHOLDERS if p in part]:
                raise ExportError(
                    f"{trajectory.directory}: step {step.step}'s prompt or reply contains "
                    f"{found[0]!r}, which LLaMA-Factory would read as a media item")
            else:
                text.append(part)
        role = "observation" if seg.runtime else seg.role
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"] += "".join(text)
        else:
            messages.append({"role": role, "content": "".join(text)})
    return {"messages": messages, "images": images}
