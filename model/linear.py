"""A Linear layer whose products with few rows (decode steps) may use every CPU thread.

On some CPUs torch's ``F.linear`` hands a one-row product to an MKL matrix-vector kernel that runs
on one thread: on the 2-core box of the first figures the decoder's weights streamed at 16 GB/s
that way, against 48 GB/s when two threads read them. Cut into row blocks of the weight, the same
product is a batched matmul, and torch spreads the blocks over its threads (2x on the weight
products at batch 1 there, and faster up to 64 rows). On other CPUs MKL already reads a one-row
product with every thread, and the blocks are 2x slower there, yet faster again from about 16
rows (docs/benchmarks.md). So which way is faster is measured, once per weight shape, thread
count and number of rows (rounded up to a power of two) in a process. A prefill's hundreds of
rows are compute-bound and keep the plain path, as do other devices and dtypes. Each output is
still one dot product per row, so the two ways differ only by summation order.

The ways are timed on weights read from memory, as a decode step reads them (each weight once,
after the others have pushed it out of the caches): on the EPYC box of 2026-12-04 a weight read
again from cache favoured ``F.linear`` for most shapes, while read from memory the row blocks
were 2x to 3x faster for all of them.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

#: Up to this many rows (tokens times batch) a product may go through the row blocks.
SMALL_ROWS = 64


def _threads() -> int:
    # A constant to torch.compile (see mark_constants).
    return torch.get_num_threads()


def _blocked(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, parts: int
) -> torch.Tensor:
    """``F.linear`` for x (rows, in) as ``parts`` row blocks of the weight: (rows, out)."""
    out_features, in_features = weight.shape
    blocks = weight.view(parts, out_features // parts, in_features)
    columns = x.t().expand(parts, -1, -1)
    if bias is None:
        out = torch.bmm(blocks, columns)
    else:
        out = torch.baddbmm(bias.view(parts, -1, 1), blocks, columns)
    # Row-major like F.linear's (a copy only with several rows): attention's fast CPU kernel
    # wants each head's features contiguous, and falls back to a slow one otherwise.
    return out.permute(2, 0, 1).contiguous().view(x.shape[0], out_features)


#: (out_features, in_features, threads, rows) -> whether the row blocks were the faster way.
_BLOCKS_FASTER: dict[tuple[int, int, int, int], bool] = {}


def _key(weight_shape: tuple[int, int] | torch.Size, parts: int, rows: int
         ) -> tuple[int, int, int, int]:
    out_features, in_features = weight_shape
    return out_features, in_features, parts, 1 << (rows - 1).bit_length()


def _measure_once(weight: torch.Tensor, parts: int, rows: int) -> None:
    """Measure the way for this weight's shape unless that was done (eager calls, which have the
    layer's own weight to measure with)."""
    key = _key(weight.shape, parts, rows)
    if key not in _BLOCKS_FASTER:
        _BLOCKS_FASTER[key] = _measure_blocks(weight, parts, key[3])


def _blocks_faster(out_features: int, in_features: int, parts: int, rows: int) -> bool:
    # A constant to torch.compile (see mark_constants); measured when it traces (on a stand-in
    # weight) only if no eager call has measured it before.
    key = _key((out_features, in_features), parts, rows)
    if key not in _BLOCKS_FASTER:
        stand_in = torch.full((out_features, in_features), 0.5)
        _BLOCKS_FASTER[key] = _measure_blocks(stand_in, parts, key[3])
    return _BLOCKS_FASTER[key]


def mark_constants() -> None:
    """Have torch.compile read ``_threads`` and ``_blocks_faster`` once, when it traces: a call it
    cannot trace would split the compiled decode step at every layer. Marked before compiling
    rather than by decorator, which imports torch._dynamo (over a second) into every process
    that imports the model, eager ones included."""
    for constant in (_threads, _blocks_faster):
        torch.compiler.assume_constant_result(constant)  # marks the function itself


