"""Qwen2-VL image preprocessing in numpy: RGB, smart_resize, bicubic, CLIP normalize, patchify.

Matches transformers' Qwen2VLImageProcessorPil bit for bit: the same PIL resize on uint8 RGB,
rescale in float64 then float32, normalize in float32, and the same patch order. The float maths
is done once per possible byte value (a 256-entry table per channel); the pixels are put in patch
order while still bytes, then looked up straight into the output.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
from PIL import Image

from core.geometry import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, smart_resize

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageProcessingConfig:
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD

    @classmethod
    def from_dict(cls, raw: dict) -> ImageProcessingConfig:
        size = raw.get("size") or {}
        return cls(
            min_pixels=raw.get("min_pixels") or size.get("shortest_edge") or DEFAULT_MIN_PIXELS,
            max_pixels=raw.get("max_pixels") or size.get("longest_edge") or DEFAULT_MAX_PIXELS,
            patch_size=raw.get("patch_size", 14),
            temporal_patch_size=raw.get("temporal_patch_size", 2),
            merge_size=raw.get("merge_size", 2),
            image_mean=tuple(raw.get("image_mean", CLIP_MEAN)),
            image_std=tuple(raw.get("image_std", CLIP_STD)),
        )

    @property
    def factor(self) -> int:
        return self.patch_size * self.merge_size

    def resized_size(
        self, width: int, height: int, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> tuple[int, int]:
        """(height, width) after smart_resize with this config's or the given pixel bounds."""
        return smart_resize(
            height,
            width,
            factor=self.factor,
            min_pixels=min_pixels or self.min_pixels,
            max_pixels=max_pixels or self.max_pixels,
        )

    def token_count(
        self, width: int, height: int, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> int:
        """LLM tokens one image of this size costs: one per merged factor x factor block."""
        h, w = self.resized_size(width, height, min_pixels, max_pixels)
        return (h // self.factor) * (w // self.factor)


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (as transformers does)."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")


def preprocess_image(
    image: Image.Image,
    config: ImageProcessingConfig,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Return (patches (grid_h*grid_w, C*T*P*P) float32, (grid_t, grid_h, grid_w)) for one image."""
    if not isinstance(image, Image.Image):
        raise TypeError(f"images must be PIL images, got {type(image).__name__}")
    rgb = to_rgb(image)
    height, width = config.resized_size(rgb.width, rgb.height, min_pixels, max_pixels)
    if (width, height) != rgb.size:
        rgb = rgb.resize((width, height), Image.Resampling.BICUBIC)
    p, m, t = config.patch_size, config.merge_size, config.temporal_patch_size
    gh, gw = height // p, width // p
    hwc = np.asarray(rgb)
    channels = hwc.shape[2]
    # (H, W, C) -> (gh/m, m, p, gw/m, m, p, C) -> (gh/m, gw/m, m, m, C, p, p): merge-window order.
    blocks = hwc.reshape(gh // m, m, p, gw // m, m, p, channels).transpose(0, 3, 1, 4, 6, 2, 5)
    # A still image is its own temporal neighbour: the frame T times inside each patch.
    blocks = np.broadcast_to(blocks[:, :, :, :, :, None], (*blocks.shape[:5], t, p, p))
    values = np.ascontiguousarray(blocks).reshape(gh * gw, channels, t * p * p)
    table = normalize_table(config.image_mean, config.image_std)
    patches = np.empty(values.shape, dtype=np.float32)
    for c in range(channels):
        patches[:, c] = table[c].take(values[:, c])
    return patches.reshape(gh * gw, -1), (1, gh, gw)


@functools.cache
def normalize_table(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(C, 256) float32: each byte value rescaled and normalized exactly as transformers does."""
    scaled = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)
    return (scaled - np.asarray(mean, np.float32)[:, None]) / np.asarray(std, np.float32)[:, None]
