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
import threading
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from core.images import to_rgb
from model.image_config import ImageProcessingConfig

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
