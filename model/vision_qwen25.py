"""Qwen2.5-VL's vision tower: Qwen2-VL's, with RMSNorm, a SwiGLU MLP and window attention.

Patches are reordered so that each 112-pixel window (4x4 merged tokens) is contiguous; most blocks
attend within windows, the blocks in ``fullatt_block_indexes`` within whole images. The merger's
tokens are put back in the processor's order at the end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from model.config_qwen25 import WindowVisionConfig
from model.text import RMSNorm
from model.vision import ACTIVATIONS, Attend, VisionTower, per_image_attention


def rms_norm(dim: int) -> nn.Module:
    return RMSNorm(dim, eps=1e-6)


class GatedMlp(nn.Module):
    """SwiGLU with biases (the decoder's has none), its activation from the vision config."""

    def __init__(self, cfg: WindowVisionConfig):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.embed_dim, cfg.intermediate_size)
        self.up_proj = nn.Linear(cfg.embed_dim, cfg.intermediate_size)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.embed_dim)
        self.act = ACTIVATIONS[cfg.hidden_act]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(self.act(self.gate_proj(x)) * self.up_proj(x))


def window_order(grid_thw: torch.Tensor, merge: int, window: int) -> tuple[torch.Tensor, list[int]]:
    """Merged tokens in window order, and each window's length in merged tokens.

    Windows tile each frame's merged grid row-major from the top left (the last row and column
    of windows may be partial); inside a window tokens stay row-major. Returns the permutation
    of merged-token indices (into the processor's order) and the windows' sizes.
    """
    order, lengths, offset = [], [], 0
    for t, h, w in grid_thw.tolist():
        gh, gw = h // merge, w // merge
        across = -(-gw // window)
        rows = torch.arange(gh).view(1, gh, 1) // window
        cols = torch.arange(gw).view(1, 1, gw) // window
        frames = torch.arange(t).view(t, 1, 1) * (-(-gh // window) * across)
        window_id = (frames + rows * across + cols).flatten()
        order.append(torch.sort(window_id, stable=True).indices + offset)
        lengths += torch.bincount(window_id).tolist()
        offset += t * gh * gw
    return torch.cat(order), lengths


def windowed_attention(lengths: list[int], device: torch.device) -> Attend:
    """Attention within contiguous windows of ``lengths`` patches, as one batched SDPA call.

    The windows are gathered into a (windows, heads, longest, head_dim) batch; keys past a
    window's end are masked out (every window has at least one key, so no row is all-masked).
    """
    size = torch.tensor(lengths, device=device)
    longest = max(lengths)
    starts = torch.cumsum(size, 0) - size
    slot = torch.arange(longest, device=device)
    valid = slot < size[:, None]  # (windows, longest)
    index = (starts[:, None] + slot).clamp(max=int(size.sum()) - 1)
    mask = None if bool(valid.all()) else valid[:, None, None, :]

    def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        # (1, heads, N, d) -> (windows, heads, longest, d)
        q, k, v = (t[0][:, index].transpose(0, 1) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        # Windows are contiguous and in order, so the valid slots read back the packed sequence.
        return out.transpose(0, 1)[:, valid][None]

    return attend


class WindowVisionTower(VisionTower):
    def __init__(self, cfg: WindowVisionConfig):
        super().__init__(cfg, norm=rms_norm, mlp=GatedMlp)

    def forward(self, pixel_values: torch.Tensor, grid_thw: torch.Tensor) -> torch.Tensor:
        """(N patches, channels x temporal x patch x patch) -> (N / merge^2, LLM hidden), in the
        processor's token order."""
        cfg = self.cfg
        x, cos, sin, seqlens = self.embed_patches(pixel_values, grid_thw)
        unit = cfg.spatial_merge_size**2  # a merged token's consecutive patches move together
        order, lengths = window_order(grid_thw, cfg.spatial_merge_size, cfg.window_tokens)
        order = order.to(x.device)
        patches = (order[:, None] * unit + torch.arange(unit, device=x.device)).flatten()
        x, cos, sin = x[patches], cos[patches], sin[patches]
        # Reordering stays inside each image, so whole-image attention keeps its seqlens.
        full = per_image_attention(seqlens)
        windows = windowed_attention([n * unit for n in lengths], x.device)
        for i, block in enumerate(self.blocks):
            x = block(x, cos, sin, full if i in cfg.fullatt_block_indexes else windows)
        return self.merger(x)[torch.argsort(order)]
