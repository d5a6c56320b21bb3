"""Qwen2VLProcessor: the ChatML template, the tokenizer and image placeholders expanded to pad tokens.

Only ``tokenizers``, numpy/PIL and torch (tensors, and the patch-order copy) are used, and
jinja2 once at load, to check the checkpoint's own chat template (model/chat_template.py).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from tokenizers import Tokenizer

from core.images import as_image
from core.special_tokens import CHAT_TOKENS
from core.text import well_formed
from model.chat_template import check_chat_template
from model.config import Qwen2VLConfig, check_repetition_penalty, read_json
from model.image_config import ImageProcessingConfig
from model.image_processing import ImageCache, ImageEntry, ImagePatches

DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."
IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"


def _render_content(content: str | list[dict[str, Any]] | None, image_token: str) -> str:
    if isinstance(content, str):
        return content
    if content is None:  # an OpenAI-style assistant turn without text: the template renders ""
        return ""
    parts = []
    for item in content:
        # The same tests, in the same order, as the released Jinja template.
        if item.get("type") == "image" or "image" in item or "image_url" in item:
            parts.append(f"<|vision_start|>{image_token}<|vision_end|>")
        elif item.get("type") == "video" or "video" in item:
            raise ValueError("video content is not supported; send frames as images")
        elif "text" in item:
            parts.append(item["text"])
        else:
            raise ValueError(f"unsupported message content item {item!r}: expected text or image")
    return "".join(parts)


def _has_text(content: str | list[dict[str, Any]] | None) -> bool:
    return isinstance(content, str) or any("text" in item for item in content or [])


class Qwen2VLProcessor:
    """Turns chat messages and PIL images into model inputs (HF processor conventions)."""

    def __init__(
        self,
        tokenizer: Tokenizer,
        config: Qwen2VLConfig,
        image_config: ImageProcessingConfig,
        eos_token_ids: Sequence[int],
    ):
        self.tokenizer = tokenizer
        self._longest_token = max(map(len, tokenizer.get_vocab(with_added_tokens=True)))
        self.config = config
        self.image_config = image_config
        cut = (image_config.patch_size, image_config.temporal_patch_size, image_config.merge_size)
        takes = (config.vision.patch_size, config.vision.temporal_patch_size,
                 config.vision.spatial_merge_size)
        if cut != takes:  # the tower's first layer would refuse the patches, or misread them
            raise ValueError(f"the image settings cut patches (size, temporal, merge) {cut}, but "
                             f"config.json's vision tower takes {takes}")
        # An agent's prompt shows the same screenshots step after step: preprocess each once.
        self.images = ImageCache(image_config)
        self.eos_token_ids = list(eos_token_ids)
        self.image_token_id = config.image_token_id
        image_token = tokenizer.id_to_token(config.image_token_id)
        if image_token is None:
            raise ValueError(
                f"image_token_id {config.image_token_id} from config.json is not in tokenizer.json"
            )
        self.image_token = image_token
        for token in CHAT_TOKENS[:2]:  # a missing one renumbers the special tokens after it
            if tokenizer.token_to_id(token) is None:
                raise ValueError(f"tokenizer.json has no {token} token: it is not a Qwen2-VL "
                                 "tokenizer")
        if image_token != "<|image_pad|>":
            raise ValueError(f"image_token_id {config.image_token_id} from config.json is "
                             f"{image_token!r} in tokenizer.json, not '<|image_pad|>'")
        if not self.eos_token_ids:
            raise ValueError("no end-of-sequence token id: generation_config.json and "
                             "config.json name none")
        pad = tokenizer.token_to_id("<|endoftext|>")
        self.pad_token_id = pad if pad is not None else self.eos_token_ids[0]

    @classmethod
    def from_pretrained(cls, path: str | Path) -> Qwen2VLProcessor:
        path = Path(path)
        config = Qwen2VLConfig.from_pretrained(path)
        tokenizer_file = path / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise FileNotFoundError(f"tokenizer.json not found in {path}")
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as e:  # noqa: BLE001 - tokenizers raises a bare Exception
            raise ValueError(f"{tokenizer_file} cannot be read ({e}): it is corrupt or cut "
                             "off; download the checkpoint again") from None
        processor = cls(tokenizer, config, ImageProcessingConfig.from_pretrained(path),
                        eos_token_ids_of(path, config))
        check_chat_template(path, processor.apply_chat_template)
        return processor

    # --- text -------------------------------------------------------------------------------
    def apply_chat_template(
        self,
        messages: Sequence[dict[str, Any]],
        add_generation_prompt: bool = True,
        continue_final_message: bool = False,
    ) -> str:
        """Render messages as Qwen2-VL's ChatML (the released Qwen2-VL and Qwen2.5-VL template).
        The checkpoint's own template is not rendered: ``from_pretrained`` checks that it agrees
        (model/chat_template.py)."""
        if not messages:
            raise ValueError("apply_chat_template needs at least one message")
        # Any role's last message may be continued (transformers and vLLM allow it), as long as
        # there is text to continue, as transformers requires.
        if continue_final_message and not _has_text(messages[-1]["content"]):
            raise ValueError("continue_final_message needs text in the last message to continue")
        out = []
        if messages[0]["role"] != "system":
            out.append(f"<|im_start|>system\n{DEFAULT_SYSTEM_PROMPT}<|im_end|>\n")
        for i, message in enumerate(messages):
            role = message["role"]
            if role not in ("system", "user", "assistant"):
                raise ValueError(f"unknown message role {role!r}")
            body = _render_content(message["content"], self.image_token)
            out.append(f"<|im_start|>{role}\n{body}")
            if continue_final_message and i == len(messages) - 1:
                return "".join(out)
            out.append("<|im_end|>\n")
        if add_generation_prompt:
            out.append("<|im_start|>assistant\n")
        return "".join(out)

    def encode(self, text: str) -> list[int]:
        # encode_batch lets other threads run while it works; encode holds the GIL throughout,
        # so one huge prompt to a server would stall every other request. A lone surrogate (a
        # goal's bytes that are not UTF-8) is U+FFFD, as the openai backend sends it.
        return self.tokenizer.encode_batch([well_formed(text)], add_special_tokens=False)[0].ids

    def fewest_tokens(self, text: str) -> int:
        """A lower bound on ``len(encode(text))`` at the cost of ``len``: no token spells more
        characters than the vocabulary's longest entry has (one per byte, byte-level BPE)."""
        return -(-len(text) // self._longest_token)

    def token_to_id(self, token: str) -> int | None:
        return self.tokenizer.token_to_id(token)

    def decode(self, ids: Sequence[int] | torch.Tensor, skip_special_tokens: bool = False) -> str:
        if isinstance(ids, torch.Tensor):
            ids = ids.flatten().tolist()
        return self.tokenizer.decode(list(ids), skip_special_tokens=skip_special_tokens)

    def image_token_count(
        self, width: int, height: int, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> int:
        """LLM tokens one image of this size costs."""
        return self.image_config.token_count(width, height, min_pixels, max_pixels)

    def count_tokens(
        self,
        text: str,
        image_sizes: Sequence[tuple[int, int]] = (),
        max_pixels: int | None = None,
        min_pixels: int | None = None,
    ) -> int:
        """The prompt's length in tokens once each placeholder is expanded, without any pixels."""
        ids = self.encode(text)
        placeholders = ids.count(self.image_token_id)
        self._check_image_count(placeholders, len(image_sizes))
        expanded = sum(self.image_token_count(w, h, min_pixels, max_pixels) for w, h in image_sizes)
        return len(ids) - placeholders + expanded

    def _check_image_count(self, placeholders: int, images: int) -> None:
        if placeholders != images:
            raise ValueError(
                f"the text has {placeholders} image placeholder(s) ({IMAGE_PLACEHOLDER}) "
                f"but {images} image(s) were given"
            )

    # --- text + images ----------------------------------------------------------------------
    def __call__(
        self,
        text: str | Sequence[str],
        images: Image.Image | Sequence[Image.Image] | Any | None = None,
        min_pixels: int | None = None,
        max_pixels: int | None = None,
        return_image_digests: bool = False,
    ) -> dict[str, torch.Tensor]:
        """Tokenize, expand each image placeholder to its pad tokens, preprocess the images.

        Several texts are left-padded (``attention_mask`` 0 on the padding); images are consumed
        in order across the texts. ``return_image_digests`` adds ``image_digests`` (n_images, 32)
        uint8: per image, a digest of what decides its patches (``ImageCache.describe``). An image
        is a PIL image or an array of bytes (``core.images.as_image``); one may come alone,
        arrays as one 4-D batch, and images in a list per text, as transformers' processor takes
        them.
        """
        if getattr(images, "ndim", None) == 4:
            images = list(images)  # a batch of image arrays
        elif isinstance(images, Image.Image) or hasattr(images, "__array__"):
            images = [images]  # one image, as transformers' processor takes it
        # A list per text (some empty) is the same images in order.
        images = [image for item in images or []
                  for image in (item if isinstance(item, (list, tuple)) else [item])]
        entries = self.describe_images(images, min_pixels, max_pixels)
        batch = self.token_inputs(text, entries)
        if not return_image_digests:
            batch.pop("image_digests", None)
        if entries:
            batch["pixel_values"] = ImagePatches(self.images, entries).all()
        return batch

    def describe_images(
        self, images: Sequence[Image.Image | Any], min_pixels: int | None = None,
        max_pixels: int | None = None,
    ) -> list[ImageEntry]:
        """Each image's size after resizing, grid and digest, without its patches: those come
        from ``ImagePatches(processor.images, entries)``, for the images that need them."""
        return [self.images.describe(as_image(image), min_pixels, max_pixels) for image in images]

    def token_inputs(self, text: str | Sequence[str], images: Sequence[ImageEntry]
                     ) -> dict[str, torch.Tensor]:
        """``__call__``'s outputs but ``pixel_values``: ``input_ids``, ``attention_mask``, and
        with images ``image_grid_thw`` and ``image_digests``."""
        texts = [text] if isinstance(text, str) else list(text)
        encoded = [self.encode(t) for t in texts]
        self._check_image_count(sum(ids.count(self.image_token_id) for ids in encoded), len(images))

        batch: dict[str, torch.Tensor] = {}
        if images:
            digests = b"".join(entry.digest for entry in images)
            batch["image_digests"] = torch.frombuffer(bytearray(digests), dtype=torch.uint8
                                                      ).view(len(images), -1)
            batch["image_grid_thw"] = torch.tensor([entry.grid for entry in images],
                                                   dtype=torch.long)
        merge = self.image_config.merge_size**2
        counts = iter([t * h * w // merge for t, h, w in (entry.grid for entry in images)])
        rows = []
        for ids in encoded:
            row: list[int] = []
            for tok in ids:
                row.extend([tok] * next(counts) if tok == self.image_token_id else [tok])
            rows.append(row)
        length = max(len(r) for r in rows)
        input_ids = torch.full((len(rows), length), self.pad_token_id, dtype=torch.long)
        attention_mask = torch.zeros((len(rows), length), dtype=torch.long)
        for i, row in enumerate(rows):
            if row:
                input_ids[i, length - len(row) :] = torch.tensor(row)
                attention_mask[i, length - len(row) :] = 1
        batch["input_ids"] = input_ids
        batch["attention_mask"] = attention_mask
        return batch


def repetition_penalty_of(path: Path) -> float:
    """generation_config.json's repetition_penalty (Qwen's Instruct checkpoints give 1.05),
    which transformers' generate and vLLM apply unless told otherwise; 1 where it gives none."""
    gen = path / "generation_config.json"
    penalty = read_json(gen).get("repetition_penalty") if gen.is_file() else None
    penalty = 1.0 if penalty is None else penalty
    try:
        check_repetition_penalty(penalty)
    except ValueError as exc:
        raise ValueError(f"{gen}: {exc}") from None
    return float(penalty)


def eos_token_ids_of(path: Path, config: Qwen2VLConfig) -> list[int]:
    """EOS ids from generation_config.json, else config.json's eos_token_id."""
    gen = path / "generation_config.json"
    eos = read_json(gen).get("eos_token_id") if gen.is_file() else None
    if eos is None:
        eos = list(config.eos_token_ids)
    ids = eos if isinstance(eos, list) else [eos]
    if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in ids):
        raise ValueError(f"{path}: eos_token_id must be a token id or a list of them, not {eos!r}")
    return ids
