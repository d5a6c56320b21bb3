"""Qwen2VL: vision tower + M-RoPE decoder + lm_head, with from_pretrained and generate.

``model(...)`` returns the logits tensor (B, L, vocab) directly (not an output object).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from model.config import Qwen2VLConfig
from model.linear import Linear
from model.loading import check_weights, load_weights
from model.processor import eos_token_ids_of, repetition_penalty_of
from model.rope import mrope_cos_sin, mrope_positions
from model.text import TextModel
from model.vision import VisionTower
from model.vision_qwen25 import WindowVisionTower

# --- architecture hook: the vision tower by config.json's model_type (the decoder is shared) ---
VISION_TOWERS = {"qwen2_vl": VisionTower, "qwen2_5_vl": WindowVisionTower}

DTYPES = {
    "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
    "fp16": torch.float16, "float16": torch.float16, "half": torch.float16,
    "fp32": torch.float32, "float32": torch.float32, "float": torch.float32,
}  # fmt: skip


def resolve_device_dtype(
    device: str | torch.device | None, dtype: str | torch.dtype | None
) -> tuple[torch.device, torch.dtype]:
    """None -> cuda when available (bf16 there), else cpu (fp32). A device this machine lacks
    is a ValueError that says so."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device {device!r}: vlagent runs on cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r}: CUDA is not available on this machine")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: this machine has {torch.cuda.device_count()} "
                         "CUDA device(s)")
    if dtype is None:
        return dev, torch.bfloat16 if dev.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype.lower() not in DTYPES:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
        dtype = DTYPES[dtype.lower()]
    return dev, dtype


#: Images go through the vision tower in groups of at most this many patches (one bigger image
#: alone): about as fast per patch as one image, faster than many (``Qwen2VL.image_features``).
VISION_GROUP_PATCHES = 4096


