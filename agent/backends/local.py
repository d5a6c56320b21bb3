"""``local``: our Qwen2-VL in this process, on cpu or cuda, in bf16, fp16 or fp32.

Work is split in two so the server can batch: ``prepare`` renders and preprocesses one request
(any thread; bad input raises ValueError), and ``generate_batch`` runs prepared requests on the
model (one thread at a time). Today's ``Qwen2VL.generate`` takes one sequence, so a batch runs
its requests in turn; a batched ``generate`` drops in here alone.

A single call (``generate``: an agent's step) goes through a ``GenerationSession`` unless
``reuse_prefix=False``: the session keeps the KV cache of the previous call and prefills only
where the new prompt differs from it, so a step costs its new screenshot and text, not the whole
history again. Batches (the server) do not touch that cache.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.backends.base import Backend, Completion, Messages, Params, cut_at_stop

if TYPE_CHECKING:
    import torch
    from PIL import Image


@dataclass
class Prepared:
    """One request, rendered and preprocessed, waiting for the model."""

    inputs: dict[str, "torch.Tensor"]
    params: Params
    preprocess_ms: float

    @property
    def prompt_tokens(self) -> int:
        return int(self.inputs["input_ids"].shape[1])


class LocalBackend(Backend):
    def __init__(
        self,
        path: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        reuse_prefix: bool = True,
    ):
        from model import Qwen2VL, Qwen2VLProcessor
        from model.session import GenerationSession

        self.name = str(path)
        self.processor = Qwen2VLProcessor.from_pretrained(path)
        self.model = Qwen2VL.from_pretrained(path, device=device, dtype=dtype)
        self.session = GenerationSession(self.model) if reuse_prefix else None

    def describe(self) -> str:
        dtype = str(self.model.dtype).removeprefix("torch.")
        return f"{self.name} on {self.model.device} ({dtype})"

    @property
    def context_length(self) -> int:
        """Prompt plus new tokens may not exceed this."""
        return self.processor.config.text.max_position_embeddings

    def prepare(self, messages: Messages, images: list["Image.Image"], params: Params) -> Prepared:
        start = time.perf_counter()
        processor = self.processor
        text = processor.apply_chat_template(
            messages,
            add_generation_prompt=not params.continue_final_message,
            continue_final_message=params.continue_final_message,
        )
        inputs = processor(text=text, images=images or None,
                           min_pixels=params.min_pixels, max_pixels=params.max_pixels)
        return Prepared(inputs, params, (time.perf_counter() - start) * 1000)

    def generate_batch(self, batch: list[Prepared]) -> list[Completion]:
        return [self._generate_one(item, self.model.generate) for item in batch]

    def generate(self, messages: Messages, images: list["Image.Image"], **params: Any) -> Completion:
        item = self.prepare(messages, images, Params(**params))
        if self.session is None:
            return self._generate_one(item, self.model.generate)
        reused_before = self.session.reused_tokens
        completion = self._generate_one(item, self.session.generate)
        completion.cached_tokens = self.session.reused_tokens - reused_before
        return completion

    def _generate_one(self, item: Prepared, generate: Callable[..., "torch.Tensor"]) -> Completion:
        import torch

        params, inputs, processor = item.params, item.inputs, self.processor
        sampling = params.temperature > 0
        start = time.perf_counter()
        with torch.inference_mode():
            new = generate(
                input_ids=inputs["input_ids"],
                pixel_values=inputs.get("pixel_values"),
                image_grid_thw=inputs.get("image_grid_thw"),
                max_new_tokens=params.max_new_tokens,
                stop=list(params.stop) or None,
                tokenizer=processor.tokenizer,
                do_sample=sampling,
                temperature=params.temperature if sampling else 1.0,
                top_p=params.top_p,
                seed=params.seed,
            )
        generate_ms = (time.perf_counter() - start) * 1000
        tokens = new[0].tolist()
        ended_by_eos = bool(tokens) and tokens[-1] in processor.eos_token_ids
        ids = [t for t in tokens if t not in processor.eos_token_ids]
        decoded = processor.decode(ids, skip_special_tokens=False)
        text = cut_at_stop(decoded, params.stop)
        stopped = ended_by_eos or len(text) < len(decoded)
        return Completion(
            text=text,
            prompt_tokens=item.prompt_tokens,
            completion_tokens=len(tokens),
            finish_reason="stop" if stopped else "length",
            timings={"preprocess_ms": item.preprocess_ms, "generate_ms": generate_ms},
        )

    def close(self) -> None:
        self.model = self.session = None