def _measure_blocks(weight: torch.Tensor, parts: int, rows: int) -> bool:
    """Whether a product of ``rows`` rows with ``weight`` is at least 10% faster in row blocks
    than through ``F.linear`` here, the weight read from memory (best of 5 alternating samples
    over ``_cold_set``; a constant input, so the random stream is left alone)."""
    x = torch.ones(rows, weight.shape[1], dtype=weight.dtype)
    weights = _cold_set(weight)
    ways = (lambda w: F.linear(x, w), lambda w: _blocked(x, w, None, parts))
    for way in ways:  # warm-up
        way(weight)
    best = [float("inf"), float("inf")]
    for _ in range(5):
        for i, way in enumerate(ways):
            start = time.perf_counter()
            for w in weights:
                way(w)
            best[i] = min(best[i], time.perf_counter() - start)
    return best[1] < 0.9 * best[0]


#: At most this many weights in a cold set: a tiny weight's product costs microseconds either
#: way, so a smaller set that the caches may hold does not change which way wins.
MAX_COLD_SET = 256


def _cold_set(weight: torch.Tensor) -> list[torch.Tensor]:
    """``weight`` and copies of it, together twice the CPU's largest cache (up to 1 GiB), so
    that reading them in turn reads each from memory; a weight as large needs no copy."""
    size = weight.numel() * weight.element_size()
    wanted = min(2 * _largest_cache_bytes(), 1 << 30)
    copies = min(MAX_COLD_SET, -(-wanted // size)) - 1
    return [weight, *(weight.clone() for _ in range(copies))]


@functools.cache
def _largest_cache_bytes(caches: Path = Path("/sys/devices/system/cpu/cpu0/cache")) -> int:
    """This CPU's largest cache in bytes (Linux sysfs); 32 MiB where that does not say."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    sizes = []
    for entry in caches.glob("index*/size"):
        text = entry.read_text().strip()
        number, unit = (text[:-1], units[text[-1]]) if text[-1:] in units else (text, 1)
        if number.isdecimal():
            sizes.append(int(number) * unit)
    return max(sizes, default=32 << 20)


# An opaque op to torch.compile, which would otherwise rewrite the product into loops of its own
# (slower than the batched matmul here). Eager calls skip it: its dispatch costs more than it does.
_blocked_op = torch.library.custom_op("vlagent::blocked_linear", _blocked, mutates_args=())
_blocked_op.register_fake(lambda x, weight, bias, parts: x.new_empty(x.shape[0], weight.shape[0]))


class Linear(nn.Linear):
    def blocks(self, rows: int, device: torch.device, dtype: torch.dtype) -> bool:
        """Whether a product of ``rows`` rows runs as row blocks (measured the first time)."""
        parts = _threads()
        if not (device.type == "cpu" and dtype == torch.float32 and parts > 1
                and rows <= SMALL_ROWS and self.out_features % parts == 0):
            return False
        if not torch.compiler.is_compiling():
            _measure_once(self.weight.detach(), parts, rows)
        return _blocks_faster(self.out_features, self.in_features, parts, rows)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if not self.blocks(rows, x.device, x.dtype):
            return F.linear(x, self.weight, self.bias)
        blocked = _blocked_op if torch.compiler.is_compiling() else _blocked
        out = blocked(x.reshape(rows, self.in_features), self.weight, self.bias, _threads())
        return out.view(*x.shape[:-1], self.out_features)


def calibrate(module: nn.Module, rows: int) -> None:
    """Measure now which way the module's products run with up to ``rows`` rows (a batch's
    decode steps), rather than in the first step that has as many."""
    for layer in module.modules():
        if isinstance(layer, Linear):
            for n in (1 << i for i in range((min(rows, SMALL_ROWS) - 1).bit_length() + 1)):
                layer.blocks(n, layer.weight.device, layer.weight.dtype)
