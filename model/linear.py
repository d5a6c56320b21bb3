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


class Linear(nn.Linear):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows, parts = x.numel() // self.in_features, torch.get_num_threads()
        if (
            x.device.type != "cpu"
            or x.dtype != torch.float32
            or parts < 2
            or rows > SMALL_ROWS
            or self.out_features % parts
        ):
            return F.linear(x, self.weight, self.bias)
        blocks = self.weight.view(parts, self.out_features // parts, self.in_features)
        columns = x.reshape(rows, self.in_features).t().expand(parts, -1, -1)
        if self.bias is None:
            out = torch.bmm(blocks, columns)
        else:
            out = torch.baddbmm(self.bias.view(parts, -1, 1), blocks, columns)
        # (parts, out/parts, rows) -> (rows, out)
        return out.permute(2, 0, 1).reshape(*x.shape[:-1], self.out_features)
