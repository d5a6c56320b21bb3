"""A stand-in engine for server tests: it echoes the last text, so each answer names its request,
and records the batch sizes the scheduler formed."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from agent.backends.base import Completion, Params


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

    def __init__(self, delay_s: float = 0.0) -> None:
        self.delay_s = delay_s
        self.batches: list[int] = []
        self._busy = threading.Lock()

    def prepare(self, messages, images, params: Params) -> EchoJob:
        content = messages[-1]["content"]
        text = content if isinstance(content, str) else " ".join(
            p["text"] for p in content if p["type"] == "text")
        return EchoJob(text, len(images), params)

    def generate_batch(self, batch: list[EchoJob]) -> list[Completion]:
        if not self._busy.acquire(blocking=False):  # the model must never run twice at once
            raise RuntimeError("generate_batch ran concurrently")
        try:
            self.batches.append(len(batch))
            time.sleep(self.delay_s)
            return [Completion(f"echo: {job.text} ({job.images} images)", job.prompt_tokens, 3)
                    for job in batch]
        finally:
            self._busy.release()
