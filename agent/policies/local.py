"""``--model PATH``: our Qwen2-VL on this machine (cuda when available, else cpu).

The dialect's prompt becomes Hugging Face chat messages plus the screenshots it shows; the
processor renders the chat template (continuing the last assistant turn when the dialect asks,
as the qwen2vl format does), and generation stops at the dialect's stop strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from actions.dialects.base import Prompt
from agent.policies.base import (
    Policy,
    Reply,
    Request,
    cut_at_stop,
    hf_messages,
    prompt_images,
)
from core.geometry import Screen

if TYPE_CHECKING:
    from PIL import Image


class PromptRenderer:
    """The processor's view of a prompt: chat-template text, images, and the token count."""

    def __init__(self, processor) -> None:
        self.processor = processor

    @classmethod
    def from_pretrained(cls, path: str | Path) -> "PromptRenderer":
        from model import Qwen2VLProcessor

        return cls(Qwen2VLProcessor.from_pretrained(path))

    def text(self, prompt: Prompt) -> str:
        return self.processor.apply_chat_template(
            hf_messages(prompt),
            add_generation_prompt=not prompt.continue_final_message,
            continue_final_message=prompt.continue_final_message,
        )

    def count_tokens(self, prompt: Prompt, images: list["Image.Image"], screen: Screen) -> int:
        sizes = [im.size for im in prompt_images(prompt, images)]
        return self.processor.count_tokens(
            self.text(prompt), image_sizes=sizes,
            min_pixels=screen.min_pixels, max_pixels=screen.max_pixels,
        )


class LocalPolicy(Policy):
    def __init__(
        self,
        path: str | Path,
        *,
        device: str | None = None,
        dtype: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        top_p: float = 1.0,
        seed: int | None = 0,
    ) -> None:
        import torch

        from model import Qwen2VL

        self.name = str(path)
        self.renderer = PromptRenderer.from_pretrained(path)
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.model = Qwen2VL.from_pretrained(path, device=self.device, dtype=dtype)
        self.max_new_tokens = max_new_tokens
        self.temperature = temperature
        self.top_p = top_p
        self.seed = seed

    def describe(self) -> str:
        return f"{self.name} on {self.device} ({str(self.model.dtype).removeprefix('torch.')})"

    def count_tokens(self, prompt: Prompt, images: list["Image.Image"], screen: Screen) -> int:
        return self.renderer.count_tokens(prompt, images, screen)

    def respond(self, request: Request) -> Reply:
        import torch

        processor = self.renderer.processor
        inputs = processor(
            text=self.renderer.text(request.prompt),
            images=prompt_images(request.prompt, request.images) or None,
            min_pixels=request.screen.min_pixels,
            max_pixels=request.screen.max_pixels,
        )
        sampling = self.temperature > 0
        with torch.inference_mode():
            new = self.model.generate(
                input_ids=inputs["input_ids"],
                pixel_values=inputs.get("pixel_values"),
                image_grid_thw=inputs.get("image_grid_thw"),
                max_new_tokens=self.max_new_tokens,
                stop=list(request.stop) or None,
                tokenizer=processor.tokenizer,
                do_sample=sampling,
                temperature=self.temperature if sampling else 1.0,
                top_p=self.top_p,
                seed=self.seed,
            )
        generated = new[0].tolist()
        ids = [t for t in generated if t not in processor.eos_token_ids]
        text = processor.decode(ids, skip_special_tokens=False)
        # Cut off by the budget: every token used, and neither an end token nor a stop string.
        truncated = len(generated) >= self.max_new_tokens and not (
            generated and generated[-1] in processor.eos_token_ids
        ) and not any(stop in text for stop in request.stop)
        usage = {"prompt_tokens": int(inputs["input_ids"].shape[1]),
                 "new_tokens": len(generated), "truncated": truncated}
        return Reply(cut_at_stop(text, request.stop), usage=usage)

    def close(self) -> None:
        self.model = None
