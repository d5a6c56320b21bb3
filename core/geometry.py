"""Screen geometry: a screenshot's size, the pixel budget the model's processor resizes it to,
and Qwen2-VL's smart_resize. Pure arithmetic, no torch.

The processor resizes images with smart_resize, and dialects whose coordinates are pixels of the
resized image (Qwen2.5-VL) need the same arithmetic to map them back, so both use this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

PATCH_SIZE = 14
MERGE_SIZE = 2
FACTOR = PATCH_SIZE * MERGE_SIZE  # 28: one merged LLM token covers 28x28 pixels
# The values in the released checkpoints' preprocessor_config.json.
DEFAULT_MIN_PIXELS = 3136
DEFAULT_MAX_PIXELS = 12_845_056
MAX_ASPECT_RATIO = 200


def smart_resize(
    height: int,
    width: int,
    factor: int = FACTOR,
    min_pixels: int = DEFAULT_MIN_PIXELS,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> tuple[int, int]:
    """Return (height, width), multiples of ``factor`` with an area within [min, max] pixels."""
    if height <= 0 or width <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if min_pixels < 1 or max_pixels < 1:  # transformers fails on these too, less clearly
        raise ValueError(f"min_pixels and max_pixels must be above 0, got {min_pixels} and "
                         f"{max_pixels}")
    if max(height, width) / min(height, width) > MAX_ASPECT_RATIO:
        raise ValueError(
            f"absolute aspect ratio must be smaller than {MAX_ASPECT_RATIO}, "
            # Unrounded: 28x5601 (200.04) rounded to one place read "got 200.0".
            f"got {max(height, width) / min(height, width):g} for {width}x{height}"
        )
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar



@dataclass(frozen=True)
class Screen:
    """The screenshot the model sees, and the resize budget its processor applies to it."""

    width: int
    height: int
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)

    def resized_size(self) -> tuple[int, int]:
        """(height, width) of the screenshot as the processor feeds it to the model."""
        return smart_resize(
            self.height, self.width, min_pixels=self.min_pixels, max_pixels=self.max_pixels
        )


def parse_size(text: str) -> tuple[int, int] | None:
    """``"1280x800"`` (``X`` and spaces around the numbers too) as (1280, 800); None where the
    text is not two positive decimal numbers. Options name their own error."""
    parts = text.lower().split("x")
    if len(parts) != 2 or not all(p.strip().isdecimal() and int(p) > 0 for p in parts):
        return None
    return int(parts[0]), int(parts[1])
