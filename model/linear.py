"""A Linear layer whose products with few rows (decode steps) use every CPU thread.

On CPU, torch hands ``F.linear`` to MKL, which runs a matrix-vector product on one thread: on the
project's 2-core box the decoder's weights stream at 16 GB/s that way, against 48 GB/s when two
threads read them. Cut into row blocks of the weight, the same product is a batched matmul, and
torch spreads the blocks over its threads (2x on the weight products at batch 1 here; see
docs/benchmarks.md). A few dozen rows still gain; a prefill's hundreds of rows are compute-bound
and keep the plain path, as do other devices and dtypes. Each output is still one dot product
per row, so the results differ from ``F.linear``'s only by summation order.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Up to this many rows (tokens times batch) a product goes through the row blocks.
SMALL_ROWS = 64


@torch.compiler.assume_constant_result
def _threads() -> int:
    # A constant to torch.compile (read when it traces): a call it cannot trace would split the
    # compiled decode step at every layer.
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


# An opaque op to torch.compile, which would otherwise rewrite the product into loops of its own
# (slower than the batched matmul here). Eager calls skip it: its dispatch costs more than it does.
_blocked_op = torch.library.custom_op("vlagent::blocked_linear", _blocked, mutates_args=())
_blocked_op.register_fake(lambda x, weight, bias, parts: x.new_empty(x.shape[0], weight.shape[0]))


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, parts = x.numel() // self.in_features, _threads()
        if (
            x.device.type != "cpu"
            or x.dtype != torch.float32
            or parts < 2
            or rows > SMALL_ROWS
            or self.out_features % parts
        ):
            return F.linear(x, self.weight, self.bias)
        blocked = _blocked_op if torch.compiler.is_compiling() else _blocked
        out = blocked(x.reshape(rows, self.in_features), self.weight, self.bias, parts)
        return out.view(*x.shape[:-1], self.out_features)
