"""``--model PATH``: our Qwen2-VL on this machine (cuda when available, else cpu), through the
``local`` backend, counting prompt tokens with the checkpoint's processor."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from actions.dialects.base import Prompt
from agent.policies.backend import BackendPolicy
from agent.policies.base import hf_messages, prompt_images
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

    def context_length(self) -> int:
        return self.processor.config.text.max_position_embeddings

    def count_reply(self, text: str) -> int:
        return len(self.processor.encode(text))

    def count_tokens(self, prompt: Prompt, images: list["Image.Image | None"],
                     screen: Screen) -> int:
        sizes = [im.size for im in prompt_images(prompt, images)]
        return self.processor.count_tokens(
            self.text(prompt), image_sizes=sizes,
            min_pixels=screen.min_pixels, max_pixels=screen.max_pixels,
        )


class LocalPolicy(BackendPolicy):
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
        repetition_penalty: float | None = None,
        reuse_prefix: bool = True,
        compile: bool = False,
    ) -> None:
        from agent.backends.local import LocalBackend

        backend = LocalBackend(path, device=device, dtype=dtype, reuse_prefix=reuse_prefix,
                               compile=compile)
        super().__init__(backend, max_new_tokens=max_new_tokens, temperature=temperature,
                         top_p=top_p, seed=seed, repetition_penalty=repetition_penalty)
        self.renderer = PromptRenderer(backend.processor)

    def count_tokens(self, prompt: Prompt, images: list["Image.Image | None"],
                     screen: Screen) -> int:
        return self.renderer.count_tokens(prompt, images, screen)

    def context_length(self) -> int:
        return self.renderer.context_length()
