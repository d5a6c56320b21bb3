"""A checkpoint's image settings (preprocessor_config.json), read and checked as transformers'
Qwen2VLImageProcessorPil reads them, and the token arithmetic of an image's size.

No torch here: a run and ``model info`` read these settings, and refuse unusable ones, before
they import torch (seconds)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from core.geometry import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, smart_resize
from model.config import read_json

CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
# transformers' own default, which it takes when a checkpoint's image settings name no maximum
# (the released checkpoints name DEFAULT_MAX_PIXELS).
TRANSFORMERS_MAX_PIXELS = 1280 * 28 * 28


@dataclass(frozen=True)
class ImageProcessingConfig:
    min_pixels: int = DEFAULT_MIN_PIXELS
    max_pixels: int = DEFAULT_MAX_PIXELS
    patch_size: int = 14
    temporal_patch_size: int = 2
    merge_size: int = 2
    image_mean: tuple[float, ...] = CLIP_MEAN
    image_std: tuple[float, ...] = CLIP_STD
    resample: int = 3  # PIL's Image.Resampling.BICUBIC, as JSON holds it
    rescale_factor: float | None = 1 / 255  # None: do_rescale false, the bytes as they are
    do_normalize: bool = True
    do_convert_rgb: bool = True

    def __post_init__(self) -> None:
        for name in ("min_pixels", "max_pixels", "patch_size", "temporal_patch_size", "merge_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a whole number above 0, not {value!r}")
        if self.min_pixels > self.max_pixels:
            raise ValueError(f"min_pixels {self.min_pixels} is above max_pixels {self.max_pixels}")
        if self.do_normalize:
            for name in ("image_mean", "image_std"):
                values = getattr(self, name)
                if len(values) != 3 or not all(_is_number(v) for v in values):
                    raise ValueError(f"{name} must be 3 numbers (R, G, B), not {list(values)!r}")
            if min(self.image_std) <= 0:
                raise ValueError(f"image_std must be above 0, not {list(self.image_std)!r}")
        # transformers reads a float or other filter name as bilinear: only PIL's own ints
        if type(self.resample) is not int or self.resample not in set(Image.Resampling):
            raise ValueError("resample must be one of PIL's filters (Image.Resampling), not "
                             f"{self.resample!r}")
        if self.rescale_factor is not None and not (
                _is_number(self.rescale_factor) and math.isfinite(self.rescale_factor)):
            raise ValueError(f"rescale_factor must be a number, not {self.rescale_factor!r}")

    @classmethod
    def from_dict(cls, raw: dict) -> ImageProcessingConfig:
        """Settings as transformers' Qwen2VLImageProcessorPil takes them: ``min_pixels`` /
        ``max_pixels`` override ``size``'s ``shortest_edge`` / ``longest_edge``, and ``size``
        left out (or null) is transformers' default budget. What transformers would refuse or
        compute otherwise (``do_resize`` false) is refused by name."""
        size = raw.get("size")
        size = {"shortest_edge": DEFAULT_MIN_PIXELS, "longest_edge": TRANSFORMERS_MAX_PIXELS} \
            if size is None else size
        if not isinstance(size, dict):
            raise ValueError(f"size must be an object, not {size!r}")
        pairs = (("min_pixels", "shortest_edge"), ("max_pixels", "longest_edge"))
        bounds = [raw[key] if raw.get(key) is not None else size.get(edge) for key, edge in pairs]
        if not all(bounds):  # transformers' resize fails on such a size at the first image
            raise ValueError(f"the pixel budget needs min_pixels (or size's shortest_edge) and "
                             f"max_pixels (or size's longest_edge) above 0, not {bounds[0]!r} "
                             f"and {bounds[1]!r} (size {size!r})")
        if raw.get("do_resize", True) is not True:
            raise ValueError(f"do_resize {raw['do_resize']!r} is not supported: images are "
                             "always resized with smart_resize")
        mean, std = raw.get("image_mean", CLIP_MEAN), raw.get("image_std", CLIP_STD)
        do_rescale, do_normalize = _flag(raw, "do_rescale"), _flag(raw, "do_normalize")
        factor = raw.get("rescale_factor", 1 / 255) if do_rescale else None
        if do_rescale and factor is None:  # our None would mean no rescale; transformers refuses
            raise ValueError("rescale_factor must be a number, not None")
        return cls(
            min_pixels=bounds[0],
            max_pixels=bounds[1],
            patch_size=raw.get("patch_size", 14),
            temporal_patch_size=raw.get("temporal_patch_size", 2),
            merge_size=raw.get("merge_size", 2),
            image_mean=_channels("image_mean", mean) if do_normalize else CLIP_MEAN,
            image_std=_channels("image_std", std) if do_normalize else CLIP_STD,
            resample=raw.get("resample", 3),
            rescale_factor=factor,
            do_normalize=do_normalize,
            do_convert_rgb=_flag(raw, "do_convert_rgb"),
        )

    @classmethod
    def from_pretrained(cls, path: Path) -> ImageProcessingConfig:
        """A checkpoint's image settings, looked up as transformers does: the image_processor
        nested in processor_config.json (how transformers 5 saves a processor), else
        preprocessor_config.json, else the released checkpoints' values. A bound the settings
        leave out takes transformers' default for it."""
        nested = Path(path) / "processor_config.json"
        settings = read_json(nested).get("image_processor") if nested.is_file() else None
        if isinstance(settings, dict):
            source = nested
        elif (source := Path(path) / "preprocessor_config.json").is_file():
            settings = read_json(source)
        else:
            return cls()
        try:
            return cls.from_dict(settings)
        except ValueError as exc:
            raise ValueError(f"{source} holds image settings that cannot be used: {exc}") from None

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
            min_pixels=self.min_pixels if min_pixels is None else min_pixels,
            max_pixels=self.max_pixels if max_pixels is None else max_pixels,
        )

    def grid(self, size: tuple[int, int]) -> tuple[int, int, int]:
        """(grid_t, grid_h, grid_w) in patches of an image resized to ``size`` (height, width)."""
        return 1, size[0] // self.patch_size, size[1] // self.patch_size

    def token_count(
        self, width: int, height: int, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> int:
        """LLM tokens one image of this size costs: one per merged factor x factor block."""
        h, w = self.resized_size(width, height, min_pixels, max_pixels)
        return (h // self.factor) * (w // self.factor)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _flag(raw: dict, key: str) -> bool:
    """A do_* setting (default true). transformers reads null or 0 as false, which is too easy
    to write by mistake to follow silently."""
    value = raw.get(key, True)
    if not isinstance(value, bool):
        raise ValueError(f"{key} must be true or false, not {value!r}")
    return value


def _channels(name: str, value: object) -> tuple:
    """image_mean / image_std: one number per channel, or one for all three (as transformers)."""
    if _is_number(value):
        return (value,) * 3
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list of numbers, not {value!r}")
    return tuple(value)