class Qwen2VL(nn.Module):
    def __init__(self, config: Qwen2VLConfig):
        super().__init__()
        self.config = config
        self.visual = VISION_TOWERS[config.model_type](config.vision)
        self.model = TextModel(config.text)
        self.lm_head = Linear(config.text.hidden_size, config.text.vocab_size, bias=False)
        if config.tie_word_embeddings:
            self.lm_head.weight = self.model.embed_tokens.weight
        self.eos_token_ids: list[int] = list(config.eos_token_ids)
        #: generation_config.json's, which transformers and vLLM apply by default.
        self.repetition_penalty: float = 1.0

    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        device: str | torch.device | None = None,
        dtype: str | torch.dtype | None = None,
    ) -> Qwen2VL:
        """Build on the meta device, then stream the checkpoint's tensors to device and dtype."""
        path = Path(path)
        dev, dt = resolve_device_dtype(device, dtype)
        model = cls._on_meta(path)
        load_weights(model, path, dev, dt, model.config.tie_word_embeddings)
        model.eos_token_ids = eos_token_ids_of(path, model.config)
        model.repetition_penalty = repetition_penalty_of(path)
        return model.eval()

    @classmethod
    def check_pretrained(cls, path: str | Path) -> None:
        """What ``from_pretrained`` would refuse in the checkpoint at ``path`` (its config, each
        tensor's name and shape, its end tokens), found without reading a tensor."""
        path = Path(path)
        model = cls._on_meta(path)
        check_weights(model, path, model.config.tie_word_embeddings)
        eos_token_ids_of(path, model.config)
        repetition_penalty_of(path)

    @classmethod
    def _on_meta(cls, path: Path) -> Qwen2VL:
        with torch.device("meta"):
            return cls(Qwen2VLConfig.from_pretrained(path))

    @property
    def device(self) -> torch.device:
        return self.lm_head.weight.device

    @property
    def dtype(self) -> torch.dtype:
        return self.lm_head.weight.dtype

    @property
    def tied_head(self) -> bool:
        """The head is the embedding matrix (config.json ties them, and the checkpoint holds no
        head of other values)."""
        return self.lm_head.weight is self.model.embed_tokens.weight

    def parameter_counts(self) -> dict[str, int]:
        """Parameters by part; a tied lm_head counts 0 (it is the embedding matrix)."""
        visual = sum(p.numel() for p in self.visual.parameters())
        language = sum(p.numel() for p in self.model.parameters())
        head = 0 if self.tied_head else self.lm_head.weight.numel()
        return {"visual": visual, "language_model": language, "lm_head": head,
                "total": visual + language + head}  # fmt: skip

    # --- forward pieces ---------------------------------------------------------------------
    def embed(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None,
        image_grid_thw: torch.Tensor | None,
    ) -> torch.Tensor:
        """Token embeddings with each image's pad tokens replaced by its vision features."""
        embeds = self.model.embed_tokens(input_ids)
        is_image = input_ids == self.config.image_token_id
        n_tokens = int(is_image.sum())
        if pixel_values is None:
            if n_tokens:
                raise ValueError(f"input_ids has {n_tokens} image tokens but no pixel_values")
            return embeds
        if image_grid_thw is None:
            raise ValueError("pixel_values needs image_grid_thw")
        features = self.image_features(pixel_values, image_grid_thw)
        if features.shape[0] != n_tokens:
            raise ValueError(
                f"image features and image tokens do not match: {features.shape[0]} features, "
                f"{n_tokens} image tokens in input_ids"
            )
        return embeds.masked_scatter(is_image[..., None], features.to(embeds.dtype))

    def image_features(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """The vision tower's features of the images, run a group of whole images at a time.

        An image attends only to itself, so the groups give the features of one pass over all;
        but a pass over many images (a server's batch, a prompt's history) makes activations too
        big for the CPU's caches, and was 20% slower for 8 screenshots of 1,024 patches.
        """
        pixel_values = pixel_values.to(self.device)
        patches = grid_thw.prod(-1).tolist()
        if sum(patches) != pixel_values.shape[0]:  # the tower's own error says what is wrong
            return self.visual(pixel_values, grid_thw)
        groups: list[list[int]] = []  # [first image, end image, patches]
        for i, n in enumerate(patches):
            if groups and groups[-1][2] + n <= VISION_GROUP_PATCHES:
                groups[-1][1:] = [i + 1, groups[-1][2] + n]
            else:
                groups.append([i, i + 1, n])
        features, row = [], 0
        for first, end, rows in groups:
            features.append(self.visual(pixel_values[row : row + rows], grid_thw[first:end]))
            row += rows
        return features[0] if len(features) == 1 else torch.cat(features)

    def positions(
        self,
        input_ids: torch.Tensor,
        image_grid_thw: torch.Tensor | None,
        attention_mask: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """M-RoPE position ids (3, B, L) and rope deltas (B, 1)."""
        return mrope_positions(
            input_ids,
            image_grid_thw,
            self.config.image_token_id,
            self.config.vision.spatial_merge_size,
            attention_mask,
        )

    def decode_step(
        self, embeds: torch.Tensor, positions: torch.Tensor, start: int | None, mask=None,
        last_only=False,
    ) -> torch.Tensor:  # fmt: skip
        """Run the decoder over ``embeds`` at cache offset ``start`` (None: without the cache);
        returns logits (of the last position only with ``last_only``: a prefill needs no more,
        and the head is costly)."""
        t = self.config.text
        cos, sin = mrope_cos_sin(positions, t.head_dim, t.rope_theta, t.mrope_section, embeds.dtype)
        hidden = self.model(embeds, cos, sin, start, mask)
        return self.lm_head(hidden[:, -1:] if last_only else hidden)

    def forward(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, L, vocab) for a whole prompt (no cache)."""
        input_ids = input_ids.to(self.device)
        embeds = self.embed(input_ids, pixel_values, image_grid_thw)
        positions, _ = self.positions(input_ids, image_grid_thw, attention_mask)
        mask = padding_mask(attention_mask, self.device)
        return self.decode_step(embeds, positions.to(self.device), None, mask)

    # --- generation -------------------------------------------------------------------------
    def generate(
        self,
        input_ids: torch.Tensor,
        pixel_values: torch.Tensor | None = None,
        image_grid_thw: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        max_new_tokens: int = 64,
        do_sample: bool = False,
        temperature: float = 1.0,
        top_k: int = 0,
        top_p: float = 1.0,
        seed: int | None = None,
        repetition_penalty: float | None = None,
        stop: Sequence[str] | None = None,
        tokenizer: Any = None,
        eos_token_ids: Sequence[int] | None = None,
        on_text: Callable[[int, str], None] | None = None,
        compile: bool = False,
    ) -> torch.Tensor:
        """New tokens of one sequence as a (1, n) LongTensor, the EOS token that ended it included.

        Stops at an EOS id (default: generation_config.json's), after ``max_new_tokens``, or at
        the token that completes one of ``stop``. ``repetition_penalty`` None: the
        checkpoint's (generation_config.json's, 1 where it gives none), as in transformers.
        ``model.generate.generate`` takes batches and returns text too.
        """
        from model.generate import GenerationOptions, Sampling, generate

        if input_ids.dim() != 2 or input_ids.shape[0] != 1:
            raise ValueError(
                f"Qwen2VL.generate takes one sequence of shape (1, L), got "
                f"{tuple(input_ids.shape)}: use model.generate.generate for batches"
            )
        options = GenerationOptions(
            max_new_tokens=max_new_tokens,
            sampling=Sampling(temperature if do_sample else 0.0, top_k, top_p, seed,
                              repetition_penalty),
            stop=stop or (),  # GenerationOptions reads one string as one stop string
            eos_token_ids=None if eos_token_ids is None else tuple(eos_token_ids),
            tokenizer=tokenizer,
            on_text=on_text,
            compile=compile,
        )
        out = generate(self, input_ids, pixel_values, image_grid_thw, attention_mask, options)
        return torch.tensor([out[0].tokens], dtype=torch.long)


def padding_mask(attention_mask: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    """(B, 1, L, L) causal mask without the left padding's keys; None when nothing is padded."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    n = attention_mask.shape[1]
    keys = attention_mask.to(device).bool()[:, None, None, :]
    causal = torch.ones(n, n, dtype=torch.bool, device=device).tril()
    # Padding rows attend to themselves only, so SDPA never sees an all-masked row.
    return (causal & keys) | torch.eye(n, dtype=torch.bool, device=device)
