"""Qwen2-VL image preprocessing: RGB, smart_resize, resize (bicubic by default), rescale and
normalize (CLIP's mean and std by default), patchify.

Matches transformers' Qwen2VLImageProcessorPil bit for bit, with the checkpoint's settings (filter,
rescale, normalization, RGB conversion): the same PIL resize on uint8 RGB, rescale (when on) in
float64 then float32, normalize in float32, and the same patch order. The float maths
is done once per possible pair of byte values (a 65,536-entry table per channel), so each channel
plane is put in patch order as bytes, then normalized with one lookup per two pixels, on the
thread that resized it. ``ImageCache`` keeps the patches of the last
few images, so a screenshot that stays in an agent's history is preprocessed once;
``ImagePatches`` makes a request's patches only for the images that need them.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from core.geometry import DEFAULT_MAX_PIXELS, DEFAULT_MIN_PIXELS, smart_resize
from core.images import to_rgb
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


Patches = tuple[np.ndarray, tuple[int, int, int]]
#: A cache entry: the patches (read-only), the grid, and the patches as a tensor.
_Cached = tuple[np.ndarray, tuple[int, int, int], torch.Tensor]


def preprocess_image(
    image: Image.Image,
    config: ImageProcessingConfig,
    min_pixels: int | None = None,
    max_pixels: int | None = None,
) -> Patches:
    """Return (patches (grid_h*grid_w, C*T*P*P) float32, (grid_t, grid_h, grid_w)) for one image."""
    rgb = _checked_rgb(image, config)
    return patchify(rgb, config.resized_size(rgb.width, rgb.height, min_pixels, max_pixels), config)


def _checked_rgb(image: Image.Image, config: ImageProcessingConfig) -> Image.Image:
    if not isinstance(image, Image.Image):
        raise TypeError(f"images must be PIL images, got {type(image).__name__}")
    if config.do_convert_rgb:
        return to_rgb(image)
    if image.mode != "RGB":  # transformers would feed its raw bands (or fail on their count)
        raise ValueError(f"a {image.mode} image cannot be used: the checkpoint's image settings "
                         "say do_convert_rgb false, so only RGB images are taken as they are")
    return image


def patchify(rgb: Image.Image, size: tuple[int, int], config: ImageProcessingConfig) -> Patches:
    """Resize an RGB image to ``size`` (height, width), normalize it and cut it into patches.

    Each band is resized, put in patch order, normalized and copied into the output on a thread
    of its own: PIL's resize and numpy's copies and lookup let go of the GIL. Per band, PIL's
    8-bit resample is the same integer arithmetic as on the RGB image, so the bytes are those of
    ``rgb.resize`` (which the tests compare to transformers'). The bytes are put in patch order
    before they become floats: a transposition of rows 14 values long costs a fraction of a
    millisecond on one byte a pixel and several on four. No torch op runs here: torch's CPU ops
    would give every thread that preprocesses (a server's request threads) an OpenMP team of its
    own, and with more of those threads than CPUs the model's own team sleeps between ops
    (``agent.backends.one_thread``).
    """
    height, width = size
    p, m, t = config.patch_size, config.merge_size, config.temporal_patch_size
    _, gh, gw = grid = config.grid(size)
    bands = rgb.split()
    channels, resize, rows = len(bands), (width, height) != rgb.size, gh * gw
    # Rows in merge-window order (gh/m, gw/m, m, m), each (C, T, p, p). numpy asks the kernel
    # for huge pages on large arrays, which saves most of the page faults of a fresh 63 MB output.
    patches = np.empty((rows, channels, t, p * p), np.float32)

    def one(c: int) -> None:
        band = bands[c].resize((width, height), config.resample) if resize else bands[c]
        ordered = np.empty((rows, p * p), np.uint8)
        # (H, W) -> (gh/m, m, p, gw/m, m, p) -> (gh/m, gw/m, m, m, p, p)
        blocks = np.asarray(band).reshape(gh // m, m, p, gw // m, m, p).transpose(0, 3, 1, 4, 2, 5)
        np.copyto(ordered.reshape(blocks.shape), blocks)
        plane = np.empty((rows, p * p), np.float32)
        normalize_plane(ordered, c, config, plane)
        for frame in range(t):  # a still image is its own temporal neighbour
            np.copyto(patches[:, c, frame], plane)

    # Threads made per call (a fraction of a millisecond): nothing to go stale across a fork.
    with ThreadPoolExecutor(max_workers=channels, thread_name_prefix="resize") as pool:
        list(pool.map(one, range(channels)))
    return patches.reshape(rows, channels * t * p * p), grid


def normalize_plane(
    plane: np.ndarray, channel: int, config: ImageProcessingConfig, out: np.ndarray
) -> None:
    """Bytes of one channel -> ``out`` (same shape, float32, contiguous), rescaled and
    normalized as ``config`` says: one table lookup per pair of pixels."""
    flat, dest = plane.reshape(-1), out.reshape(-1)
    even = flat.size // 2 * 2
    pairs = flat[:even].view("<u2")  # first pixel in the low byte, as pair_table expects
    # Pair indices are always in range; "clip" spares numpy's buffered copy of ``out``.
    pair_table(config)[channel].take(pairs, out=dest[:even].view(np.uint64), mode="clip")
    if even < flat.size:  # an odd pixel count: the last pixel alone
        dest[-1] = normalize_table(config)[channel, flat[-1]]


@functools.cache
def normalize_table(config: ImageProcessingConfig) -> np.ndarray:
    """(C, 256) float32: each byte value rescaled and normalized exactly as transformers does
    (rescale in float64 then float32; without it, the byte as float32)."""
    values = np.arange(256, dtype=np.float64)
    if config.rescale_factor is not None:
        values = values * config.rescale_factor
    scaled = np.tile(values.astype(np.float32), (3, 1))
    if not config.do_normalize:
        return scaled
    mean, std = (np.asarray(v, np.float32)[:, None] for v in (config.image_mean, config.image_std))
    return (scaled - mean) / std


@functools.cache
def pair_table(config: ImageProcessingConfig) -> np.ndarray:
    """(C, 65536) uint64: for the byte pair (lo, hi), the float32 of lo then that of hi."""
    single = normalize_table(config)
    index = np.arange(65536)
    pairs = np.stack([single[:, index & 0xFF], single[:, index >> 8]], axis=-1)  # (C, 65536, 2)
    return np.ascontiguousarray(pairs).view(np.uint64)[..., 0]


@dataclass(frozen=True)
class ImageEntry:
    """One image as ``ImageCache`` knows it, before any patches are made: its RGB, the size it
    is resized to, its cache key, and a digest of what decides its patches (content, sizes,
    config): equal digests, equal patches."""

    rgb: Image.Image
    size: tuple[int, int]  # (height, width) after resizing
    key: tuple
    digest: bytes
    grid: tuple[int, int, int]


class ImageCache:
    """The patches of the last ``entries`` images, keyed by their content and size after resizing.

    An agent's prompt shows the same screenshots step after step; without this each step resizes
    and normalizes all of them again. The key is a SHA-256 of the RGB bytes (the image as it is
    resized, so mode, palette and transparency are already folded in), its size, the resized size
    (which the pixel bounds decide) and the config. Patches handed out are read-only: they are
    shared by every call that hits the same entry. Safe to call from several threads.
    """

    def __init__(self, config: ImageProcessingConfig, entries: int = 4):
        self.config = config
        self.entries = entries
        self._items: OrderedDict[tuple, _Cached] = OrderedDict()
        self._lock = threading.Lock()

    def __call__(
        self, image: Image.Image, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> Patches:
        return self.patches(self.describe(image, min_pixels, max_pixels))

    def describe(
        self, image: Image.Image, min_pixels: int | None = None, max_pixels: int | None = None
    ) -> ImageEntry:
        """The image's key, digest and grid, without making its patches (a hash of its bytes).
        A prefix-reusing session keys images by the digest instead of hashing the patches, which
        are several times bigger than the image, and needs no patches for images it holds."""
        rgb = _checked_rgb(image, self.config)
        size = self.config.resized_size(rgb.width, rgb.height, min_pixels, max_pixels)
        key = (hashlib.sha256(rgb.tobytes()).digest(), rgb.size, size, self.config)
        digest = hashlib.sha256(repr(key).encode()).digest()
        return ImageEntry(rgb, size, key, digest, self.config.grid(size))

    def patches(self, entry: ImageEntry) -> Patches:
        """The image's patches (read-only) and grid."""
        patches, grid, _ = self._entry(entry)
        return patches, grid

    def rows(self, entry: ImageEntry) -> torch.Tensor:
        """The same patches as a tensor (sharing their memory; not to be written to)."""
        return self._entry(entry)[2]

    def _entry(self, entry: ImageEntry) -> _Cached:
        with self._lock:
            if entry.key in self._items:
                self._items.move_to_end(entry.key)
                return self._items[entry.key]
        patches, grid = patchify(entry.rgb, entry.size, self.config)
        rows = torch.from_numpy(patches)  # before the freeze: torch warns of read-only arrays
        patches.flags.writeable = False
        with self._lock:
            self._items[entry.key] = (patches, grid, rows)
            while len(self._items) > self.entries:
                self._items.popitem(last=False)
        return patches, grid, rows


class ImagePatches:
    """The patch rows of one request's images, each made when first asked for, then kept.

    A server prepares requests on other threads than the model's: it makes the patches of the
    images no session holds there, and leaves the rest to be made only if the model thread needs
    them after all (the session let them go meanwhile, or the request runs without a session).
    """

    def __init__(self, cache: ImageCache, entries: list[ImageEntry]):
        self.cache, self.entries = cache, entries
        self._rows: dict[int, torch.Tensor] = {}
        self.seconds = 0.0  # spent making (or finding) patches, wherever that happened

    def __len__(self) -> int:
        return len(self.entries)

    def __call__(self, index: int) -> torch.Tensor:
        """Image ``index``'s patch rows (grid_h * grid_w, C*T*P*P), read-only."""
        if index not in self._rows:
            start = time.perf_counter()
            self._rows[index] = self.cache.rows(self.entries[index])
            self.seconds += time.perf_counter() - start
        return self._rows[index]

    @property
    def made(self) -> int:
        """How many images' patches this request has made or taken from the cache."""
        return len(self._rows)

    def all(self) -> torch.Tensor:
        """Every image's rows, in order: the processor's ``pixel_values``."""
        return torch.cat([self(i) for i in range(len(self.entries))])
