"""Rotary embeddings: the vision tower's 2D (h, w) rope and the decoder's M-RoPE with its positions."""

from __future__ import annotations

import torch


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return x * cos + rotate_half(x) * sin


def inverse_frequencies(dim: int, theta: float, device: torch.device) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float, device=device) / dim))


# --- vision ---------------------------------------------------------------------------------
def vision_patch_positions(grid_thw: torch.Tensor, merge: int) -> torch.Tensor:
    """(N, 2) (row, col) of every patch, in the processor's merge-window order."""
    out = []
    for t, h, w in grid_thw.tolist():
        rows = torch.arange(h).view(h // merge, merge, 1, 1).expand(-1, -1, w // merge, merge)
        cols = torch.arange(w).view(1, 1, w // merge, merge).expand(h // merge, merge, -1, -1)
        # (h/m, m, w/m, m) -> (h/m, w/m, m, m): window by window, each window row-major.
        rc = torch.stack([rows.transpose(1, 2).flatten(), cols.transpose(1, 2).flatten()], dim=-1)
        out.append(rc.repeat(t, 1))
    return torch.cat(out)


def vision_rotary(
    grid_thw: torch.Tensor, head_dim: int, merge: int, theta: float, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin of shape (N, head_dim): half the dims rotate with the row, half with the column."""
    inv_freq = inverse_frequencies(head_dim // 2, theta, device)
    pos = vision_patch_positions(grid_thw, merge).to(device)
    freqs = (pos[..., None].float() * inv_freq).flatten(1)  # (N, 2 * head_dim/4): rows then cols
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


# --- decoder (M-RoPE) -----------------------------------------------------------------------
def mrope_positions(
    input_ids: torch.Tensor,
    image_grid_thw: torch.Tensor | None,
    image_token_id: int,
    merge: int,
    attention_mask: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Qwen2-VL's 3-row (t, h, w) position ids (3, B, L) and rope deltas (B, 1).

    Text tokens count up on all three rows. An image's tokens take (t, row, col) over its merged
    grid, offset by the position where it starts; text after it resumes at the maximum + 1. Images
    are consumed from ``image_grid_thw`` in order, across the batch. Padding (mask 0) gets 0.
    The delta is what decoding adds to the cache position: max position + 1 - sequence length.
    """
    batch, length = input_ids.shape
    positions = torch.zeros(3, batch, length, dtype=torch.long)
    deltas = torch.zeros(batch, 1, dtype=torch.long)
    grids = iter(image_grid_thw.tolist() if image_grid_thw is not None else [])
    ids_cpu = input_ids.cpu()
    mask_cpu = attention_mask.bool().cpu() if attention_mask is not None else None
    for b in range(batch):
        keep = mask_cpu[b] if mask_cpu is not None else torch.ones(length, dtype=torch.bool)
        ids = ids_cpu[b][keep].tolist()
        pieces: list[torch.Tensor] = []
        start = 0  # the next position id
        i = 0
        while i < len(ids):
            if ids[i] == image_token_id:
                try:
                    t, h, w = next(grids)
                except StopIteration:
                    raise ValueError("more image tokens in input_ids than images in image_grid_thw")
                gh, gw = h // merge, w // merge
                tt = torch.arange(t).view(-1, 1, 1).expand(t, gh, gw).flatten()
                hh = torch.arange(gh).view(1, -1, 1).expand(t, gh, gw).flatten()
                ww = torch.arange(gw).view(1, 1, -1).expand(t, gh, gw).flatten()
                pieces.append(torch.stack([tt, hh, ww]) + start)
                i += t * gh * gw
                start += max(gh, gw)
            else:
                j = i
                while j < len(ids) and ids[j] != image_token_id:
                    j += 1
                pieces.append(torch.arange(start, start + j - i).expand(3, -1))
                start += j - i
                i = j
        if pieces:
            row = torch.cat(pieces, dim=1)[:, : len(ids)]
            positions[:, b, keep] = row
            deltas[b, 0] = row.max() + 1 - len(ids)
    return positions.to(input_ids.device), deltas.to(input_ids.device)


def mrope_cos_sin(
    positions: torch.Tensor,
    head_dim: int,
    theta: float,
    section: tuple[int, ...],
    dtype: torch.dtype,
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin (B, 1, L, head_dim): frequency band i of ``section`` follows position row i % 3."""
    inv_freq = inverse_frequencies(head_dim, theta, positions.device)
    freqs = positions[..., None].float() * inv_freq  # (3, B, L, head_dim/2)
    bands = freqs.split(list(section), dim=-1)
    freqs = torch.cat([band[i % 3] for i, band in enumerate(bands)], dim=-1)
    emb = torch.cat((freqs, freqs), dim=-1)[:, None]
    return emb.cos().to(dtype), emb.sin().to(dtype)
