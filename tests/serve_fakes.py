"""A stand-in engine for server tests: it echoes the last text, so each answer names its request,
and records the batch sizes the scheduler formed. It streams its answer a word at a time, all rows
of a batch step by step as a model decodes, and can pause after the first piece until let go."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

from agent.backends.base import Completion, OnText, Params


@dataclass
class EchoJob:
    text: str
    images: int
    params: Params

    @property
    def prompt_tokens(self) -> int:
        return len(self.text.split()) + self.images


class EchoEngine:
    context_length = 4096
    joins = False  # batches run to their end; requests sent meanwhile wait for the next

    def __init__(self, delay_s: float = 0.0, piece_delay_s: float = 0.0,
                 hold: threading.Event | None = None) -> None:
        self.delay_s = delay_s
        self.piece_delay_s = piece_delay_s  # between two pieces of a row
        #: When given, a batch waits after its first pieces until this is set (or 10 s pass).
        self.hold = hold
        self.batches: list[int] = []
        self.finished: list[int] = []  # sizes of the batches that ran to the end
        #: Per batch that ran to the end: who had left by then, by request text.
        self.gone: list[dict[str, bool]] = []
        self._busy = threading.Lock()

    def count_prompt(self, messages, sizes, params: Params) -> int:
        return 10 * (len(messages) + len(sizes))

    def prepare(self, messages, images, params: Params) -> EchoJob:
        content = messages[-1]["content"]
        text = content if isinstance(content, str) else " ".join(
            p["text"] for p in content if p["type"] == "text")
        return EchoJob(text, len(images), params)

    def generate_batch(self, batch: list[EchoJob], on_text: Sequence[OnText] | None = None,
                       gone: Sequence[Callable[[], bool]] | None = None) -> list[Completion]:
        if not self._busy.acquire(blocking=False):  # the model must never run twice at once
            raise RuntimeError("generate_batch ran concurrently")
        try:
            self.batches.append(len(batch))
            time.sleep(self.delay_s)
            texts = [f"echo: {job.text} ({job.images} images)" for job in batch]
            pieces = [re.split(r"(?<= )", text) for text in texts]  # words with their spaces
            sinks = on_text or [None] * len(batch)
            for step in range(max(len(row) for row in pieces)):
                for row, sink in zip(pieces, sinks):
                    if sink is not None and step < len(row):
                        sink(row[step])
                if step == 0 and self.hold is not None:
                    self.hold.wait(timeout=10)
                time.sleep(self.piece_delay_s)
            self.finished.append(len(batch))
            self.gone.append({job.text: left() for job, left in zip(batch, gone or [])})
            return [Completion(text, job.prompt_tokens, 3) for text, job in zip(texts, batch)]
        finally:
            self._busy.release()
